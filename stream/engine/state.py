"""Shared building blocks of the engine's state: item index, decaying counters, user state.

Items get a dense integer *row* the first time they are seen (in an event or in
the catalog), so that every per-item statistic is a numpy array indexed by row
and scoring the whole catalog is a handful of vector operations.

>>> index = ItemIndex()
>>> index.add("a"), index.add("b"), index.add("a")
(0, 1, 0)
>>> index.remove("a")
True
>>> index.active[:2].tolist()
[False, True]
"""

from __future__ import annotations

import math
import struct
import weakref
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Final, NamedTuple, overload

import numpy as np

from stream.models import CatalogItem

#: Rescale forward-decayed values before ``2 ** exponent`` gets anywhere near float64's limit.
_MAX_EXPONENT = 60.0
#: Signals are stored per seen item as round(weight * 50) in a signed byte.
_OUTCOME_SCALE = 50.0
#: How many genres of an item are kept (the first ones are the most specific).
MAX_ITEM_GENRES = 3


def grown(array: np.ndarray, size: int, fill: float | int | bool = 0) -> np.ndarray:
    """``array`` itself if it already holds ``size`` rows, else a larger copy (doubled, >= 64).

    >>> small = np.zeros(2)
    >>> grown(small, 2) is small, grown(small, 3).shape
    (True, (64,))
    """
    if size <= len(array):
        return array
    capacity = max(size, 2 * len(array), 64)
    shape = (capacity, *array.shape[1:])
    # Zeros from the allocator's zeroed pages: the spare capacity costs no resident memory
    # until used (np.full would write, and so touch, every page of it).
    bigger = np.zeros(shape, array.dtype) if fill == 0 else np.full(shape, fill, array.dtype)
    bigger[: len(array)] = array
    return bigger


def copied(values: array, dtype: type) -> np.ndarray:
    """A numpy copy of an ``array.array`` of a user's state, for compiled kernels.

    Not a view (``np.frombuffer``): while any view lives, the ``array.array``
    cannot grow ("BufferError: cannot resize an array that is exporting
    buffers"), and a compiled call may keep its arguments alive longer than the
    call (numba's first compilation of a kernel does). The arrays are short.

    >>> copied(array("i", [3, 1]), np.int32).tolist()
    [3, 1]
    """
    return np.array(values, dtype=dtype)


def forward_decay(
    origin: float | None, at: float, half_life: float, limit: float = _MAX_EXPONENT
) -> tuple[float, float, float]:
    """Forward-decay bookkeeping for a contribution made at event time ``at``.

    Values are stored as ``w * 2 ** ((t - origin) / half_life)`` so that ageing
    them costs nothing; before that factor grows past ``2 ** limit`` the origin
    moves to ``at`` and every stored value is multiplied by ``rescale``.

    Returns ``(origin, factor, rescale)``: the origin to keep, the factor for
    this contribution, and the factor for every stored value (1.0 unless the
    origin moved).

    >>> forward_decay(None, 5.0, 10.0)
    (5.0, 1.0, 1.0)
    >>> forward_decay(0.0, 10.0, 10.0)
    (0.0, 2.0, 1.0)
    >>> forward_decay(0.0, 1_000.0, 10.0)
    (1000.0, 1.0, 7.888609052210118e-31)
    """
    if origin is None:
        return at, 1.0, 1.0
    exponent = (at - origin) / half_life
    if exponent > limit:
        return at, 1.0, 2.0 ** (-exponent)
    return origin, 2.0**exponent, 1.0


def decay_scale(
    origin: float | None, now: float, half_life: float, limit: float = _MAX_EXPONENT
) -> float:
    """Multiply values stored by :func:`forward_decay` by this to read them at ``now``.

    0 before anything was stored. A ``now`` more than ``limit`` half-lives
    before the origin (an event far older than the clock) reads as if it were
    ``limit`` half-lives before: ``2 ** -exponent`` would overflow a float.

    >>> decay_scale(0.0, 10.0, 10.0), decay_scale(None, 10.0, 10.0)
    (0.5, 0.0)
    >>> decay_scale(1e9, 0.0, 1.0) == 2.0 ** 60
    True
    """
    if origin is None:
        return 0.0
    return 2.0 ** min(-(now - origin) / half_life, limit)


