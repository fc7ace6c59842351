"""A/B holdout: stable assignment of users to arms, holdout lists, per-arm online metrics.

Users are split by a stable hash of ``experiment_id`` and ``user_id``: the same
user is always in the same arm of an experiment, on every worker and after every
restart, and a new ``experiment_id`` reshuffles everyone. The ``holdout`` arm gets
a non-personalised list (the engine's cold-start popularity list, minus what the
user already played); the ``personalised`` arm gets the engine's list.

Plays and skips are attributed to a list through the event's ``source.list_id``;
:class:`ExperimentMetrics` counts, per arm, what happened to recommended items.

>>> experiment = Experiment("exp-1", holdout_share=0.5)
>>> experiment.arm("u-1") == experiment.arm("u-1")
True
>>> shares = [experiment.arm(f"u-{n}") for n in range(10_000)].count(HOLDOUT) / 10_000
>>> 0.47 < shares < 0.53
True
>>> Experiment("exp-1", holdout_share=0.0).arm("u-1")
'personalised'
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from stream.models import EventType, Interaction, RecommendationList, Row

PERSONALISED: Final = "personalised"
HOLDOUT: Final = "holdout"
ARMS: Final = (PERSONALISED, HOLDOUT)
#: an attributed play that reached this share of the item counts as played through
PLAY_THROUGH_COMPLETION: Final = 0.8
#: the figures of :meth:`ExperimentMetrics.quality_by_arm`, of :meth:`ArmCounters.as_dict`
QUALITY_FIGURES: Final = (
    "users",
    "attributed_events",
    "play_through_rate",
    "skip_rate",
    "plays_per_user",
)


@dataclass(frozen=True, slots=True)
class Experiment:
    """A two-arm split.

    Parameters
    ----------
    experiment_id
        The salt of the hash; published on every list as ``experiment``.
    holdout_share
        Fraction of users (0..1) in the ``holdout`` arm.
    """

    experiment_id: str = "holdout"
    holdout_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout_share <= 1.0:
            raise ValueError(f"holdout_share must be in [0, 1], not {self.holdout_share}")

    def bucket(self, user_id: str) -> float:
        """The user's stable position in [0, 1) for this experiment."""
        digest = hashlib.blake2b(
            f"{self.experiment_id}\x1f{user_id}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big") / 2**64

    def arm(self, user_id: str) -> str:
        return HOLDOUT if self.bucket(user_id) < self.holdout_share else PERSONALISED


def holdout_list(
    popular: RecommendationList,
    *,
    user_id: str,
    seen: Iterable[str] = (),
    based_on_events: int = 0,
    last_event_id: str | None = None,
    last_event_at: float | None = None,
) -> RecommendationList:
    """The non-personalised list for ``user_id``, from a cold-start (popularity) list.

    Items the user already played are left out (as for personalised lists);
    the freshness fields are the user's own, so consumers can still tell which
    events the list follows.

    >>> from stream.models import RecommendedItem
    >>> cold = RecommendationList("", ":1:2", 1.0, (Row("top-picks", "Popular", (
    ...     RecommendedItem("a", 1.0, "Popular"), RecommendedItem("b", 0.5, "Popular"))),))
    >>> rec = holdout_list(cold, user_id="u1", seen={"a"}, based_on_events=3)
    >>> rec.user_id, rec.list_id, rec.model, [i.item_id for i in rec.rows[0].items]
    ('u1', 'u1:1:2', 'popularity', ['b'])
    """
    seen_ids = set(seen)
    rows = []
    for row in popular.rows:
        items = tuple(item for item in row.items if item.item_id not in seen_ids)
        if items:
            rows.append(Row(row.row_id, row.title, items))
    return dataclasses.replace(
        popular,
        user_id=user_id,
        # the engine names lists "<user_id>:<ms>:<n>"; the cold list's user is ""
        list_id=f"{user_id}{popular.list_id}",
        rows=tuple(rows),
        arm=HOLDOUT,
        model="popularity",
        based_on_events=based_on_events,
        last_event_id=last_event_id,
        last_event_at=last_event_at,
    )


