"""Moving users between engines: per-user state in a portable form, and back.

When a Kafka partition moves to another worker, the new owner takes the
previous owner's users into its own live engine. Item rows, genre keys and
artist keys are local to each engine (dense, in first-seen order), so a user's
:class:`~stream.engine.state.UserState` cannot be copied as is: the export
names items, genres, artists and Discover arms, and the import maps the names to
the receiving engine's rows, adding the ones it has never seen.

What moves is everything the engine keeps per user: the seen set and the latest
signal on each seen item, the recent-event ring buffer (slot for slot), the
event counts and last event, the decayed taste affinities with their decay
origin, the Discover attribution memory, and the user's MF latent vector and
bias. Item-side and global state (popularity, co-occurrence, item factors, the
skip model, the bandit's posteriors) does not move: it is not per user.

The export is a dict of name lists and numpy arrays, one column per field for
all users at once (it pickles and translates in a few large pieces, not a few
small ones per user)::

    format        1
    items, genres, artists, arms
                  the names the columns below refer to, by position (-1: none)
    users         [user_id, ...]                      n users, in this order
    has_state     bool (n)         False: known to the factor model only
    counts        int64 (n, 3)     plays, skips, replays
    n_recent      int64 (n)        events ever written to the ring buffer
    last_event_id [str | None, ...]
    last_event_at, taste_origin   float64 (n), NaN for None
    mf_known      bool (n);  mf_latents float32 (n, n_factors);  mf_bias float64 (n)
    seen          {"offsets": int64 (n + 1), "items": int32, "outcome": int8}
    recent        {"offsets", "items": int32 (-1: empty slot), "weights": float32,
                   "times": float64}                  ring slots in slot order (a ring
                                                      not full yet may have no empty slot)
    genre_taste, artist_taste   {"offsets", "keys": int32, "values": float32}
    discover      {"offsets", "items": int32, "arms": int8}

User ``i``'s entries of a group are ``offsets[i]:offsets[i + 1]``.

>>> from stream.engine import Engine, EngineConfig
>>> from stream.models import CatalogItem, EventType, Interaction
>>> old, new = Engine(EngineConfig(seed=0)), Engine(EngineConfig(seed=0))
>>> new.learn(Interaction("e0", "zoe", "t9", EventType.PLAY, 1.0, ms_played=200_000))
>>> old.upsert_item(CatalogItem("t1", "Calm", "Aurora Fields", ("ambient",), 200_000, 0.0))
>>> old.learn(Interaction("e1", "ann", "t1", EventType.PLAY, 10.0, ms_played=200_000))
>>> exported = old.export_users(["ann", "nobody"])
>>> exported["users"], exported["items"], exported["artists"]
(['ann'], ['t1'], ['Aurora Fields'])
>>> new.import_users(exported)
1
>>> new.items.rows["t1"], new.recent_events("ann", 5), new.user_counts("ann")
(1, [('t1', 1.0, 10.0)], {'play': 1, 'skip': 0, 'replay': 0})
>>> new.top_artists("ann", 1, now=10.0)
[('Aurora Fields', 1.0)]
>>> new.drop_users(["ann", "nobody"]), new.known_user("ann")
(1, False)
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from stream.engine.state import UserState

if TYPE_CHECKING:
    from stream.engine.engine import Engine


#: Version of the export's layout; :func:`import_users` refuses any other.
USERS_FORMAT: Final = 1
#: numpy types of the ``array`` typecodes :class:`UserState` uses.
_DTYPES: Final = {"i": np.intc, "b": np.int8, "f": np.float32, "d": np.float64}
#: Stands in for a user known to the factor model only: no entries, zero counts. Never changed.
_NO_STATE: Final = UserState(0)


def export_users(engine: Engine, user_ids: Iterable[str]) -> dict[str, Any]:
    """The state ``engine`` keeps about ``user_ids``, in engine-independent terms.

    Unknown ids (and repeats) are skipped. A pure query: ``engine`` is not
    changed, and the export shares no mutable object with it.
    """
    items = engine.items
    river = engine.factors.river
    users: dict[str, UserState | None] = {}
    for user_id in user_ids:
        if user_id not in users:
            state = engine.users.get(user_id)
            if state is not None or user_id in river.u_latents:
                users[user_id] = state
    states = [_NO_STATE if state is None else state for state in users.values()]

    seen_offsets, seen_rows, outcome = _ragged(states, "seen", "seen_outcome")
    recent_offsets, recent_rows, weights, times = _ragged(
        states, "recent_rows", "recent_weights", "recent_times"
    )
    genre_offsets, genre_keys, genre_values = _ragged(states, "genre_keys", "genre_values")
    artist_offsets, artist_keys, artist_values = _ragged(states, "artist_keys", "artist_values")
    arm_offsets, arm_rows, arm_ids = _ragged(states, "arm_rows", "arm_ids")

    # Number the rows and keys the exported users refer to densely, in local order.
    item_rows, item_index = _numbered(len(items), seen_rows, recent_rows, arm_rows)
    genres, genre_index = _numbered(len(items.genres), genre_keys)
    artists, artist_index = _numbered(len(items.artists), artist_keys)

    n_factors = engine.factors.n_factors
    mf_known = np.array([user_id in river.u_latents for user_id in users], dtype=bool)
    latents = np.zeros((len(users), n_factors), dtype=np.float32)
    for i, user_id in enumerate(users):
        if mf_known[i]:
            latents[i] = river.u_latents[user_id]
    counts = np.array([(s.plays, s.skips, s.replays) for s in states], dtype=np.int64)
    return {
        "format": USERS_FORMAT,
        "items": [items.ids[row] for row in item_rows.tolist()],
        "genres": [items.genres[key] for key in genres.tolist()],
        "artists": [items.artists[key] for key in artists.tolist()],
        "arms": list(engine.config.discover_arms),
        "users": list(users),
        "has_state": np.array([state is not None for state in users.values()], dtype=bool),
        "counts": counts.reshape(len(states), 3),
        "n_recent": np.array([s.n_recent for s in states], dtype=np.int64),
        "last_event_id": [s.last_event_id for s in states],
        "last_event_at": _floats([s.last_event_at for s in states]),
        "taste_origin": _floats([s.taste_origin for s in states]),
        "mf_known": mf_known,
        "mf_latents": latents,
        "mf_bias": _floats([river.u_biases.get(user_id) for user_id in users]),
        "seen": {"offsets": seen_offsets, "items": item_index[seen_rows], "outcome": outcome},
        "recent": {
            "offsets": recent_offsets,
            "items": item_index[recent_rows],
            "weights": weights,
            "times": times,
        },
        "genre_taste": {
            "offsets": genre_offsets,
            "keys": genre_index[genre_keys],
            "values": genre_values,
        },
        "artist_taste": {
            "offsets": artist_offsets,
            "keys": artist_index[artist_keys],
            "values": artist_values,
        },
        "discover": {"offsets": arm_offsets, "items": item_index[arm_rows], "arms": arm_ids},
    }


def _ragged(states: list[UserState], *names: str) -> list[np.ndarray]:
    """Offsets, then each named ``array`` field of every user concatenated (new arrays).

    The fields named together have equal lengths per user.
    """
    lengths = np.array([len(getattr(s, names[0])) for s in states], dtype=np.int64)
    offsets = np.zeros(len(states) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    columns = [offsets]
    for name in names:
        joined = bytearray(b"".join([getattr(s, name).tobytes() for s in states]))
        columns.append(np.frombuffer(joined, dtype=_DTYPES[getattr(_NO_STATE, name).typecode]))
    return columns


def _numbered(size: int, *used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The local keys in ``used`` (sorted, -1 left out), and a local key -> position table.

    The table has one spare last entry, so that -1 (an empty slot) maps to -1.
    """
    seen = np.zeros(size + 1, dtype=bool)
    for keys in used:
        seen[keys] = True
    seen[-1] = False
    keys = np.flatnonzero(seen)
    table = np.full(size + 1, -1, dtype=np.int32)
    table[keys] = np.arange(len(keys), dtype=np.int32)
    return keys, table


