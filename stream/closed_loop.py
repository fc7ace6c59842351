"""Closed-loop simulation: simulated listeners pick from their published lists.

The simulated :class:`~stream.simulator.World` knows each user's true taste. In
a closed loop, a user looks at their latest published list, picks one item -
favouring items they like (true affinity) and items shown early (position bias)
- and responds to it with :meth:`World.respond` (a play or a skip), with the
event's ``source`` naming the list, row and slot. Tallying responses by the
list's arm measures the lift of personalised lists over the holdout end to end.

Pure and deterministic given the random generator: no Kafka, no clock
(``encore closed-loop`` in :mod:`stream.commands` drives it against a worker).

>>> from stream.models import RecommendationList, RecommendedItem, Row
>>> from stream.simulator import World, WorldConfig
>>> world = World.generate(WorldConfig(n_users=5, n_items=40, seed=1))
>>> row = Row("top-picks", "Top", tuple(RecommendedItem(f"t-{n:05d}", 1.0, "r") for n in range(5)))
>>> rec = RecommendationList("u-00001", "L1", 0.0, (row,), arm="holdout")
>>> item, source = pick_from_list(world, rec, np.random.default_rng(0))
>>> source.list_id, source.row, 0 <= source.position < 5
('L1', 'top-picks', True)
>>> tally = ArmTally()
>>> tally.add("holdout", world.respond("u-00001", item, now=world.now, device="mobile",
...                                    source=source))
>>> tally.as_dict()["holdout"]["picks"]
1
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.experiments import PLAY_THROUGH_COMPLETION
from stream.models import EventType, Interaction, RecommendationList, Source
from stream.simulator import World


def pick_from_list(
    world: World,
    rec: RecommendationList,
    rng: np.random.Generator,
    *,
    position_decay: float = 0.85,
    row_decay: float = 0.7,
    taste_sharpness: float = 4.0,
) -> tuple[str, Source] | None:
    """One pick from ``rec``: weight = exp(sharpness * affinity) * position and row bias.

    Items the world does not know are ignored; ``None`` when nothing can be picked.
    """
    candidates: list[tuple[str, Source]] = []
    weights: list[float] = []
    known = set(world.item_ids)
    for row_index, row in enumerate(rec.rows):
        for position, item in enumerate(row.items):
            if item.item_id not in known:
                continue
            affinity = world.affinity(rec.user_id, item.item_id)
            bias = position_decay**position * row_decay**row_index
            candidates.append((item.item_id, Source(rec.list_id, row.row_id, position)))
            weights.append(float(np.exp(taste_sharpness * affinity)) * bias)
    if not candidates:
        return None
    p = np.asarray(weights)
    choice = int(rng.choice(len(candidates), p=p / p.sum()))
    return candidates[choice]


@dataclass
class ArmTally:
    """Responses to picks, per arm (client side: what the simulated users did)."""

    picks: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    plays: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    played_through: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skips: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    users: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, arm: str, event: Interaction) -> None:
        self.picks[arm] += 1
        self.users[arm].add(event.user_id)
        if event.type is EventType.SKIP:
            self.skips[arm] += 1
            return
        self.plays[arm] += 1
        completion = event.completion
        if completion is None or completion >= PLAY_THROUGH_COMPLETION:
            self.played_through[arm] += 1

    def as_dict(self) -> dict[str, dict[str, Any]]:
        out = {}
        for arm in sorted(self.picks):
            picks = self.picks[arm]
            out[arm] = {
                "users": len(self.users[arm]),
                "picks": picks,
                "plays": self.plays[arm],
                "skips": self.skips[arm],
                "play_through_rate": round(self.played_through[arm] / picks, 4),
                "skip_rate": round(self.skips[arm] / picks, 4),
            }
        return out

    def lift(self, arm: str = "personalised", baseline: str = "holdout") -> float | None:
        """Relative play-through lift of ``arm`` over ``baseline`` (0.1 = +10 %)."""
        rates = self.as_dict()
        if arm not in rates or baseline not in rates or not rates[baseline]["play_through_rate"]:
            return None
        return round(rates[arm]["play_through_rate"] / rates[baseline]["play_through_rate"] - 1, 4)
