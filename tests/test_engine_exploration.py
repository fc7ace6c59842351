"""Thompson sampling over Discover candidate sources."""

from __future__ import annotations

import pickle
from collections import Counter

from stream.engine.exploration import DiscoveryBandit


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