class DecayingVector:
    """Per-row counters that halve every ``half_life`` seconds of event time.

    Uses forward decay: an update of weight ``w`` at time ``t`` adds
    ``w * 2 ** ((t - origin) / half_life)``, so stored values never need to be
    touched to age them; reading divides by the same factor at ``now``. The
    origin moves forward (one rescale of the array) before the factor overflows.

    Parameters
    ----------
    half_life
        Seconds after which a contribution counts half.

    Examples
    --------
    >>> counts = DecayingVector(half_life=10.0)
    >>> counts.add(3, 1.0, at=0.0)
    >>> counts.value(3, now=10.0), counts.value(3, now=20.0), counts.value(0, now=20.0)
    (0.5, 0.25, 0.0)
    """

    #: Increments :meth:`add` made since the journal was last taken, by row, in the
    #: stored frame (``None``: not journaled; a class default for older pickles).
    journal: dict[int, float] | None = None

    def __init__(self, half_life: float) -> None:
        self.half_life = half_life
        self.values = np.zeros(0, dtype=np.float64)
        self.origin: float | None = None

    def _factor(self, at: float) -> float:
        self.origin, factor, rescale = forward_decay(self.origin, at, self.half_life)
        if rescale != 1.0:
            self.values *= rescale
            if self.journal:
                self.journal = {row: value * rescale for row, value in self.journal.items()}
        return factor

    def add(self, row: int, weight: float, *, at: float) -> None:
        """Add ``weight`` to ``row`` at event time ``at`` (journaled, if journaling).

        >>> counts = DecayingVector(half_life=10.0)
        >>> counts.journal = {}
        >>> counts.add(3, 1.0, at=0.0); counts.add(3, 2.0, at=0.0)
        >>> counts.journal
        {3: 3.0}
        """
        factor = self._factor(at)
        if row >= len(self.values):
            self.values = grown(self.values, row + 1)
        amount = weight * factor
        self.values[row] += amount
        journal = self.journal
        if journal is not None:
            journal[row] = journal.get(row, 0.0) + amount

    def add_many(self, rows: np.ndarray, weights: np.ndarray, *, at: float) -> None:
        """Add ``weights[i]`` to ``rows[i]``, each valued at event time ``at`` (rows distinct).

        Never journaled: it adds what was learned elsewhere (item updates).

        >>> counts = DecayingVector(half_life=10.0)
        >>> counts.add_many(np.array([0, 2]), np.array([1.0, 4.0]), at=10.0)
        >>> counts.value(0, now=20.0), counts.value(2, now=10.0)
        (0.5, 4.0)
        """
        if not len(rows):
            return
        factor = self._factor(at)
        size = int(rows.max()) + 1
        if size > len(self.values):
            self.values = grown(self.values, size)
        self.values[rows] += weights * factor

    def scale(self, now: float) -> float:
        """Multiply stored values by this to read them at ``now``."""
        return decay_scale(self.origin, now, self.half_life)

    def value(self, row: int, *, now: float) -> float:
        """Decayed value of one row at ``now`` (0 for rows never updated)."""
        if row >= len(self.values):
            return 0.0
        return float(self.values[row]) * self.scale(now)

    def vector(self, size: int, *, now: float) -> np.ndarray:
        """Decayed values of rows ``0 .. size-1`` at ``now`` (a new array)."""
        out = np.zeros(size, dtype=np.float64)
        n = min(size, len(self.values))
        out[:n] = self.values[:n] * self.scale(now)
        return out

    def raw(self, size: int) -> np.ndarray:
        """Stored (undecayed) values padded to ``size`` rows, without copying."""
        if len(self.values) < size:
            self.values = grown(self.values, size)
        return self.values[:size]

    def forget(self, row: int) -> None:
        if row < len(self.values):
            self.values[row] = 0.0


class ItemNames(NamedTuple):
    """The names of a catalog entry: its id, artist and genres."""

    item_id: str
    artist: str
    genres: tuple[str, ...]


