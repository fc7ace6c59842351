"""Wrapped: a user's listening summary for a month or a year, from bounded counters.

Memory is bounded per user: one :class:`MonthCounters` per calendar month (UTC,
by event time), only the newest ``max_months`` months, and per month at most
``max_entries`` distinct items, artists and genres each. Past a cap, a newcomer
still counts in the month's totals (events, minutes, skips) but not in its top
lists, and the month is flagged ``truncated``. An event older than the oldest
month kept is not counted. Artist and genres are taken from the catalog as it
stood when the event was learned.

Minutes count every millisecond played: plays, replays and the part of a
skipped item that was heard. ``plays`` in the top lists count plays + replays.

>>> from stream.models import CatalogItem, EventType, Interaction
>>> from stream.contracts import parse_time
>>> history = ListeningHistory()
>>> info = CatalogItem("t1", "Song", "Band", ("rock",), 180_000, 0.0)
>>> at = parse_time("2026-11-05T10:00:00Z")
>>> history.learn(Interaction("e1", "u1", "t1", EventType.PLAY, at, ms_played=180_000), info)
>>> history.learn(Interaction("e2", "u1", "t2", EventType.SKIP, at, ms_played=6_000), None)
>>> summary = history.summary("u1", "2026-11")
>>> summary["minutes_played"], summary["skip_rate"], summary["top_items"][0]
(3.1, 0.5, {'id': 't1', 'plays': 1, 'minutes': 3.0})
>>> summary["top_artists"], history.summary("u1", "2026")["events"]
([{'id': 'Band', 'plays': 1, 'minutes': 3.0}], 2)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from stream.models import CatalogItem, EventType, Interaction

PERIOD_PATTERN: Final = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2]))?$")
#: The per-id ``[plays, ms]`` maps of a :class:`MonthCounters`.
_ENTRY_MAPS: Final = ("items", "artists", "genres")


def month_of(timestamp: float) -> str:
    """``YYYY-MM`` (UTC) of an epoch time.

    >>> month_of(0.0)
    '1970-01'
    """
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m")


@dataclass(slots=True)
class MonthCounters:
    """One user's month. Entry maps hold ``[plays, ms]`` per id."""

    events: int = 0
    plays: int = 0
    skips: int = 0
    replays: int = 0
    ms: int = 0
    items: dict[str, list[int]] = field(default_factory=dict)
    artists: dict[str, list[int]] = field(default_factory=dict)
    genres: dict[str, list[int]] = field(default_factory=dict)
    truncated: bool = False