def _floats(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _optional(value: float) -> float | None:
    return None if value != value else value


def import_users(engine: Engine, exported: dict[str, Any]) -> int:
    """Add or replace the users of an :func:`export_users` result in ``engine``.

    Items, genres and artists ``engine`` has never seen are added, the items as
    event-only rows (no catalog metadata: the catalog stays ``engine``'s own).
    A replaced user's previous state, factors included, is dropped first.
    ``exported`` is not modified and shares no mutable object with ``engine``
    afterwards. Returns the number of users imported.

    With another ``history_size`` the ring buffer keeps the newest events that
    fit; over ``max_taste_genres`` / ``max_taste_artists`` the weakest
    affinities go, over ``max_arm_memory`` the oldest attributions, and
    attributions to an arm ``engine`` does not run are dropped.

    Raises ``ValueError``, before changing anything, for another export format
    or latent vectors of another size than ``engine``'s.
    """
    if exported.get("format") != USERS_FORMAT:
        raise ValueError(
            f"user export format {exported.get('format')!r}, this code reads {USERS_FORMAT}"
        )
    user_ids: list[str] = exported["users"]
    n_factors = engine.factors.n_factors
    latents = np.asarray(exported["mf_latents"])
    if latents.shape != (len(user_ids), n_factors):
        raise ValueError(f"{latents.shape} latents, this engine has {n_factors} factors per user")
    c = engine.config
    items = engine.items
    # Export positions -> this engine's rows and keys, with a spare last entry for -1.
    rows = _table([items.add(item_id) for item_id in exported["items"]])
    genres = _table([items.genre_key(name) for name in exported["genres"]])
    artists = _table([items.artist_key(name) for name in exported["artists"]])
    arms = _table(
        [c.discover_arms.index(a) if a in c.discover_arms else -1 for a in exported["arms"]]
    )

    seen = exported["seen"]
    seen_offsets = seen["offsets"].tolist()
    # Sorted by this engine's rows within each user (the offsets stay).
    seen_rows = rows[seen["items"]]
    owner = np.repeat(np.arange(len(user_ids)), np.diff(seen["offsets"]))
    order = np.lexsort((seen_rows, owner))
    seen_rows = seen_rows[order].astype(np.intc)
    outcome = np.asarray(seen["outcome"], dtype=np.int8)[order]

    recent = exported["recent"]
    recent_offsets = recent["offsets"].tolist()
    recent_rows = rows[recent["items"]].astype(np.intc)
    weights = np.asarray(recent["weights"], dtype=np.float32)
    times = np.asarray(recent["times"], dtype=np.float64)

    taste = exported["genre_taste"], exported["artist_taste"]
    genre_offsets, artist_offsets = (group["offsets"].tolist() for group in taste)
    genre_keys = genres[taste[0]["keys"]].astype(np.intc)
    artist_keys = artists[taste[1]["keys"]].astype(np.intc)
    genre_values, artist_values = (np.asarray(g["values"], dtype=np.float32) for g in taste)

    discover = exported["discover"]
    arm_ids = arms[discover["arms"]]
    known_arm = arm_ids >= 0
    arm_offsets = np.concatenate([[0], np.cumsum(known_arm)])[discover["offsets"]].tolist()
    arm_rows = rows[discover["items"]][known_arm].astype(np.intc)
    arm_ids = arm_ids[known_arm].astype(np.int8)

    has_state = exported["has_state"].tolist()
    counts = exported["counts"].tolist()
    n_recent = exported["n_recent"].tolist()
    last_event_ids = exported["last_event_id"]
    last_event_at = exported["last_event_at"].tolist()
    taste_origin = exported["taste_origin"].tolist()
    mf_known = exported["mf_known"].tolist()
    mf_bias = exported["mf_bias"].tolist()

    engine.drop_users(user_ids)
    river = engine.factors.river
    for i, user_id in enumerate(user_ids):
        if mf_known[i]:
            river.u_latents[user_id] = latents[i].astype(np.float32)  # a copy
        if mf_bias[i] == mf_bias[i]:
            river.u_biases[user_id] = mf_bias[i]
        if not has_state[i]:
            continue
        # Capacity 0: every field below is replaced, the ring buffer included.
        state = engine.users[user_id] = UserState(0)
        state.plays, state.skips, state.replays = counts[i]
        state.last_event_id = last_event_ids[i]
        state.last_event_at = _optional(last_event_at[i])
        state.taste_origin = _optional(taste_origin[i])
        start, end = seen_offsets[i], seen_offsets[i + 1]
        state.seen = array("i", seen_rows[start:end].tobytes())
        state.seen_outcome = array("b", outcome[start:end].tobytes())
        start, end = recent_offsets[i], recent_offsets[i + 1]
        _fill_ring(
            state,
            c.history_size,
            recent_rows[start:end],
            weights[start:end],
            times[start:end],
            n_recent[i],
        )
        start, end = genre_offsets[i], genre_offsets[i + 1]
        state.genre_keys, state.genre_values = _capped(
            genre_keys[start:end], genre_values[start:end], c.max_taste_genres
        )
        start, end = artist_offsets[i], artist_offsets[i + 1]
        state.artist_keys, state.artist_values = _capped(
            artist_keys[start:end], artist_values[start:end], c.max_taste_artists
        )
        start, end = arm_offsets[i], arm_offsets[i + 1]
        start = max(start, end - c.max_arm_memory)  # the oldest attributions go first
        state.arm_rows = array("i", arm_rows[start:end].tobytes())
        state.arm_ids = array("b", arm_ids[start:end].tobytes())
    return len(user_ids)


def _table(values: list[int]) -> np.ndarray:
    return np.array([*values, -1], dtype=np.int32)


def _fill_ring(
    state: UserState,
    capacity: int,
    rows: np.ndarray,
    weights: np.ndarray,
    times: np.ndarray,
    n_recent: int,
) -> None:
    """Copy a ring buffer slot for slot; for another size keep the newest events that fit.

    A ring that is not full yet holds just its events (it grows up to ``capacity``).
    """
    if len(rows) != capacity:
        kept = min(n_recent, len(rows), capacity)
        newest = np.arange(n_recent - kept, n_recent) % max(len(rows), 1)  # oldest first
        rows, weights, times = rows[newest], weights[newest], times[newest]
        n_recent = kept
    state.capacity = capacity
    state.recent_rows = array("i", rows.tobytes())
    state.recent_weights = array("f", weights.tobytes())
    state.recent_times = array("d", times.tobytes())
    state.n_recent = n_recent


def _capped(keys: np.ndarray, values: np.ndarray, cap: int) -> tuple[array, array]:
    """Taste keys and values in their order; over ``cap``, the weakest are dropped."""
    out_keys = array("i", keys.tobytes())
    out_values = array("f", values.tobytes())
    while len(out_keys) > cap:
        weakest = min(range(len(out_values)), key=lambda i: abs(out_values[i]))
        del out_keys[weakest]
        del out_values[weakest]
    return out_keys, out_values


def drop_users(engine: Engine, user_ids: Iterable[str]) -> int:
    """Free everything ``engine`` keeps about ``user_ids``; returns how many it knew."""
    river = engine.factors.river
    dropped = 0
    for user_id in user_ids:
        found = engine.users.pop(user_id, None) is not None
        if user_id in river.u_latents or user_id in river.u_biases:
            found = True
            river.u_latents.pop(user_id, None)
            river.u_biases.pop(user_id, None)
        dropped += found
    return dropped
