"""Wrapped: a user's listening summary for a month or a year, from bounded counters.

Memory is bounded per user: counters per calendar month (UTC, by event time),
only the newest ``max_months`` months, and per month at most ``max_entries``
distinct items, artists and genres each. Past a cap, a newcomer still counts in
the month's totals (events, minutes, skips) but not in its top lists, and the
month is flagged ``truncated``. An event older than the oldest month kept is not
counted. Artist and genres are taken from the catalog as it stood when the
event was learned.

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

Storage
-------
A user's counters are one ``array('q')`` (8-byte integers), months oldest first,
each month its entries followed by a trailer of :data:`TRAILER` slots::

    key, key, ...                           one per item, artist or genre, sorted
    plays, ms, plays, ms, ...               theirs, in the same order
    events, plays, skips, replays, ms,      the month's totals
    n_items, n_artists, n_genres,           entries of each kind
    month * 2 + truncated                   month = year * 12 + month - 1

An entry's key is ``3 * number + kind`` (kind 0 item, 1 artist, 2 genre). An
item's number is its row in an item index -- the engine's, once a pipeline
attaches it (:meth:`ListeningHistory.attach_items`), so Wrapped keeps no second
copy of the catalog's ids (about 80 bytes per item) -- and an artist's or
genre's numbers its name in a vocabulary shared by every user. A month's keys
are sorted, so an entry is found by a binary search. A user with a couple of
events costs a few hundred bytes instead of a few kilobytes of dicts, lists and
``int`` objects. Every name counted stays numbered, as the engine's item index
keeps every item id it has seen.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from stream.models import EventType, Interaction

PERIOD_PATTERN: Final = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2]))?$")
#: The per-id ``[plays, ms]`` maps of a month, in the order of their kinds.
_ENTRY_MAPS: Final = ("items", "artists", "genres")
_ITEM, _ARTIST, _GENRE = range(3)
_KINDS: Final = 3
#: Slots of a month's trailer (after its entries), as offsets from the trailer's start.
_EVENTS, _PLAYS, _SKIPS, _REPLAYS, _MS, _N_ENTRIES, _MONTH = 0, 1, 2, 3, 4, 5, 8
TRAILER: Final = 9
#: Slots per entry: its key, plays and ms.
_ENTRY: Final = 3
#: Counters up to this size are copied to an array of their exact size when they grow.
_EXACT_SLOTS: Final = 128
#: The counters of a user with none (never changed).
_NO_COUNTERS: Final = array("q")


class ItemNumbers(Protocol):
    """Numbers of item ids (an engine's :class:`~stream.engine.state.ItemIndex` is one)."""

    @property
    def ids(self) -> Sequence[str]: ...
    def add(self, item_id: str) -> int: ...


class _OwnItemNumbers:
    """The item numbers of a history no item index was attached to: ids in first-seen order."""

    __slots__ = ("ids", "rows")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.ids = list(ids)
        self.rows = {item_id: number for number, item_id in enumerate(self.ids)}

    def add(self, item_id: str) -> int:
        number = self.rows.get(item_id)
        if number is None:
            number = self.rows[item_id] = len(self.ids)
            self.ids.append(item_id)
        return number


class CatalogNames(Protocol):
    """What Wrapped reads of a catalog entry (a :class:`~stream.models.CatalogItem` has it)."""

    @property
    def item_id(self) -> str: ...
    @property
    def artist(self) -> str: ...
    @property
    def genres(self) -> tuple[str, ...]: ...


def month_of(timestamp: float) -> str:
    """``YYYY-MM`` (UTC) of an epoch time.

    >>> month_of(0.0)
    '1970-01'
    """
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m")


def _month_code(timestamp: float) -> int:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.year * 12 + moment.month - 1


def _month_name(code: int) -> str:
    """``YYYY-MM`` of a month code (what :func:`month_of` says of any time in it).

    >>> _month_name(_month_code(0.0))
    '1970-01'
    """
    return datetime(code // 12, code % 12 + 1, 1, tzinfo=UTC).strftime("%Y-%m")


def _code_of_name(name: str) -> int:
    year, month = name.split("-")
    return int(year) * 12 + int(month) - 1


@dataclass(slots=True)
class MonthCounters:
    """One user's month as checkpoints before the compact layout stored it.

    Only read when restoring such a checkpoint (see ``ListeningHistory.__setstate__``).
    """

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

    Examples
    --------
    >>> from stream.models import EventType, Interaction
    >>> history = ListeningHistory(max_months=2)
    >>> for n, day in enumerate([0, 40, 80, 1]):  # Jan, Feb, Mar; then Jan is too old
    ...     history.learn(Interaction(f"e{n}", "u1", "t1", EventType.PLAY, day * 86_400.0), None)
    >>> history.months("u1"), history.summary("u1", "1970")["events"]
    (['1970-02', '1970-03'], 2)
    """

    def __init__(self, max_months: int = 13, max_entries: int = 200) -> None:
        if max_months < 1 or max_entries < 1:
            raise ValueError("max_months and max_entries must be at least 1")
        self.max_months = max_months
        self.max_entries = max_entries
        #: user_id -> the user's counters (layout in the module's docstring)
        self.users: dict[str, array] = {}
        # Artist and genre names counted by any user, numbered in first-seen order.
        self._names: list[str] = []
        self._numbers: dict[str, int] = {}
        self._items: ItemNumbers = _OwnItemNumbers()
        self._attached = False  # whether _items is an index attached by attach_items
        # A restored history numbered by an index to be attached (it does not know it yet).
        self._numbered_by_attached = False

    def __repr__(self) -> str:
        return f"ListeningHistory(max_months={self.max_months}, max_entries={self.max_entries})"

    def __getstate__(self) -> dict[str, Any]:
        """Without the attached item index: it is the engine's, pickled with the engine,
        and attached again after a restore (items numbered by it: ``item_ids`` None)."""
        attached = self._attached or self._numbered_by_attached
        return {
            "max_months": self.max_months,
            "max_entries": self.max_entries,
            "users": self.users,
            "names": self._names,
            "item_ids": None if attached else list(self._items.ids),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_months = state["max_months"]
        self.max_entries = state["max_entries"]
        self.users = {}
        self._names = []
        self._numbers = {}
        self._items = _OwnItemNumbers()
        self._attached = False
        self._numbered_by_attached = False
        if "names" not in state:  # a checkpoint of MonthCounters dicts: converted exactly
            self.import_users(
                {
                    user_id: {key: _month_to_dict(month) for key, month in months.items()}
                    for user_id, months in state["users"].items()
                }
            )
            return
        self._names = state["names"]
        self._numbers = {name: number for number, name in enumerate(self._names)}
        self.users = state["users"]
        if "item_ids" not in state:
            # Pickled when items shared the names' vocabulary: an item's number is its
            # name's there (attach_items renumbers them by the attached index).
            self._items = _OwnItemNumbers(self._names)
        elif state["item_ids"] is None:
            self._numbered_by_attached = True
        else:
            self._items = _OwnItemNumbers(state["item_ids"])

    def attach_items(self, items: ItemNumbers) -> None:
        """Number items by ``items`` (an engine's item index) from now on.

        The counters so far are renumbered to it, unless they were pickled from a
        history numbered by the index attached then (the same engine's, restored
        with it). The index must live as long as this history and never renumber.

        >>> from stream.engine.state import ItemIndex
        >>> from stream.models import EventType, Interaction
        >>> history, index = ListeningHistory(), ItemIndex()
        >>> history.learn(Interaction("e1", "u1", "t9", EventType.PLAY, 0.0), None)
        >>> _ = index.add("t1")
        >>> history.attach_items(index)
        >>> index.ids, history.summary("u1", "1970")["top_items"][0]["id"]
        (['t1', 't9'], 't9')
        """
        if not self._numbered_by_attached and self.users:
            own = self._items.ids
            for user_id, counters in self.users.items():
                self.users[user_id] = _renumbered(
                    counters, {n: items.add(own[n]) for n in _item_numbers(counters)}
                )
        self._items = items
        self._attached = True
        self._numbered_by_attached = False

    # ------------------------------------------------------------------ learning
    def learn(self, event: Interaction, info: CatalogNames | None) -> None:
        """Count one accepted event; ``info`` is its item's catalog entry (or its names:
        id, artist, genres), if known."""
        counters = self.users.get(event.user_id)
        if counters is None:
            counters = self.users[event.user_id] = array("q")
        size = len(counters)
        trailer = self._month(counters, _month_code(event.timestamp))
        if trailer < 0:
            return  # older than everything kept
        ms = event.ms_played
        counters[trailer + _EVENTS] += 1
        counters[trailer + _MS] += ms
        if event.type is EventType.SKIP:
            counters[trailer + _SKIPS] += 1
            played = 0
        else:
            counters[trailer + (_REPLAYS if event.type is EventType.REPLAY else _PLAYS)] += 1
            played = 1
        # where the month's entries start (new ones go after it: it does not move)
        start = trailer - _ENTRY * _entries(counters, trailer)
        trailer = self._count_item(counters, start, trailer, event.item_id, played, ms)
        if info is not None:
            trailer = self._count(counters, start, trailer, _ARTIST, info.artist, played, ms)
            for genre in info.genres:
                trailer = self._count(counters, start, trailer, _GENRE, genre, played, ms)
        if size < len(counters) <= _EXACT_SLOTS:
            # a grown array keeps room to grow more: most users grow no more, or seldom
            self.users[event.user_id] = array("q", counters)

    def _month(self, counters: array, code: int) -> int:
        """Where the trailer of month ``code`` starts in ``counters``, the month added if new
        (and the oldest dropped past ``max_months``); -1 if it is older than every month kept.
        """
        end = len(counters)
        months = 0
        while end:  # newest month first
            month = counters[end - 1] >> 1
            if month == code:
                return end - TRAILER
            if month < code:
                break
            months += 1
            end = _month_start(counters, end)
        newer, insert_at = months, end
        while end:
            months += 1
            end = _month_start(counters, end)
        if months >= self.max_months and newer == months:
            return -1  # every month kept is newer, and there is no room
        counters[insert_at:insert_at] = array("q", [0] * (TRAILER - 1) + [code * 2])
        excess = months + 1 - self.max_months
        if excess <= 0:
            return insert_at
        # the oldest months go (the new one among them only if the caps shrank)
        cut = [trailer + TRAILER for trailer in _trailers(counters)][-excess]
        del counters[:cut]
        return insert_at - cut if insert_at >= cut else -1

    def _count_item(
        self, counters: array, start: int, trailer: int, item_id: str, plays: int, ms: int
    ) -> int:
        return self._add(counters, start, trailer, _ITEM, self._items.add(item_id), plays, ms)

    def _count(
        self, counters: array, start: int, trailer: int, kind: int, name: str, plays: int, ms: int
    ) -> int:
        """Add to the entry for artist or genre ``name`` of the month whose entries are
        ``start:trailer``; returns where the month's trailer starts now."""
        number = self._numbers.get(name)
        if number is None:
            if counters[trailer + _N_ENTRIES + kind] >= self.max_entries:
                counters[trailer + _MONTH] |= 1  # truncated: a name nobody counted stays out
                return trailer
            number = self._numbers[name] = len(self._names)
            self._names.append(name)
        return self._add(counters, start, trailer, kind, number, plays, ms)

    def _add(
        self, counters: array, start: int, trailer: int, kind: int, number: int, plays: int, ms: int
    ) -> int:
        """Add to the entry of ``kind`` and ``number`` of the month whose entries are
        ``start:trailer``; returns where the month's trailer starts now."""
        n_entries = (trailer - start) // _ENTRY
        keys_end = start + n_entries
        key = _KINDS * number + kind
        position = bisect_left(counters, key, start, keys_end)
        if position < keys_end and counters[position] == key:
            values = keys_end + 2 * (position - start)
            counters[values] += plays
            counters[values + 1] += ms
            return trailer
        if counters[trailer + _N_ENTRIES + kind] >= self.max_entries:
            counters[trailer + _MONTH] |= 1  # truncated
            return trailer
        counters.insert(position, key)
        values = keys_end + 1 + 2 * (position - start)
        counters[values:values] = array("q", (plays, ms))
        trailer += _ENTRY
        counters[trailer + _N_ENTRIES + kind] += 1
        return trailer

    # ------------------------------------------------------------------ users
    def months(self, user_id: str) -> list[str]:
        """The months (``YYYY-MM``) kept for ``user_id``, oldest first."""
        counters = self.users.get(user_id)
        if counters is None:
            return []
        return [_month_name(counters[t + _MONTH] >> 1) for t in reversed(list(_trailers(counters)))]

    def forget_user(self, user_id: str) -> bool:
        return self.users.pop(user_id, None) is not None

    def export_users(self, user_ids: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """The counters of ``user_ids`` as plain dicts (picklable), for :meth:`import_users`.

        ``{user_id: {"YYYY-MM": {"events": ..., "items": {item_id: [plays, ms]}, ...}}}``:
        counters are keyed by item id, artist and genre name, so they move between
        workers as they are. Unknown ids are skipped; nothing is shared with this
        history.

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
            counters = self.users.get(user_id)
            if counters is not None and user_id not in out:
                out[user_id] = {
                    _month_name(counters[t + _MONTH] >> 1): self._month_dict(counters, t)
                    for t in reversed(list(_trailers(counters)))
                }
        return out

    def import_users(self, exported: dict[str, dict[str, dict[str, Any]]]) -> int:
        """Add or replace users from :meth:`export_users`; returns how many.

        A replaced user's previous counters are dropped. Within this history's
        caps the counters are copied exactly; past them, the oldest months go and
        a month keeps the first ``max_entries`` entries of each kind in the
        export's order (flagged ``truncated``). ``exported`` is not modified.
        """
        for user_id, months in exported.items():
            codes = sorted(_code_of_name(key) for key in months)[-self.max_months :]
            counters = array("q")
            for code in codes:
                self._append_month(counters, code, months[_month_name(code)])
            self.users[user_id] = counters
        return len(exported)

    def drop_users(self, user_ids: Iterable[str]) -> int:
        """Free the counters of ``user_ids`` (now owned elsewhere); how many were known."""
        return sum(self.users.pop(user_id, None) is not None for user_id in user_ids)

    def _month_dict(self, counters: array, trailer: int) -> dict[str, Any]:
        """A month as :meth:`export_users` writes it (entries by key: items in the order of
        their numbers, artists and genres names first counted by anyone first)."""
        entries: tuple[dict[str, list[int]], ...] = ({}, {}, {})
        for key, plays, ms in _entries_of(counters, trailer):
            number, kind = divmod(key, _KINDS)
            entries[kind][self._name(kind, number)] = [plays, ms]
        return {
            "events": counters[trailer + _EVENTS],
            "plays": counters[trailer + _PLAYS],
            "skips": counters[trailer + _SKIPS],
            "replays": counters[trailer + _REPLAYS],
            "ms": counters[trailer + _MS],
            "truncated": bool(counters[trailer + _MONTH] & 1),
            **dict(zip(_ENTRY_MAPS, entries, strict=True)),
        }

    def _append_month(self, counters: array, code: int, data: dict[str, Any]) -> None:
        truncated = bool(data["truncated"])
        counts = [0, 0, 0]
        entries = []
        for kind, name in enumerate(_ENTRY_MAPS):
            for key, (plays, ms) in data[name].items():
                if counts[kind] >= self.max_entries:
                    truncated = True
                    break
                if kind == _ITEM:
                    number = self._items.add(key)
                else:
                    number = self._numbers.get(key)
                    if number is None:
                        number = self._numbers[key] = len(self._names)
                        self._names.append(key)
                entries.append((_KINDS * number + kind, int(plays), int(ms)))
                counts[kind] += 1
        entries.sort()
        counters.extend(key for key, _, _ in entries)
        for _, plays, ms in entries:
            counters.extend((plays, ms))
        totals = [int(data[name]) for name in ("events", "plays", "skips", "replays", "ms")]
        counters.extend((*totals, *counts, code * 2 + truncated))

    # ------------------------------------------------------------------ summaries
    def summary(self, user_id: str, period: str, *, top: int = 5) -> dict[str, Any]:
        """The Wrapped fields for ``period`` (``YYYY-MM`` or ``YYYY``); zeros for no data.

        Top lists are ordered by plays, then minutes, then id.
        """
        if not PERIOD_PATTERN.match(period):
            raise ValueError(f"period must be YYYY or YYYY-MM, not {period!r}")
        counters = self.users.get(user_id, _NO_COUNTERS)
        trailers = [
            trailer
            for trailer in _trailers(counters)
            if _in_period(_month_name(counters[trailer + _MONTH] >> 1), period)
        ]
        totals = [0] * 5  # events, plays, skips, replays, ms
        # per kind: name number -> [plays, ms] over the period's months
        tops: tuple[dict[int, list[int]], ...] = ({}, {}, {})
        truncated = False
        for trailer in trailers:
            for slot in range(5):
                totals[slot] += counters[trailer + slot]
            truncated = truncated or bool(counters[trailer + _MONTH] & 1)
            for key, plays, ms in _entries_of(counters, trailer):
                number, kind = divmod(key, _KINDS)
                total = tops[kind].setdefault(number, [0, 0])
                total[0] += plays
                total[1] += ms
        events, plays, skips, replays, ms = totals
        return {
            "user_id": user_id,
            "period": period,
            "events": events,
            "plays": plays,
            "skips": skips,
            "replays": replays,
            "minutes_played": _minutes(ms),
            "skip_rate": None if not events else round(skips / events, 4),
            "top_items": self._top(_ITEM, tops[_ITEM], top),
            "top_artists": self._top(_ARTIST, tops[_ARTIST], top),
            "top_genres": self._top(_GENRE, tops[_GENRE], top),
            "truncated": truncated,
        }

    def _name(self, kind: int, number: int) -> str:
        return self._items.ids[number] if kind == _ITEM else self._names[number]

    def _top(self, kind: int, totals: dict[int, list[int]], k: int) -> list[dict[str, Any]]:
        named = [(self._name(kind, number), total) for number, total in totals.items()]
        ranked = sorted(named, key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:k]
        return [{"id": key, "plays": plays, "minutes": _minutes(ms)} for key, (plays, ms) in ranked]


def _item_numbers(counters: array) -> set[int]:
    """Numbers of the items counted in any month of ``counters``."""
    return {
        key // _KINDS
        for trailer in _trailers(counters)
        for key, _, _ in _entries_of(counters, trailer)
        if key % _KINDS == _ITEM
    }


def _renumbered(counters: array, items: dict[int, int]) -> array:
    """``counters`` with every item number ``n`` replaced by ``items[n]`` (entries re-sorted)."""
    months = []
    for trailer in _trailers(counters):
        entries = sorted(
            (_KINDS * items[key // _KINDS] if key % _KINDS == _ITEM else key, plays, ms)
            for key, plays, ms in _entries_of(counters, trailer)
        )
        months.append((entries, counters[trailer : trailer + TRAILER]))
    out = array("q")
    for entries, trailer_slots in reversed(months):  # _trailers gives the newest first
        out.extend(key for key, _, _ in entries)
        for _, plays, ms in entries:
            out.extend((plays, ms))
        out.extend(trailer_slots)
    return out


def _in_period(month: str, period: str) -> bool:
    return month == period or month.startswith(period + "-")


def _entries(counters: array, trailer: int) -> int:
    at = trailer + _N_ENTRIES
    return counters[at] + counters[at + 1] + counters[at + 2]


def _month_start(counters: array, end: int) -> int:
    """Where the month whose trailer ends at ``end`` starts (its first entry)."""
    trailer = end - TRAILER
    return trailer - _ENTRY * _entries(counters, trailer)


def _trailers(counters: array) -> Iterator[int]:
    """Where each month's trailer starts, newest month first."""
    end = len(counters)
    while end:
        yield end - TRAILER
        end = _month_start(counters, end)


def _entries_of(counters: array, trailer: int) -> Iterator[tuple[int, int, int]]:
    """``(key, plays, ms)`` of a month's entries, by key."""
    n_entries = _entries(counters, trailer)
    start = trailer - _ENTRY * n_entries
    values = iter(counters[start + n_entries : trailer])
    for key in counters[start : start + n_entries]:
        yield key, next(values), next(values)


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
