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

from river import bandit, proba


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
        self.policy = bandit.ThompsonSampling(
            reward_obj=proba.Beta(seed=seed), burn_in=0, seed=seed
        )
        self.trials: dict[str, int] = {}
        self.plays: dict[str, int] = {}

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
