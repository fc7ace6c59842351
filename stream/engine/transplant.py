"""Moving users between engines: per-user state in a portable form, and back.

When a Kafka partition moves to another worker, the new owner takes the
previous owner's users into its own live engine. Item rows, genre keys and
artist keys are local to each engine (dense, in first-seen order), so a user's
:class:`~stream.engine.state.UserState` cannot be copied as is: the export
names items, genres, artists and Discover arms, and the import maps the names to
the receiving engine's rows, adding the ones it has never seen.

The export is a dict of plain values and small numpy arrays (picklable)::

    {"format": 1,
     "items": [item_id, ...], "genres": [name, ...], "artists": [name, ...],
     "arms": [arm, ...],
     "users": {user_id: {"state": {...} | None,
                         "mf_latents": float32 array | None, "mf_bias": float | None}}}

Per user, item, genre, artist and arm references are indices into those four
lists (``-1`` for an empty ring-buffer slot). What moves is everything the
engine keeps per user: the seen set and the latest signal on each seen item,
the recent-event ring buffer (slot for slot), the event counts and last event,
the decayed taste affinities with their decay origin, the Discover attribution
memory, and the user's MF latent vector and bias. Item-side and global state
(popularity, co-occurrence, item factors, the skip model, the bandit's
posteriors) does not move: it is not per user.

>>> from stream.engine import Engine, EngineConfig
>>> from stream.models import CatalogItem, EventType, Interaction
>>> old, new = Engine(EngineConfig(seed=0)), Engine(EngineConfig(seed=0))
>>> new.learn(Interaction("e0", "zoe", "t9", EventType.PLAY, 1.0, ms_played=200_000))
>>> old.upsert_item(CatalogItem("t1", "Calm", "Aurora Fields", ("ambient",), 200_000, 0.0))
>>> old.learn(Interaction("e1", "ann", "t1", EventType.PLAY, 10.0, ms_played=200_000))
>>> exported = old.export_users(["ann", "nobody"])
>>> sorted(exported["users"]), exported["items"], exported["artists"]
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


def export_users(engine: Engine, user_ids: Iterable[str]) -> dict[str, Any]:
    """The state ``engine`` keeps about ``user_ids``, in engine-independent terms.

    Unknown ids (and repeats) are skipped. A pure query: ``engine`` is not
    changed, and the export shares no mutable object with it.
    """
    items = engine.items
    river = engine.factors.river
    picked: dict[str, UserState | None] = {}
    for user_id in user_ids:
        if user_id in picked:
            continue
        state = engine.users.get(user_id)
        if state is not None or user_id in river.u_latents:
            picked[user_id] = state

    # Rows, genre keys and artist keys referenced by the exported users, numbered densely.
    # Each table has one spare last entry so that -1 (an empty ring slot) maps to -1.
    used_rows = np.zeros(len(items) + 1, dtype=bool)
    used_genres = np.zeros(len(items.genres) + 1, dtype=bool)
    used_artists = np.zeros(len(items.artists) + 1, dtype=bool)
    for state in picked.values():
        if state is None:
            continue
        used_rows[_ints(state.seen)] = True
        used_rows[_ints(state.recent_rows)] = True
        used_rows[_ints(state.arm_rows)] = True
        used_genres[_ints(state.genre_keys)] = True
        used_artists[_ints(state.artist_keys)] = True
    item_rows, item_index = _numbered(used_rows)
    genre_keys, genre_index = _numbered(used_genres)
    artist_keys, artist_index = _numbered(used_artists)

    users: dict[str, dict[str, Any]] = {}
    for user_id, state in picked.items():
        latents = river.u_latents.get(user_id)
        users[user_id] = {
            "state": None
            if state is None
            else _export_state(state, item_index, genre_index, artist_index),
            "mf_latents": None if latents is None else np.array(latents, dtype=np.float32),
            "mf_bias": float(river.u_biases[user_id]) if user_id in river.u_biases else None,
        }
    return {
        "format": USERS_FORMAT,
        "items": [items.ids[row] for row in item_rows.tolist()],
        "genres": [items.genres[key] for key in genre_keys.tolist()],
        "artists": [items.artists[key] for key in artist_keys.tolist()],
        "arms": list(engine.config.discover_arms),
        "users": users,
    }


def _numbered(used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The used local keys (the last entry is the -1 spare) and local key -> export index."""
    used[-1] = False
    keys = np.flatnonzero(used)
    index = np.full(len(used), -1, dtype=np.int32)
    index[keys] = np.arange(len(keys), dtype=np.int32)
    return keys, index


def _ints(values: array) -> np.ndarray:
    """A user's ``array('i')`` as an int32 numpy array (a copy: the array may grow later)."""
    return np.array(values, dtype=np.int32)


def _export_state(
    state: UserState, item_index: np.ndarray, genre_index: np.ndarray, artist_index: np.ndarray
) -> dict[str, Any]:
    return {
        "seen": item_index[_ints(state.seen)],
        "seen_outcome": np.array(state.seen_outcome, dtype=np.int8),
        "recent_items": item_index[_ints(state.recent_rows)],
        "recent_weights": np.array(state.recent_weights, dtype=np.float32),
        "recent_times": np.array(state.recent_times, dtype=np.float64),
        "n_recent": state.n_recent,
        "plays": state.plays,
        "skips": state.skips,
        "replays": state.replays,
        "last_event_id": state.last_event_id,
        "last_event_at": state.last_event_at,
        "taste_origin": state.taste_origin,
        "genres": genre_index[_ints(state.genre_keys)],
        "genre_values": np.array(state.genre_values, dtype=np.float32),
        "artists": artist_index[_ints(state.artist_keys)],
        "artist_values": np.array(state.artist_values, dtype=np.float32),
        "arm_items": item_index[_ints(state.arm_rows)],
        "arms": np.array(state.arm_ids, dtype=np.int8),
    }