class CatalogEntries(Sequence[CatalogItem | None]):
    """Read-only view of an index's catalog entries by row, each built on access."""

    __slots__ = ("_index",)

    def __init__(self, index: ItemIndex) -> None:
        self._index = index

    def __len__(self) -> int:
        return len(self._index.titles)

    @overload
    def __getitem__(self, row: int) -> CatalogItem | None: ...
    @overload
    def __getitem__(self, rows: slice) -> list[CatalogItem | None]: ...
    def __getitem__(self, row: int | slice) -> CatalogItem | None | list[CatalogItem | None]:
        if isinstance(row, slice):
            return [self._index.entry(n) for n in range(len(self))[row]]
        return self._index.entry(range(len(self))[row])


class ItemIndex:
    """Dense rows for item ids, plus what the catalog says about each item.

    Items may first appear in an event, with no metadata; :meth:`upsert` fills in
    title, artist, genres, duration and release date later. Removed items keep
    their row (statistics stay aligned) but are flagged inactive.

    Examples
    --------
    >>> from stream.models import CatalogItem
    >>> index = ItemIndex()
    >>> row = index.upsert(CatalogItem("t1", "Northern Lights", "Aurora Fields",
    ...                                ("ambient", "electronic"), 200_000, 0.0))
    >>> index.label(row), index.artist_name(row), index.genre_names(row)
    ('Northern Lights', 'Aurora Fields', ['ambient', 'electronic'])
    >>> index.label(index.add("t2"))
    't2'
    """

    #: (a class default for indexes pickled before it was counted)
    rule_changes = 0

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        # A catalog entry is kept in parts, not as a CatalogItem per item (~130 bytes
        # more each): its title here (None: no entry), its artist, duration and release
        # date in the arrays below, its genres as the number of a tuple shared by every
        # item with the same genres. :meth:`entry` puts it back together, exactly.
        self.titles: list[str | None] = []
        self.genre_set_of = np.zeros(0, dtype=np.int32)
        self.genre_sets: dict[tuple[str, ...], int] = {}
        self.genre_set_list: list[tuple[str, ...]] = []
        self.active = np.zeros(0, dtype=bool)
        # 0 for active rows, -inf for withdrawn ones: adding it masks a score vector in place.
        self.penalty = np.zeros(0, dtype=np.float32)
        self.released_at = np.zeros(0, dtype=np.float64)
        self.artist_of = np.zeros(0, dtype=np.int32)
        self.genres_of = np.zeros((0, MAX_ITEM_GENRES), dtype=np.int32)
        self.duration_ms = np.zeros(0, dtype=np.int32)
        self.artists: list[str] = []
        self.artist_rows: dict[str, int] = {}
        self.artist_items: list[list[int]] = []
        self.genres: list[str] = []
        self.genre_rows: dict[str, int] = {}
        self.n_catalog = 0
        #: Withdrawals and artist changes so far: what can make a row made before
        #: break the rules (a withdrawn item, too many of one artist).
        self.rule_changes = 0

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["genre_sets"]  # the inverse of genre_set_list
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        catalog = state.pop("catalog", None)
        state.pop("genre_sets", None)
        self.__dict__.update(state)
        if catalog is None:
            self.genre_sets = {genres: n for n, genres in enumerate(self.genre_set_list)}
            return
        # An index pickled when it kept a CatalogItem per row: split into parts, exactly.
        self.genre_sets, self.genre_set_list = {}, []
        self.genre_set_of = np.zeros(len(self.active), dtype=np.int32)
        self.titles = [None if item is None else item.title for item in catalog]
        for row, item in enumerate(catalog):
            if item is not None:
                self.genre_set_of[row] = self._genre_set(item.genres)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.rows

    def row(self, item_id: str) -> int | None:
        return self.rows.get(item_id)

    def add(self, item_id: str) -> int:
        """Row of ``item_id``, creating an active row with no metadata if new."""
        row = self.rows.get(item_id)
        if row is not None:
            return row
        row = len(self.ids)
        self.ids.append(item_id)
        self.rows[item_id] = row
        self.titles.append(None)
        if row >= len(self.active):
            size = row + 1
            self.active = grown(self.active, size, False)
            self.penalty = grown(self.penalty, size, -np.inf)
            self.released_at = grown(self.released_at, size, np.nan)
            self.artist_of = grown(self.artist_of, size, -1)
            self.genres_of = grown(self.genres_of, size, -1)
            self.duration_ms = grown(self.duration_ms, size, 0)
            self.genre_set_of = grown(self.genre_set_of, size, 0)
        self.active[row] = True
        self.penalty[row] = 0.0
        return row

    def _artist_row(self, artist: str) -> int:
        row = self.artist_rows.get(artist)
        if row is None:
            row = self.artist_rows[artist] = len(self.artists)
            self.artists.append(artist)
            self.artist_items.append([])
        return row

    def _genre_row(self, genre: str) -> int:
        row = self.genre_rows.get(genre)
        if row is None:
            row = self.genre_rows[genre] = len(self.genres)
            self.genres.append(genre)
        return row

    def artist_key(self, artist: str) -> int:
        """Local key of an artist name (the ``artist_keys`` of a user), created if new.

        A new artist has no items until the catalog names one of theirs.

        >>> index = ItemIndex()
        >>> [index.artist_key(name) for name in ("Iron Vale", "Aurora Fields", "Iron Vale")]
        [0, 1, 0]
        >>> index.artists, index.artist_items
        (['Iron Vale', 'Aurora Fields'], [[], []])
        """
        return self._artist_row(artist)

    def genre_key(self, genre: str) -> int:
        """Local key of a genre name (the ``genre_keys`` of a user), created if new.

        >>> index = ItemIndex()
        >>> index.genre_key("metal"), index.genre_key("ambient"), index.genres
        (0, 1, ['metal', 'ambient'])
        """
        return self._genre_row(genre)

    def upsert(self, item: CatalogItem) -> int:
        """Add or update catalog metadata; re-activates a removed item.

        The entry kept shares its artist name and genre tuple with every other item
        of that artist and genres (a decoded message brings its own copies of them).

        >>> from stream.models import CatalogItem
        >>> index = ItemIndex()
        >>> rows = [index.upsert(CatalogItem(f"t{n}", "T", "".join(["Ada"]), ("jazz",), 1, 0.0))
        ...         for n in range(2)]
        >>> index.entry(0).artist is index.entry(1).artist, index.entry(1).genres
        (True, ('jazz',))
        >>> index.entry(1) == CatalogItem("t1", "T", "Ada", ("jazz",), 1, 0.0)
        True
        """
        row = self.add(item.item_id)
        if self.titles[row] is None:
            self.n_catalog += 1
        artist = self._artist_row(item.artist)
        self.titles[row] = item.title
        self.genre_set_of[row] = self._genre_set(item.genres)
        self.active[row] = True
        self.penalty[row] = 0.0
        self.released_at[row] = item.released_at
        previous_artist = int(self.artist_of[row])
        if previous_artist != artist:
            if previous_artist >= 0:
                self.artist_items[previous_artist].remove(row)
                self.rule_changes += 1
            self.artist_items[artist].append(row)
        self.artist_of[row] = artist
        self.genres_of[row] = -1
        for slot, genre in enumerate(item.genres[:MAX_ITEM_GENRES]):
            self.genres_of[row, slot] = self._genre_row(genre)
        self.duration_ms[row] = item.duration_ms
        return row

    def _genre_set(self, genres: tuple[str, ...]) -> int:
        """Number of the shared tuple equal to ``genres``, added (with the index's own
        genre strings where it has them) if new."""
        number = self.genre_sets.get(genres)
        if number is None:
            rows = self.genre_rows
            shared = tuple(
                genre if (row := rows.get(genre)) is None else self.genres[row] for genre in genres
            )
            number = self.genre_sets[shared] = len(self.genre_set_list)
            self.genre_set_list.append(shared)
        return number

    def entry(self, row: int) -> CatalogItem | None:
        """The catalog entry of ``row`` as it was upserted, ``None`` if it has none."""
        title = self.titles[row]
        if title is None:
            return None
        return CatalogItem(
            self.ids[row],
            title,
            self.artists[self.artist_of[row]],
            self.genre_set_list[self.genre_set_of[row]],
            int(self.duration_ms[row]),
            float(self.released_at[row]),
        )

    @property
    def catalog(self) -> CatalogEntries:
        """Every row's catalog entry (``None`` where it has none), by row."""
        return CatalogEntries(self)

    def has_entry(self, row: int) -> bool:
        """Whether the catalog announced the item of ``row`` (withdrawn or not)."""
        return self.titles[row] is not None

    def in_catalog(self, item_id: str) -> bool:
        """Whether the catalog announced ``item_id`` and has not withdrawn it.

        >>> index = ItemIndex()
        >>> _ = index.add("heard-of")  # an event named it: a row, but no catalog entry
        >>> index.in_catalog("heard-of"), index.in_catalog("never")
        (False, False)
        """
        row = self.rows.get(item_id)
        return row is not None and self.titles[row] is not None and bool(self.active[row])

    def remove(self, item_id: str) -> bool:
        """Withdraw an item: it keeps its row but is never recommended again."""
        row = self.rows.get(item_id)
        if row is None or not self.active[row]:
            return False
        self.active[row] = False
        self.penalty[row] = -np.inf
        self.rule_changes += 1
        return True

    def label(self, row: int) -> str:
        """Title when known, else the id (for reasons a person reads)."""
        title = self.titles[row]
        return title if title is not None else self.ids[row]

    def artist_name(self, row: int) -> str | None:
        return None if self.titles[row] is None else self.artists[self.artist_of[row]]

    def genre_names(self, row: int) -> list[str]:
        if self.titles[row] is None:
            return []
        return list(self.genre_set_list[self.genre_set_of[row]][:MAX_ITEM_GENRES])

    def names(self, row: int) -> ItemNames | None:
        """Id, artist and genres of ``row``'s catalog entry (``None`` if it has none):
        what Wrapped counts, without building the whole entry."""
        if self.titles[row] is None:
            return None
        return ItemNames(
            self.ids[row],
            self.artists[self.artist_of[row]],
            self.genre_set_list[self.genre_set_of[row]],
        )

    def catalog_duration(self, row: int) -> int | None:
        duration = int(self.duration_ms[row])
        return duration or None

    @property
    def has_catalog(self) -> bool:
        return self.n_catalog > 0


