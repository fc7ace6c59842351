"""The worker's HTTP API without Faust: parameters, ownership, errors and JSON documents.

The views in ``agents/serve_api.py`` only gather what Faust knows (assignment,
offsets) and call these functions; every answer, including every error, is a JSON
object built here.

>>> parse_k({"k": "5"})
5
>>> parse_k({"k": "-1"})
Traceback (most recent call last):
...
stream.serving.ApiError: 400 bad_parameter: k must be an integer from 1 to 100, got '-1'
>>> partition_of("u-00042", 8)
7
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka.partitioner import murmur2

from stream.contracts import format_time, recommendation_list_to_wire
from stream.wrapped import PERIOD_PATTERN

if TYPE_CHECKING:
    from stream.pipeline import Pipeline

#: largest ``k`` a request may ask for
MAX_K = 100
#: largest ``top`` of a Wrapped request (as in ``schemas/wrapped-request.schema.json``)
MAX_TOP = 50


@dataclass
class ApiError(Exception):
    """An answer other than 200: HTTP ``status``, a stable ``code`` and a sentence."""

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """``{"error": code, "message": ..., "status": ..., **details}``."""
        return {"error": self.code, "message": self.message, "status": self.status, **self.details}


def parse_k(query: Mapping[str, str], default: int = 10, maximum: int = MAX_K) -> int:
    """The ``k`` query parameter: an integer from 1 to ``maximum``."""
    raw = query.get("k")
    if raw is None:
        return default
    try:
        k = int(raw)
    except ValueError:
        k = 0
    if not 1 <= k <= maximum:
        raise ApiError(
            400,
            "bad_parameter",
            f"k must be an integer from 1 to {maximum}, got {raw!r}",
            {"parameter": "k"},
        )
    return k


def parse_period(query: Mapping[str, str]) -> str:
    """The ``period`` query parameter of Wrapped: required, ``YYYY-MM`` or ``YYYY``.

    >>> parse_period({"period": "2026-11"}), parse_period({"period": "2026"})
    ('2026-11', '2026')
    >>> parse_period({"period": "2026-13"})
    Traceback (most recent call last):
    ...
    stream.serving.ApiError: 400 bad_parameter: period must be YYYY-MM or YYYY, got '2026-13'
    >>> parse_period({})
    Traceback (most recent call last):
    ...
    stream.serving.ApiError: 400 bad_parameter: period is required: YYYY-MM or YYYY
    """
    raw = query.get("period")
    if raw is None:
        raise ApiError(
            400, "bad_parameter", "period is required: YYYY-MM or YYYY", {"parameter": "period"}
        )
    if not PERIOD_PATTERN.match(raw):
        raise ApiError(
            400,
            "bad_parameter",
            f"period must be YYYY-MM or YYYY, got {raw!r}",
            {"parameter": "period"},
        )
    return raw


def parse_top(query: Mapping[str, str], default: int = 5) -> int:
    """The ``top`` query parameter of Wrapped: an integer from 1 to :data:`MAX_TOP`.

    >>> parse_top({}), parse_top({"top": "3"})
    (5, 3)
    >>> parse_top({"top": "51"})
    Traceback (most recent call last):
    ...
    stream.serving.ApiError: 400 bad_parameter: top must be an integer from 1 to 50, got '51'
    """
    raw = query.get("top")
    if raw is None:
        return default
    try:
        top = int(raw)
    except ValueError:
        top = 0
    if not 1 <= top <= MAX_TOP:
        raise ApiError(
            400,
            "bad_parameter",
            f"top must be an integer from 1 to {MAX_TOP}, got {raw!r}",
            {"parameter": "top"},
        )
    return top


def partition_of(user_id: str, partitions: int) -> int:
    """The partition of ``user_id``'s events: Kafka's default partitioner (murmur2 of the key).

    Events are keyed by ``user_id``, so this is where the user's events, and so
    their state, live.
    """
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def check_owner(
    user_id: str, *, event_topics: Mapping[str, int], assigned: Iterable[tuple[str, int]]
) -> int:
    """Raise unless this worker owns ``user_id``'s partition of every event topic.

    ``event_topics`` maps each event topic to its partition count, ``assigned`` is
    this worker's ``(topic, partition)`` assignment. Returns the partition. Only the
    owner holds the user's state; another worker would answer from nothing, so it
    answers 421 Misdirected Request naming the partition (no forwarding yet), and
    503 while it has no partitions at all (starting, or in a rebalance).

    >>> check_owner("u-00042", event_topics={"plays": 8}, assigned={("plays", 7)})
    7
    >>> check_owner("u-00042", event_topics={"plays": 8}, assigned={("plays", 1)})
    Traceback (most recent call last):
    ...
    stream.serving.ApiError: 421 not_owner: user 'u-00042' is on partition 7, not assigned ...
    """
    assignment = set(assigned)
    if not assignment:
        raise ApiError(
            503,
            "no_assignment",
            "this worker has no partitions assigned yet (starting or rebalancing); retry",
        )
    partitions = {partition_of(user_id, count) for count in event_topics.values()}
    partition = min(partitions)
    missing = sorted(
        topic
        for topic, count in event_topics.items()
        if (topic, partition_of(user_id, count)) not in assignment
    )
    if missing:
        raise ApiError(
            421,
            "not_owner",
            f"user {user_id!r} is on partition {partition}, not assigned to this worker",
            {"partition": partition, "topics": missing},
        )
    return partition


def known_user_or_404(pipeline: Pipeline, user_id: str) -> None:
    if not pipeline.engine.known_user(user_id):
        raise ApiError(
            404, "unknown_user", f"no events seen for user {user_id!r}", {"user_id": user_id}
        )


def current_list(pipeline: Pipeline, user_id: str) -> tuple[bytes, str]:
    """The user's current list as wire JSON bytes, and where it came from.

    ``"published"``: the latest list sent to the recommendations topic (kept for
    the last ``served_lists`` users). ``"computed"``: the user is known but their
    list is no longer kept, so a fresh one is computed now (not published; like a
    published one it records which exploration arm filled each Discover slot, so a
    play from it is still credited).
    """
    known_user_or_404(pipeline, user_id)
    published = pipeline.latest_list(user_id)
    if published is not None:
        return published, "published"
    recommendations = pipeline.engine.recommend(user_id, now=pipeline.clock())
    return orjson.dumps(recommendation_list_to_wire(recommendations)), "computed"


def profile_document(pipeline: Pipeline, user_id: str, k: int) -> dict[str, Any]:
    """A user's taste profile: counts, top genres and artists, recent events."""
    known_user_or_404(pipeline, user_id)
    engine = pipeline.engine
    now = pipeline.clock()
    counts = engine.user_counts(user_id) or {}
    recent = engine.recent_events(user_id, k) or []
    items = engine.items
    return {
        "user_id": user_id,
        "counts": {
            "plays": counts.get("play", 0),
            "skips": counts.get("skip", 0),
            "replays": counts.get("replay", 0),
            "total": sum(counts.values()),
        },
        "top_genres": [
            {"genre": genre, "affinity": round(value, 6)}
            for genre, value in engine.top_genres(user_id, k, now=now)
        ],
        "top_artists": [
            {"artist": artist, "affinity": round(value, 6)}
            for artist, value in engine.top_artists(user_id, k, now=now)
        ],
        "recent_events": [
            {
                "item_id": item_id,
                "title": _title(items, item_id),
                "signal": round(weight, 4),
                "kind": "negative" if weight < 0 else "positive",
                "at": format_time(at),
            }
            for item_id, weight, at in recent
        ],
    }


