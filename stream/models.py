"""Domain types shared by the engine, the agents, the simulator and evaluation.

These are plain frozen dataclasses (no Faust, no I/O): the engine learns from
:class:`Interaction` and answers with a :class:`RecommendationList`. Converting
them to and from the wire format (JSON, validated by ``schemas/``) lives in
:mod:`stream.contracts`.

Times are ``float`` seconds since the Unix epoch (UTC). The wire format carries
aware RFC 3339 strings; keeping floats inside avoids datetime arithmetic on the
hot path.

>>> play = Interaction("e1", "u1", "i1", EventType.PLAY, 1_700_000_000.0,
...                    ms_played=90_000, duration_ms=180_000)
>>> play.completion
0.5
>>> play.is_positive
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """What the listener did. Each type has its own input topic."""

    PLAY = "play"
    SKIP = "skip"
    REPLAY = "replay"


@dataclass(frozen=True, slots=True)
class Source:
    """Which recommendation led to the event, for attribution.

    ``list_id`` is the ``list_id`` of the published :class:`RecommendationList`,
    ``row`` the ``row_id`` within it and ``position`` the 0-based slot.
    """

    list_id: str
    row: str
    position: int


@dataclass(frozen=True, slots=True)
class Interaction:
    """One validated play, skip or replay.

    Parameters
    ----------
    event_id
        Unique per event; used to make redelivery harmless.
    user_id, item_id
        Who listened to what.
    type
        play, skip or replay.
    timestamp
        When it happened (event time), seconds since the epoch, UTC.
    ms_played
        How much was played before the event ended (a skip's ``ms_played`` says
        how early it was skipped).
    duration_ms
        The item's length when the upstream app knows it; otherwise the engine
        falls back to the catalog.
    device, country
        Context, free-form short strings (``"mobile"``, ``"GB"``).
    source
        Attribution to a published list, when the event came from one.
    """

    event_id: str
    user_id: str
    item_id: str
    type: EventType
    timestamp: float
    ms_played: int = 0
    duration_ms: int | None = None
    device: str | None = None
    country: str | None = None
    source: Source | None = None

    @property
    def completion(self) -> float | None:
        """Fraction of the item played, clipped to [0, 1]; ``None`` without a duration."""
        if not self.duration_ms:
            return None
        return min(1.0, max(0.0, self.ms_played / self.duration_ms))

    @property
    def is_positive(self) -> bool:
        """Plays and replays are positive feedback, skips are negative."""
        return self.type is not EventType.SKIP


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """An item that can be recommended (a track, an episode, a film).

    ``released_at`` is seconds since the epoch (the wire format carries a date).
    """

    item_id: str
    title: str
    artist: str
    genres: tuple[str, ...]
    duration_ms: int
    released_at: float


@dataclass(frozen=True, slots=True)
class DeletionRequest:
    """Forget a user: their state, factors and list (``schemas/deletion-request``).

    ``requested_at`` is seconds since the epoch: the user's events that occurred
    at or before it are their past, refused from then on; later ones are new activity.
    ``request_id`` and ``reason`` are for audit only.
    """

    user_id: str
    requested_at: float
    request_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RecommendedItem:
    """One slot in a row: what, how strongly, and why (a sentence a person reads)."""

    item_id: str
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class Row:
    """A carousel. ``row_id`` is stable (``"top-picks"``, ``"because-you-played:<item>"``,
    ``"discover"``, ``"new-releases"``, ``"trending"``); ``title`` is for display."""

    row_id: str
    title: str
    items: tuple[RecommendedItem, ...]
    #: The row's JSON once encoded (:func:`stream.contracts.encoded_row`, an
    #: ``orjson.Fragment``): quick lists carry rows over, and each is encoded once.
    encoded: Any = field(default=None, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class RecommendationList:
    """Everything one user should see now, as published on ``recommendations``.

    ``last_event_id`` / ``last_event_at`` name the newest event the list reflects,
    so consumers (and the freshness benchmark) can tell how fresh it is.
    """

    user_id: str
    list_id: str
    generated_at: float
    rows: tuple[Row, ...]
    arm: str = "personalised"
    model: str = "engine"
    #: the experiment whose ``arm`` this is (``None``: lists from before experiments)
    experiment: str | None = None
    based_on_events: int = 0
    last_event_id: str | None = None
    last_event_at: float | None = None

    def item_ids(self) -> list[str]:
        """All recommended item ids, row by row, in display order."""
        return [item.item_id for row in self.rows for item in row.items]