class ListeningHistory:
    """Per-user monthly listening counters (bounded), and summaries over them.

    Parameters
    ----------
    max_months
        Newest months kept per user (13 = this month and the whole previous year).
    max_entries
        Distinct items, artists and genres counted per user and month, each.
    """

    def __init__(self, max_months: int = 13, max_entries: int = 200) -> None:
        if max_months < 1 or max_entries < 1:
            raise ValueError("max_months and max_entries must be at least 1")
        self.max_months = max_months
        self.max_entries = max_entries
        self.users: dict[str, dict[str, MonthCounters]] = {}

    def __repr__(self) -> str:
        return f"ListeningHistory(max_months={self.max_months}, max_entries={self.max_entries})"

    def learn(self, event: Interaction, info: CatalogItem | None) -> None:
        """Count one accepted event; ``info`` is its item's catalog entry, if known."""
        months = self.users.setdefault(event.user_id, {})
        key = month_of(event.timestamp)
        month = months.get(key)
        if month is None:
            if len(months) >= self.max_months and key < min(months):
                return  # older than everything kept
            month = months[key] = MonthCounters()
            while len(months) > self.max_months:
                del months[min(months)]
        month.events += 1
        month.ms += event.ms_played
        if event.type is EventType.SKIP:
            month.skips += 1
        elif event.type is EventType.REPLAY:
            month.replays += 1
        else:
            month.plays += 1
        played = int(event.type is not EventType.SKIP)
        self._count(month, month.items, event.item_id, played, event.ms_played)
        if info is not None:
            self._count(month, month.artists, info.artist, played, event.ms_played)
            for genre in info.genres:
                self._count(month, month.genres, genre, played, event.ms_played)

    def _count(
        self, month: MonthCounters, entries: dict[str, list[int]], key: str, plays: int, ms: int
    ) -> None:
        entry = entries.get(key)
        if entry is None:
            if len(entries) >= self.max_entries:
                month.truncated = True
                return
            entry = entries[key] = [0, 0]
        entry[0] += plays
        entry[1] += ms

    def forget_user(self, user_id: str) -> bool:
        return self.users.pop(user_id, None) is not None

    def export_users(self, user_ids: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """The counters of ``user_ids`` as plain dicts (picklable), for :meth:`import_users`.

        ``{user_id: {"YYYY-MM": {"events": ..., "items": {item_id: [plays, ms]}, ...}}}``:
        counters are keyed by item id, artist and genre name already, so they move
        between workers as they are. Unknown ids are skipped; nothing is shared
        with this history.

        >>> from stream.models import EventType, Interaction
        >>> old, new = ListeningHistory(), ListeningHistory()
        >>> old.learn(Interaction("e1", "u1", "t1", EventType.PLAY, 0.0, ms_played=60_000), None)
        >>> exported = old.export_users(["u1", "nobody"])
        >>> list(exported), exported["u1"]["1970-01"]["items"]
        (['u1'], {'t1': [1, 60000]})
        >>> new.import_users(exported), new.summary("u1", "1970")["minutes_played"]
        (1, 1.0)
        >>> new.drop_users(["u1"]), new.summary("u1", "1970")["events"]
        (1, 0)
        """
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for user_id in user_ids:
            months = self.users.get(user_id)
            if months is not None and user_id not in out:
                out[user_id] = {key: _month_to_dict(month) for key, month in months.items()}
        return out

    def import_users(self, exported: dict[str, dict[str, dict[str, Any]]]) -> int:
        """Add or replace users from :meth:`export_users`; returns how many.

        A replaced user's previous counters are dropped. Within this history's
        caps the counters are copied exactly; past them, the oldest months go and
        a month keeps its first ``max_entries`` entries of each kind (flagged
        ``truncated``), as :meth:`learn` would have. ``exported`` is not modified.
        """
        for user_id, months in exported.items():
            newest = set(sorted(months)[-self.max_months :])
            self.users[user_id] = {
                key: self._month_from_dict(month) for key, month in months.items() if key in newest
            }
        return len(exported)

    def drop_users(self, user_ids: Iterable[str]) -> int:
        """Free the counters of ``user_ids`` (now owned elsewhere); how many were known."""
        return sum(self.users.pop(user_id, None) is not None for user_id in user_ids)

    def _month_from_dict(self, data: dict[str, Any]) -> MonthCounters:
        month = MonthCounters(
            events=int(data["events"]),
            plays=int(data["plays"]),
            skips=int(data["skips"]),
            replays=int(data["replays"]),
            ms=int(data["ms"]),
            truncated=bool(data["truncated"]),
        )
        for name in _ENTRY_MAPS:
            entries: dict[str, list[int]] = getattr(month, name)
            for key, (plays, ms) in data[name].items():
                if len(entries) >= self.max_entries:
                    month.truncated = True
                    break
                entries[key] = [int(plays), int(ms)]
        return month

    def summary(self, user_id: str, period: str, *, top: int = 5) -> dict[str, Any]:
        """The Wrapped fields for ``period`` (``YYYY-MM`` or ``YYYY``); zeros for no data.

        Top lists are ordered by plays, then minutes, then id.
        """
        if not PERIOD_PATTERN.match(period):
            raise ValueError(f"period must be YYYY or YYYY-MM, not {period!r}")
        months = [
            counters
            for key, counters in self.users.get(user_id, {}).items()
            if key == period or key.startswith(period + "-")
        ]
        events = sum(m.events for m in months)
        skips = sum(m.skips for m in months)
        return {
            "user_id": user_id,
            "period": period,
            "events": events,
            "plays": sum(m.plays for m in months),
            "skips": skips,
            "replays": sum(m.replays for m in months),
            "minutes_played": _minutes(sum(m.ms for m in months)),
            "skip_rate": None if not events else round(skips / events, 4),
            "top_items": _top([m.items for m in months], top),
            "top_artists": _top([m.artists for m in months], top),
            "top_genres": _top([m.genres for m in months], top),
            "truncated": any(m.truncated for m in months),
        }


def _month_to_dict(month: MonthCounters) -> dict[str, Any]:
    return {
        "events": month.events,
        "plays": month.plays,
        "skips": month.skips,
        "replays": month.replays,
        "ms": month.ms,
        "truncated": month.truncated,
        **{
            name: {key: list(entry) for key, entry in getattr(month, name).items()}
            for name in _ENTRY_MAPS
        },
    }


def _minutes(ms: int) -> float:
    return round(ms / 60_000, 2)


def _top(maps: list[dict[str, list[int]]], k: int) -> list[dict[str, Any]]:
    totals: dict[str, list[int]] = {}
    for entries in maps:
        for key, (plays, ms) in entries.items():
            total = totals.setdefault(key, [0, 0])
            total[0] += plays
            total[1] += ms
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:k]
    return [{"id": key, "plays": plays, "minutes": _minutes(ms)} for key, (plays, ms) in ranked]