@dataclass(slots=True)
class ArmCounters:
    """What happened in one arm. Attributed = the event's source names a list of this arm."""

    users: int = 0
    lists: int = 0
    attributed_events: int = 0
    attributed_plays: int = 0  # plays + replays
    attributed_skips: int = 0
    played_through: int = 0
    all_plays: int = 0  # every play/replay of the arm's users, from a list or not
    all_events: int = 0

    def as_dict(self) -> dict[str, Any]:
        starts = self.attributed_events
        return {
            "users": self.users,
            "lists": self.lists,
            "attributed_events": starts,
            "attributed_plays": self.attributed_plays,
            "attributed_skips": self.attributed_skips,
            "played_through": self.played_through,
            "play_through_rate": _ratio(self.played_through, starts),
            "skip_rate": _ratio(self.attributed_skips, starts),
            "attributed_plays_per_user": _ratio(self.attributed_plays, self.users),
            "plays_per_user": _ratio(self.all_plays, self.users),
            "all_events": self.all_events,
        }


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if not denominator else round(numerator / denominator, 6)


@dataclass
class ExperimentMetrics:
    """Per-arm online metrics of published lists (pure; no I/O).

    Parameters
    ----------
    list_memory
        How many recent ``list_id -> arm`` pairs are kept for attribution; an
        event naming an older list is attributed to its user's arm of the last
        list, and counted as ``attributed_by_user``.

    Examples
    --------
    >>> from stream.models import Source
    >>> metrics = ExperimentMetrics()
    >>> metrics.on_list(RecommendationList("u1", "L1", 0.0, (), arm=HOLDOUT))
    >>> play = Interaction("e1", "u1", "t1", EventType.PLAY, 1.0, ms_played=90,
    ...                    duration_ms=100, source=Source("L1", "trending", 0))
    >>> metrics.on_event(play)
    'holdout'
    >>> metrics.as_dict()["arms"]["holdout"]["play_through_rate"]
    1.0
    """

    list_memory: int = 100_000
    arms: dict[str, ArmCounters] = field(default_factory=dict)
    #: user_id -> arm of the user's last published list ("users with a list")
    user_arms: dict[str, str] = field(default_factory=dict)
    _list_arms: OrderedDict[str, str] = field(default_factory=OrderedDict)
    unattributed_events: int = 0
    attributed_by_user: int = 0

    def _arm(self, name: str) -> ArmCounters:
        counters = self.arms.get(name)
        if counters is None:
            counters = self.arms[name] = ArmCounters()
        return counters

    def on_list(self, rec: RecommendationList) -> None:
        """A list was published."""
        previous = self.user_arms.get(rec.user_id)
        if previous != rec.arm:
            if previous is not None:
                self._arm(previous).users -= 1
            self._arm(rec.arm).users += 1
            self.user_arms[rec.user_id] = rec.arm
        self._arm(rec.arm).lists += 1
        self._list_arms[rec.list_id] = rec.arm
        if len(self._list_arms) > self.list_memory:
            self._list_arms.popitem(last=False)

    def on_event(self, event: Interaction) -> str | None:
        """Count an accepted event; returns the arm it was attributed to (if any)."""
        user_arm = self.user_arms.get(event.user_id)
        positive = event.type is not EventType.SKIP
        if user_arm is not None:
            counters = self._arm(user_arm)
            counters.all_events += 1
            counters.all_plays += positive
        if event.source is None:
            return None
        arm = self._list_arms.get(event.source.list_id)
        if arm is None:
            if user_arm is None:
                self.unattributed_events += 1
                return None
            arm = user_arm
            self.attributed_by_user += 1
        counters = self._arm(arm)
        counters.attributed_events += 1
        if positive:
            counters.attributed_plays += 1
            completion = event.completion
            if completion is None or completion >= PLAY_THROUGH_COMPLETION:
                counters.played_through += 1
        else:
            counters.attributed_skips += 1
        return arm

    def quality_by_arm(self) -> dict[str, dict[str, Any]]:
        """The online quality figures per arm (the dashboard's and ``/metrics``' view).

        ``{arm: {"users", "attributed_events", "play_through_rate", "skip_rate",
        "plays_per_user"}}``; a rate is ``None`` while its arm has nothing to divide by.

        >>> metrics = ExperimentMetrics()
        >>> metrics.on_list(RecommendationList("u1", "L1", 0.0, (), arm=HOLDOUT))
        >>> metrics.quality_by_arm()  # doctest: +NORMALIZE_WHITESPACE
        {'holdout': {'users': 1, 'attributed_events': 0, 'play_through_rate': None,
                     'skip_rate': None, 'plays_per_user': 0.0}}
        """
        quality = {}
        for name, counters in sorted(self.arms.items()):
            figures = counters.as_dict()
            quality[name] = {key: figures[key] for key in QUALITY_FIGURES}
        return quality

    def as_dict(self) -> dict[str, Any]:
        return {
            "arms": {name: counters.as_dict() for name, counters in sorted(self.arms.items())},
            "unattributed_events": self.unattributed_events,
            "attributed_by_user": self.attributed_by_user,
        }