def import_users(engine: Engine, exported: dict[str, Any]) -> int:
    """Add or replace the users of an :func:`export_users` result in ``engine``.

    Items, genres and artists ``engine`` has never seen are added, the items as
    event-only rows (no catalog metadata: the catalog stays ``engine``'s own).
    A replaced user's previous state, factors included, is dropped first.
    ``exported`` is not modified and shares no mutable object with ``engine``
    afterwards. Returns the number of users imported.

    Raises ``ValueError``, before changing anything, for another export format
    or latent vectors of another size than ``engine``'s.
    """
    if exported.get("format") != USERS_FORMAT:
        raise ValueError(
            f"user export format {exported.get('format')!r}, this code reads {USERS_FORMAT}"
        )
    users: dict[str, dict[str, Any]] = exported["users"]
    n_factors = engine.factors.n_factors
    for user_id, doc in users.items():
        latents = doc["mf_latents"]
        if latents is not None and np.shape(latents) != (n_factors,):
            raise ValueError(
                f"user {user_id!r}: {np.shape(latents)} latents, this engine has {n_factors}"
            )
    items = engine.items
    # Export index -> this engine's row / key, with a spare last entry for -1.
    rows = _table([items.add(item_id) for item_id in exported["items"]])
    genres = _table([items.genre_key(name) for name in exported["genres"]])
    artists = _table([items.artist_key(name) for name in exported["artists"]])
    own_arms = engine.config.discover_arms
    arms = _table([own_arms.index(arm) if arm in own_arms else -1 for arm in exported["arms"]])

    engine.drop_users(users)
    river = engine.factors.river
    for user_id, doc in users.items():
        state = doc["state"]
        if state is not None:
            engine.users[user_id] = _import_state(engine, state, rows, genres, artists, arms)
        if doc["mf_latents"] is not None:
            river.u_latents[user_id] = np.array(doc["mf_latents"], dtype=np.float32)
        if doc["mf_bias"] is not None:
            river.u_biases[user_id] = float(doc["mf_bias"])
    return len(users)


def _table(values: list[int]) -> np.ndarray:
    return np.array([*values, -1], dtype=np.int32)


def _import_state(
    engine: Engine,
    doc: dict[str, Any],
    rows: np.ndarray,
    genres: np.ndarray,
    artists: np.ndarray,
    arms: np.ndarray,
) -> UserState:
    c = engine.config
    state = UserState(c.history_size)

    seen = rows[doc["seen"]]
    order = np.argsort(seen, kind="stable")
    state.seen = array("i", seen[order].tobytes())
    state.seen_outcome = array("b", np.asarray(doc["seen_outcome"], dtype=np.int8)[order].tobytes())

    recent = rows[doc["recent_items"]]
    weights = np.asarray(doc["recent_weights"], dtype=np.float32)
    times = np.asarray(doc["recent_times"], dtype=np.float64)
    n_recent = int(doc["n_recent"])
    capacity = len(state.recent_rows)
    if len(recent) != capacity:
        # Another ring size: keep the newest events that fit, oldest in slot 0.
        kept = min(n_recent, len(recent))
        newest = (np.arange(n_recent - kept, n_recent) % max(len(recent), 1))[-capacity:]
        recent, weights, times = recent[newest], weights[newest], times[newest]
        n_recent = len(newest)
        pad = capacity - n_recent
        recent = np.concatenate([recent, np.full(pad, -1, dtype=np.int32)])
        weights = np.concatenate([weights, np.zeros(pad, dtype=np.float32)])
        times = np.concatenate([times, np.zeros(pad, dtype=np.float64)])
    state.recent_rows = array("i", recent.astype(np.int32).tobytes())
    state.recent_weights = array("f", weights.tobytes())
    state.recent_times = array("d", times.tobytes())
    state.n_recent = n_recent

    state.plays = int(doc["plays"])
    state.skips = int(doc["skips"])
    state.replays = int(doc["replays"])
    state.last_event_id = doc["last_event_id"]
    state.last_event_at = doc["last_event_at"]

    state.taste_origin = doc["taste_origin"]
    state.genre_keys, state.genre_values = _capped(
        genres[doc["genres"]], doc["genre_values"], c.max_taste_genres
    )
    state.artist_keys, state.artist_values = _capped(
        artists[doc["artists"]], doc["artist_values"], c.max_taste_artists
    )

    # Arms this engine does not run are forgotten; over the cap, the oldest go.
    arm_rows = rows[doc["arm_items"]]
    arm_ids = arms[np.asarray(doc["arms"], dtype=np.int64)]
    keep = arm_ids >= 0
    arm_rows, arm_ids = arm_rows[keep], arm_ids[keep]
    start = max(len(arm_rows) - c.max_arm_memory, 0)
    state.arm_rows = array("i", arm_rows[start:].astype(np.int32).tobytes())
    state.arm_ids = array("b", arm_ids[start:].astype(np.int8).tobytes())
    return state


def _capped(keys: np.ndarray, values: np.ndarray, cap: int) -> tuple[array, array]:
    """Taste keys and values in their order; over ``cap``, the weakest are dropped."""
    out_keys = array("i", keys.astype(np.int32).tobytes())
    out_values = array("f", np.asarray(values, dtype=np.float32).tobytes())
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
