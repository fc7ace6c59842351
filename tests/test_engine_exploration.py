"""Thompson sampling over Discover candidate sources."""

from __future__ import annotations

import math
import pickle
from collections import Counter

from river import bandit, proba

from stream.engine.exploration import BatchedThompsonSampling, DiscoveryBandit


def test_rewarded_arm_is_chosen_most() -> None:
    bandit = DiscoveryBandit(arms=("mf", "taste", "new"), seed=0)
    for _ in range(40):
        bandit.reward("taste", played=True)
        bandit.reward("mf", played=False)
        bandit.reward("new", played=False)
    picks = Counter(bandit.choose(["mf", "taste", "new"]) for _ in range(100))
    assert picks["taste"] > 90
    rates = bandit.expected_rewards()
    assert rates["taste"] > 0.9 > 0.1 > rates["mf"]


def test_explores_while_uncertain_and_respects_availability() -> None:
    bandit = DiscoveryBandit(arms=("a", "b"), seed=1)
    picks = Counter(bandit.choose(["a", "b"]) for _ in range(200))
    assert picks["a"] > 20 and picks["b"] > 20
    assert {bandit.choose(["b"]) for _ in range(10)} == {"b"}


def test_seeded_and_picklable() -> None:
    def run() -> list[str]:
        bandit = DiscoveryBandit(arms=("a", "b", "c"), seed=7)
        out = []
        for n in range(30):
            arm = bandit.choose(["a", "b", "c"])
            bandit.reward(arm, played=n % 3 == 0)
            out.append(arm)
        return out

    assert run() == run()
    bandit = DiscoveryBandit(arms=("a", "b"), seed=2)
    bandit.reward("a", played=True)
    clone = pickle.loads(pickle.dumps(bandit))
    assert [clone.choose(["a", "b"]) for _ in range(10)] == [
        bandit.choose(["a", "b"]) for _ in range(10)
    ]


def _posteriors(policy: object) -> dict[str, tuple[int, int]]:
    return {arm: (beta.alpha, beta.beta) for arm, beta in policy._rewards.items()}


def _chance_first_beats_second(first: tuple[int, int], second: tuple[int, int]) -> float:
    """P(X > Y) for X ~ Beta(*first), Y ~ Beta(*second), integer parameters (Evan
    Miller's closed form for Bayesian A/B tests)."""

    def beta_function(a: float, b: float) -> float:
        return math.exp(math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))

    (a_x, b_x), (a_y, b_y) = first, second
    return sum(
        beta_function(a_y + i, b_y + b_x)
        / ((b_x + i) * beta_function(1 + i, b_x) * beta_function(a_y, b_y))
        for i in range(a_x)
    )


def test_batched_draws_choose_as_often_as_rivers_own_sampling() -> None:
    river = bandit.ThompsonSampling(reward_obj=proba.Beta(), seed=3)
    batched = BatchedThompsonSampling(seed=3)
    for policy in (river, batched):
        for reward in [1, 1, 0, 0, 0, 0, 0]:
            policy.update("a", reward)
        for reward in [1, 1, 1, 1, 1, 0, 0]:
            policy.update("b", reward)
    assert _posteriors(river) == _posteriors(batched) == {"a": (3, 6), "b": (6, 3)}
    expected = _chance_first_beats_second((3, 6), (6, 3))  # 0.066
    pulls = 6_000
    for policy in (river, batched):
        share = sum(policy.pull(["a", "b"]) == "a" for _ in range(pulls)) / pulls
        # 4 standard errors of a 6.6 % share over 6,000 pulls: 1.3 points
        assert abs(share - expected) < 0.013, (type(policy).__name__, share)


def test_a_reward_discards_the_draws_made_from_the_old_posterior() -> None:
    policy = BatchedThompsonSampling(seed=5)
    policy.pull(["a", "b"])  # both arms now hold a batch of draws from Beta(1, 1)
    for _ in range(200):
        policy.update("a", 0)
        policy.update("b", 1)
    # stale Beta(1, 1) draws would give "a" about half of these pulls
    assert [policy.pull(["a", "b"]) for _ in range(20)] == ["b"] * 20


def test_a_bandit_pickled_with_rivers_own_policy_carries_on_batched() -> None:
    old = DiscoveryBandit(arms=("a", "b"), seed=4)
    # the policy of snapshots made before draws were batched
    old.policy = bandit.ThompsonSampling(reward_obj=proba.Beta(seed=4), burn_in=0, seed=4)
    for n in range(12):
        old.reward("a" if n % 3 else "b", played=n % 2 == 0)
    restored = pickle.loads(pickle.dumps(old))
    assert isinstance(restored.policy, BatchedThompsonSampling)
    assert _posteriors(restored.policy) == _posteriors(old.policy)
    assert restored.policy._counts == old.policy._counts and restored.policy._n == 12
    assert restored.expected_rewards() == old.expected_rewards()
    restored.reward("a", played=True)  # learning goes on from the old posteriors
    assert restored.policy._rewards["a"].alpha == old.policy._rewards["a"].alpha + 1