def wrapped_document(pipeline: Pipeline, user_id: str, period: str, top: int) -> dict[str, Any]:
    """``user_id``'s Wrapped for ``period``: the document the ``wrapped`` topic carries
    (``schemas/wrapped.schema.json``), with ``request_id`` null. 404 for an unknown user.
    """
    known_user_or_404(pipeline, user_id)
    return pipeline.wrapped(user_id, period, top=top)


def similar_document(pipeline: Pipeline, item_id: str, k: int) -> dict[str, Any]:
    """Items most often played together with ``item_id`` (co-occurrence)."""
    engine = pipeline.engine
    similar = engine.similar_items(item_id, k, now=pipeline.clock())
    if similar is None:
        raise ApiError(
            404,
            "unknown_item",
            f"item {item_id!r} is not in the catalog or in any event",
            {"item_id": item_id},
        )
    return {
        "item_id": item_id,
        "title": _title(engine.items, item_id),
        "k": k,
        "similar": [
            {"item_id": other, "title": _title(engine.items, other), "score": round(score, 6)}
            for other, score in similar
        ],
    }


def _title(items: Any, item_id: str) -> str | None:
    row = items.row(item_id)
    return None if row is None else items.titles[row]


async def probe_broker(bootstrap_servers: str, timeout: float = 1.0) -> dict[str, Any]:
    """Whether a TCP connection to one of the bootstrap servers opens within ``timeout``."""
    errors = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
        except (OSError, ValueError, TimeoutError) as error:
            errors.append(f"{server}: {type(error).__name__} {error}".strip())
            continue
        writer.close()
        return {"reachable": True, "server": server, "error": None}
    return {"reachable": False, "server": None, "error": "; ".join(errors)}


def health_document(
    *,
    broker: Mapping[str, Any],
    assigned: Iterable[tuple[str, int]],
    event_topics: Iterable[str],
    pipeline: Pipeline,
) -> tuple[int, dict[str, Any]]:
    """``(HTTP status, body)``: 200 when the broker answers and event partitions are assigned.

    >>> from stream.engine import Engine
    >>> from stream.pipeline import Pipeline
    >>> status, body = health_document(broker={"reachable": True}, assigned=[("plays", 0)],
    ...                                event_topics=["plays"], pipeline=Pipeline(Engine()))
    >>> status, body["status"], body["assignment"]["event_partitions"]
    (200, 'ok', [0])
    """
    by_topic: dict[str, list[int]] = {}
    for topic, partition in assigned:
        by_topic.setdefault(topic, []).append(partition)
    event_partitions = sorted({p for topic in event_topics for p in by_topic.get(topic, [])})
    problems = []
    if not broker.get("reachable"):
        problems.append("broker unreachable")
    if not event_partitions:
        problems.append("no event partitions assigned")
    body = {
        "status": "ok" if not problems else "unavailable",
        "problems": problems,
        "broker": dict(broker),
        "assignment": {
            "event_partitions": event_partitions,
            "topics": {topic: sorted(parts) for topic, parts in sorted(by_topic.items())},
        },
        "events_accepted": sum(pipeline.accepted.values()),
        "users_waiting_for_a_list": pipeline.users_waiting,
    }
    return (200 if not problems else 503), body