#: The array fields of :class:`UserState` and their typecodes, in their packed order.
_ARRAYS: Final = (
    ("seen", "i"),
    ("seen_outcome", "b"),
    ("recent_rows", "i"),
    ("recent_weights", "f"),
    ("recent_times", "d"),
    ("genre_keys", "i"),
    ("genre_values", "f"),
    ("artist_keys", "i"),
    ("artist_values", "f"),
    ("arm_rows", "i"),
    ("arm_ids", "b"),
)
_ARRAY_NAMES: Final = frozenset(name for name, _ in _ARRAYS)
#: Lengths of the packed arrays: seen, the ring, genres, artists, arms (fields of one
#: group have the same length).
_LENGTHS: Final = struct.Struct("=5i")
#: Scalar fields, as :meth:`UserState.__getstate__` names them.
_SCALARS: Final = (
    "capacity",
    "n_recent",
    "plays",
    "skips",
    "replays",
    "last_event_id",
    "last_event_at",
    "taste_origin",
)


class UserState:
    """What the engine remembers about one user, compact and bounded.

    ``seen`` holds every item the user ever interacted with, as a sorted
    ``array('i')`` of rows (4 bytes each: needed to recommend only new items).
    The last ``capacity`` events are kept in a ring buffer that grows with the
    first events up to ``capacity``; taste affinities and the Discover
    attribution memory are small capped arrays. Plain ``array`` objects pickle
    compactly and are fast to read from Python.

    An idle user's arrays are *frozen*: packed into one ``bytes`` (an ``array``
    costs 64 bytes before its first element, and a user has eleven). Reading
    any of them thaws the user first, transparently and exactly; only the
    :attr:`max_thawed` users thawed most recently stay thawed, the others are
    frozen again. So code may keep a user's array while it works on that user,
    not while it thaws hundreds of others (a change to the array would be lost),
    and assigns new arrays only to a user it just created.

    Examples
    --------
    >>> user = UserState(capacity=2)
    >>> for row, weight, at in [(5, 1.0, 1.0), (6, -1.0, 2.0), (7, 0.5, 3.0)]:
    ...     user.remember(row, weight, at)
    >>> user.has_seen(5), user.has_seen(8), user.seen_rows().tolist()
    (True, False, [5, 6, 7])
    >>> list(user.newest_first())
    [(7, 0.5, 3.0), (6, -1.0, 2.0)]
    >>> user.last_weight_of(6), user.last_weight_of(5), user.last_outcome(5)
    (-1.0, None, 1.0)
    >>> user.freeze()
    >>> user.frozen, user.seen.tolist(), user.frozen  # reading thaws
    (True, [5, 6, 7], False)
    """

    # The arrays, the scalars, then the packed form of a frozen user's arrays.
    __slots__ = (*(name for name, _ in _ARRAYS), *_SCALARS, "_packed", "__weakref__")

    #: Users left thawed at most (process-wide; the least recently thawed are frozen).
    max_thawed: ClassVar[int] = 1_024
    #: The thawed users, least recently thawed first, by ``id``. Weak references: a user
    #: the engine dropped (forgotten, replaced, the engine discarded) is freed at once,
    #: and its entry is skipped when it comes up for freezing.
    _thawed: ClassVar[OrderedDict[int, weakref.ref[UserState]]] = OrderedDict()

    def __init__(self, capacity: int) -> None:
        self.seen = array("i")
        # The latest signal on each seen item, quantised to a signed byte (1 byte per item).
        self.seen_outcome = array("b")
        self.recent_rows = array("i")
        self.recent_weights = array("f")
        self.recent_times = array("d")
        self.capacity = capacity
        self.n_recent = 0
        self.plays = 0
        self.skips = 0
        self.replays = 0
        self.last_event_id: str | None = None
        self.last_event_at: float | None = None
        self.taste_origin: float | None = None
        self.genre_keys = array("i")
        self.genre_values = array("f")
        self.artist_keys = array("i")
        self.artist_values = array("f")
        self.arm_rows = array("i")
        self.arm_ids = array("b")
        self._packed: bytes | None = None
        self._note_thawed()

    # ------------------------------------------------------------------ freezing
    @property
    def frozen(self) -> bool:
        return self._packed is not None

    def freeze(self) -> None:
        """Pack the arrays into one ``bytes`` (a no-op if frozen); reading one thaws them."""
        if self._packed is not None:
            return
        self._packed = self._pack()
        del self.seen, self.seen_outcome, self.recent_rows, self.recent_weights
        del self.recent_times, self.genre_keys, self.genre_values, self.artist_keys
        del self.artist_values, self.arm_rows, self.arm_ids
        UserState._thawed.pop(id(self), None)

    # _pack and _thaw spell out the layout of _ARRAYS: a loop over it costs ~1.8 µs more
    # per freeze and thaw (37 %), and a busy worker thaws a user on one event in seven.
    def _pack(self) -> bytes:
        seen, rows, genres, artists, arms = (
            self.seen,
            self.recent_rows,
            self.genre_keys,
            self.artist_keys,
            self.arm_rows,
        )
        lengths = _LENGTHS.pack(len(seen), len(rows), len(genres), len(artists), len(arms))
        return b"".join(
            (
                lengths,
                seen,
                self.seen_outcome,
                rows,
                self.recent_weights,
                self.recent_times,
                genres,
                self.genre_values,
                artists,
                self.artist_values,
                arms,
                self.arm_ids,
            )
        )

    def _thaw(self) -> None:
        packed = self._packed
        assert packed is not None
        n_seen, n_recent, n_genres, n_artists, n_arms = _LENGTHS.unpack_from(packed)
        at = _LENGTHS.size
        self.seen = array("i", packed[at : (at := at + 4 * n_seen)])
        self.seen_outcome = array("b", packed[at : (at := at + n_seen)])
        self.recent_rows = array("i", packed[at : (at := at + 4 * n_recent)])
        self.recent_weights = array("f", packed[at : (at := at + 4 * n_recent)])
        self.recent_times = array("d", packed[at : (at := at + 8 * n_recent)])
        self.genre_keys = array("i", packed[at : (at := at + 4 * n_genres)])
        self.genre_values = array("f", packed[at : (at := at + 4 * n_genres)])
        self.artist_keys = array("i", packed[at : (at := at + 4 * n_artists)])
        self.artist_values = array("f", packed[at : (at := at + 4 * n_artists)])
        self.arm_rows = array("i", packed[at : (at := at + 4 * n_arms)])
        self.arm_ids = array("b", packed[at : at + n_arms])
        self._packed = None
        self._note_thawed()

    def _note_thawed(self) -> None:
        thawed = UserState._thawed
        key = id(self)
        # An entry under this id is a dead user's (``id`` values are reused): replace it.
        thawed.pop(key, None)
        thawed[key] = weakref.ref(self)
        while len(thawed) > UserState.max_thawed:
            user = thawed.popitem(last=False)[1]()
            if user is not None:
                user.freeze()

    def __getattr__(self, name: str) -> object:
        # Only called for a field that is not set: an array of a frozen user.
        if name in _ARRAY_NAMES and object.__getattribute__(self, "_packed") is not None:
            self._thaw()
            return object.__getattribute__(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, object]:
        state = {name: getattr(self, name) for name in _SCALARS}
        state["packed"] = self._pack() if self._packed is None else self._packed
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            if name != "packed":
                setattr(self, name, value)
        if "packed" in state:  # frozen, as written
            self._packed = state["packed"]  # type: ignore[assignment]
            return
        # A snapshot from before packing: arrays by name, and rings always full size.
        self.capacity = len(self.recent_rows)
        self._packed = None
        self.freeze()

    # ------------------------------------------------------------------ reading
    @property
    def n_events(self) -> int:
        return self.plays + self.skips + self.replays

    @property
    def n_seen(self) -> int:
        return len(self.seen)

    def has_seen(self, row: int) -> bool:
        seen = self.seen
        position = bisect_left(seen, row)
        return position < len(seen) and seen[position] == row

    def last_outcome(self, row: int) -> float | None:
        """The latest signal the user gave ``row`` (to 1/50), ``None`` if never seen."""
        seen = self.seen
        position = bisect_left(seen, row)
        if position < len(seen) and seen[position] == row:
            return self.seen_outcome[position] / _OUTCOME_SCALE
        return None

    def seen_rows(self) -> np.ndarray:
        """Rows of every item the user interacted with (a new, sorted int32 array)."""
        return np.frombuffer(self.seen, dtype=np.int32).copy()

    def remember(self, row: int, weight: float, at: float) -> None:
        """Record one event in the seen set and the recent ring buffer."""
        seen = self.seen
        position = bisect_left(seen, row)
        if position == len(seen) or seen[position] != row:
            seen.insert(position, row)
            self.seen_outcome.insert(position, 0)
        self.seen_outcome[position] = max(-127, min(127, round(weight * _OUTCOME_SCALE)))
        rows = self.recent_rows
        size = len(rows)
        if self.n_recent == size < self.capacity:  # not full yet: slot n_recent is new
            rows.append(row)
            self.recent_weights.append(weight)
            self.recent_times.append(at)
        else:
            slot = self.n_recent % size
            rows[slot] = row
            self.recent_weights[slot] = weight
            self.recent_times[slot] = at
        self.n_recent += 1

    def newest_first(self) -> Iterator[tuple[int, float, float]]:
        """``(row, weight, time)`` of the kept recent events, newest first."""
        capacity = len(self.recent_rows)
        rows, weights, times = self.recent_rows, self.recent_weights, self.recent_times
        for position in range(self.n_recent - 1, max(self.n_recent - capacity, 0) - 1, -1):
            slot = position % capacity
            yield rows[slot], weights[slot], times[slot]

    def last_weight(self) -> float:
        """Signal weight of the user's latest event (0 with no events)."""
        if not self.n_recent:
            return 0.0
        return self.recent_weights[(self.n_recent - 1) % len(self.recent_rows)]

    def last_weight_of(self, row: int) -> float | None:
        """Signal of the user's latest kept event on ``row``, ``None`` if not in the ring."""
        if row not in self.recent_rows:
            return None
        for other, weight, _ in self.newest_first():
            if other == row:
                return weight
        return None


def decay_factor(elapsed: float, half_life: float) -> float:
    """``0.5 ** (elapsed / half_life)``.

    >>> decay_factor(20.0, 10.0)
    0.25
    """
    return math.pow(0.5, elapsed / half_life)
