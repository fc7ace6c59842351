"""Exploration for the Discover row with River's ``bandit`` module.

Each Discover slot is filled from one *candidate source* (an arm): matrix
factorisation, co-occurrence, taste (genre / artist), new releases or long-tail
popular items. Thompson sampling over Beta posteriors picks the source slot by
slot; the engine remembers which arm filled which item for the user, and when
that user later plays (reward 1) or skips (reward 0) an item that came from the
Discover row, the arm's posterior is updated.

>>> explorer = DiscoveryBandit(arms=("mf", "taste"), seed=3)
>>> for _ in range(50):
...     explorer.reward("taste", played=True)
...     explorer.reward("mf", played=False)
>>> [explorer.choose(["mf", "taste"]) for _ in range(5)]
['taste', 'taste', 'taste', 'taste', 'taste']
>>> explorer.choose(["mf"])
'mf'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from river import bandit, proba

#: Posterior draws made at once per arm; a row of ten slots uses ten per arm.
_DRAWS_PER_BATCH = 32


class BatchedThompsonSampling(bandit.ThompsonSampling):
    """River's Thompson sampling over Beta posteriors, its draws made in batches by numpy.

    River draws each posterior sample with ``random.betavariate`` (two gamma
    variates, ~1.7 µs), one per arm and pull: ~80 µs of every Discover row, the
    largest part of the row. Here each arm keeps a batch of draws from its
    current posterior, made by one numpy call, and a pull takes the next draw of
    each available arm: still one fresh draw per arm and pull, from the posterior
    as it is. An update discards the arm's remaining draws, since its posterior
    changed. Pulls, burn-in, updates and the posteriors are River's.

    >>> policy = BatchedThompsonSampling(seed=1)
    >>> for _ in range(30):
    ...     policy.update("a", 1)
    ...     policy.update("b", 0)
    >>> [policy.pull(["a", "b"]) for _ in range(3)]
    ['a', 'a', 'a']
    """

    def __init__(self, seed: int | None = None, burn_in: int = 0) -> None:
        super().__init__(reward_obj=proba.Beta(seed=seed), burn_in=burn_in, seed=seed)
        self._generator = np.random.default_rng(seed)
        self._draws: dict[Any, list[float]] = {}

    def _pull(self, arm_ids: list[Any]) -> Any:
        best, best_draw = None, -1.0
        for arm in arm_ids:
            draws = self._draws.get(arm)
            if not draws:
                posterior = self._rewards[arm]
                draws = self._draws[arm] = self._generator.beta(
                    posterior.alpha, posterior.beta, _DRAWS_PER_BATCH
                ).tolist()
            draw = draws.pop()
            if draw > best_draw:  # the first arm wins a tie, as River's ``max``
                best, best_draw = arm, draw
        return best

    def update(self, arm_id: Any, *reward_args: Any, **reward_kwargs: Any) -> None:
        self._draws.pop(arm_id, None)
        super().update(arm_id, *reward_args, **reward_kwargs)

    @classmethod
    def carrying_on(
        cls, policy: bandit.ThompsonSampling, seed: int | None
    ) -> BatchedThompsonSampling:
        """This policy with the posteriors and counts of a River ``ThompsonSampling``
        (from a snapshot made before draws were batched)."""
        batched = cls(seed=seed, burn_in=policy.burn_in)
        # River offers no public way to read a policy's posteriors and counts.
        batched._rewards.update(policy._rewards)  # noqa: SLF001
        batched._counts.update(policy._counts)  # noqa: SLF001
        batched._n = policy._n  # noqa: SLF001
        return batched


class DiscoveryBandit:
    """Thompson sampling over candidate sources for discovery slots.

    Parameters
    ----------
    arms
        Names of the candidate sources.
    seed
        Seeds the posterior sampling.
    """

    def __init__(self, arms: tuple[str, ...], seed: int) -> None:
        self.arms = arms
        self.seed = seed
        self.policy = BatchedThompsonSampling(seed=seed)
        self.trials: dict[str, int] = {}
        self.plays: dict[str, int] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if not isinstance(self.policy, BatchedThompsonSampling):
            self.policy = BatchedThompsonSampling.carrying_on(self.policy, self.seed)

    def choose(self, available: Sequence[str]) -> str:
        """Pick one of the ``available`` arms (those that still have candidates)."""
        if len(available) == 1:
            return available[0]
        return str(self.policy.pull(list(available)))

    def reward(self, arm: str, *, played: bool) -> None:
        """Feedback for an item the arm put in Discover: played-through or skipped."""
        self.policy.update(arm, 1 if played else 0)
        self.trials[arm] = self.trials.get(arm, 0) + 1
        if played:
            self.plays[arm] = self.plays.get(arm, 0) + 1

    def expected_rewards(self) -> dict[str, float]:
        """Posterior mean play-through rate per arm, Beta(1, 1) prior."""
        return {
            arm: (self.plays.get(arm, 0) + 1) / (self.trials.get(arm, 0) + 2) for arm in self.arms
        }
