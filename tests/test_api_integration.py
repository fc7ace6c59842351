"""The worker's HTTP API on the real broker: lists, profiles, similar items, Wrapped, errors,
metrics (per experiment arm too)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from stream.contracts import encode_catalog_item, validate_document
from stream.experiments import HOLDOUT, PERSONALISED, Experiment
from stream.models import CatalogItem
from stream.processes import free_port, running_worker
from stream.serving import partition_of

pytestmark = pytest.mark.broker

TOPIC_BY_TYPE = {"play": "plays", "skip": "skips", "replay": "replays"}
CATALOG = [
    # item, artist, genre
    ("api-a", "Ada Lane", "jazz"),
    ("api-b", "Ada Lane", "jazz"),
    ("api-c", "Cy Rock", "rock"),
    ("api-d", "Cy Rock", "rock"),
    ("api-e", "Eve Pop", "pop"),
]


def _event(user: str, item: str, kind: str, ms: int | None = None, **extra) -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "user_id": user,
        "item_id": item,
        "occurred_at": datetime.now(UTC).isoformat(),
        "ms_played": ms if ms is not None else (4_000 if kind == "skip" else 190_000),
        "duration_ms": 200_000,
        "device": "mobile",
        **extra,
    }


def _catalog_item(item: str, artist: str, genre: str) -> bytes:
    released = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    return encode_catalog_item(
        CatalogItem(item, f"Song {item}", artist, (genre,), 200_000, released)
    )


def get(port: str | int, path: str) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of ``GET path`` on the worker; errors are answers too."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def get_json(port: str | int, path: str) -> tuple[int, dict]:
    status, headers, body = get(port, path)
    assert headers["Content-Type"].startswith("application/json"), (path, headers, body[:200])
    return status, orjson.loads(body)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


async def _produce(worker, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send(worker.topic(topic), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def test_lists_profiles_similar_items_errors_and_metrics(worker):
    port = worker.env["ENCORE_WEB_PORT"]
    # u1 likes jazz and skips rock; u2 and u3 play a then b, so b is a's neighbour
    valid = [
        _event("api-u1", "api-a", "play"),
        _event("api-u1", "api-b", "replay"),
        _event("api-u1", "api-c", "skip"),
        _event("api-u1", "api-a", "play"),
        _event("api-u2", "api-a", "play"),
        _event("api-u2", "api-b", "play"),
        _event("api-u2", "api-e", "skip"),
        _event("api-u3", "api-a", "play"),
        _event("api-u3", "api-b", "play"),
        _event("api-u3", "api-d", "play"),
    ]
    duplicate = valid[0]  # the same event_id again: dead-lettered as a duplicate
    catalog = [("catalog", i.encode(), _catalog_item(i, a, g)) for i, a, g in CATALOG]
    await _produce(worker, catalog)
    # taste is learned from events on catalogued items: the catalog first
    wait_for(
        lambda: get_json(port, "/stats/")[1]["catalog_messages_applied"] == len(CATALOG),
        30,
        "catalog applied",
    )
    messages = [(TOPIC_BY_TYPE[e["type"]], e["user_id"].encode(), orjson.dumps(e)) for e in valid]
    messages += [
        ("plays", b"api-u1", b'{"event_id": "cut-off'),
        ("plays", b"api-u2", orjson.dumps({**_event("api-u2", "api-a", "play"), "ms_played": -5})),
    ]
    await _produce(worker, messages)
    # after the first events were learned: no race between the original and its duplicate
    wait_for(
        lambda: get_json(port, "/stats/")[1]["events_accepted"] == len(valid), 30, "events learned"
    )
    await _produce(worker, [("plays", b"api-u1", orjson.dumps(duplicate))])

    expected = {
        user: Counter(e["type"] for e in valid if e["user_id"] == user)
        for user in ("api-u1", "api-u2", "api-u3")
    }

    def all_lists_published() -> bool:
        for user, counts in expected.items():
            status, headers, body = get(port, f"/users/{user}/recommendations")
            if status != 200 or headers.get("X-Encore-List-Source") != "published":
                return False
            if orjson.loads(body)["based_on_events"] != sum(counts.values()):
                return False
        return True

    wait_for(all_lists_published, 30, "every user's latest list published and served")

    # --- a user's current list: the published document, valid against the schema
    status, headers, body = get(port, "/users/api-u1/recommendations")
    doc = orjson.loads(body)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert validate_document("recommendation-list", doc) is None
    assert doc["user_id"] == "api-u1" and doc["based_on_events"] == 4
    assert all(item["reason"] for row in doc["rows"] for item in row["items"])

    # --- profile: exact counts, taste from the catalog, recent events
    status, profile = get_json(port, "/users/api-u1/profile?k=2")
    assert status == 200
    assert profile["counts"] == {"plays": 2, "skips": 1, "replays": 1, "total": 4}
    assert profile["top_genres"][0]["genre"] == "jazz"
    assert profile["top_artists"][0]["artist"] == "Ada Lane"
    assert len(profile["top_genres"]) <= 2 and len(profile["recent_events"]) == 2
    # plays, skips and replays travel on different topics: learned in any order
    recent = get_json(port, "/users/api-u1/profile")[1]["recent_events"]
    assert sorted(e["item_id"] for e in recent) == ["api-a", "api-a", "api-b", "api-c"]
    assert [e["kind"] for e in recent if e["item_id"] == "api-c"] == ["negative"], recent

    # --- similar items: b was played right after a by three users
    status, similar = get_json(port, "/items/api-a/similar?k=3")
    assert status == 200
    assert similar["similar"][0]["item_id"] == "api-b"
    assert similar["similar"][0]["title"] == "Song api-b"
    assert len(similar["similar"]) <= 3

    # --- errors: JSON with a code and a sentence
    status, error = get_json(port, "/users/nobody/recommendations")
    assert (status, error["error"]) == (404, "unknown_user") and "nobody" in error["message"]
    status, error = get_json(port, "/users/nobody/profile")
    assert (status, error["error"]) == (404, "unknown_user")
    status, error = get_json(port, "/items/no-such-item/similar")
    assert (status, error["error"]) == (404, "unknown_item")
    for bad in ("-1", "0", "abc", "1000"):
        status, error = get_json(port, f"/items/api-a/similar?k={bad}")
        assert (status, error["error"], error["parameter"]) == (400, "bad_parameter", "k")
    status, error = get_json(port, "/users/api-u1/profile?k=-1")
    assert status == 400 and "k must be" in error["message"]

    # --- health
    status, health = get_json(port, "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["broker"]["reachable"] is True
    assert health["assignment"]["event_partitions"] == [0, 1, 2, 3]

    # --- metrics: parsable, and the figures are the messages sent
    wait_for(lambda: get_json(port, "/stats/")[1]["dead_letters"] == 3, 15, "three dead letters")
    status, headers, text = get(port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    events = {s.labels["type"]: s.value for s in families["encore_events"].samples}
    assert events == {kind: float(n) for kind, n in Counter(e["type"] for e in valid).items()}
    dead = {s.labels["reason"]: s.value for s in families["encore_dead_letters"].samples}
    assert dead == {"invalid_json": 1.0, "schema_violation": 1.0, "duplicate": 1.0}
    [published] = families["encore_lists_published"].samples
    assert published.value >= 3
    freshness = {s.name: s.value for s in families["encore_freshness_seconds"].samples}
    # every learned event was reflected by a delivered list: each one sampled exactly once
    assert freshness["encore_freshness_seconds_count"] == len(valid)
    assert 0 < freshness["encore_freshness_seconds_sum"] < 30 * len(valid)
    lag_topics = {s.labels["topic"] for s in families["encore_consumer_processing_lag"].samples}
    assert {worker.topic(t) for t in ("plays", "skips", "replays")} <= lag_topics
    # all caught up: nothing left to process on the event topics
    for sample in families["encore_consumer_processing_lag"].samples:
        if sample.labels["topic"] == worker.topic("plays"):
            assert sample.value == 0, sample
    plays_highwater = sum(
        p["highwater"] or 0
        for p in get_json(port, "/stats/")[1]["consumer_lag"]["partitions"]
        if p["topic"] == worker.topic("plays")
    )
    assert plays_highwater == sum(1 for t, _, _ in messages if t == "plays") + 1  # + duplicate


def test_a_user_on_another_workers_partition_gets_421_naming_it(worker, tmp_path):
    """Two workers in one group split the partitions; each answers only for its own users."""
    second_port = free_port()
    second_env = {
        **worker.env,
        "ENCORE_WEB_PORT": str(second_port),
        "ENCORE_DATA_DIR": str(tmp_path / "data-2"),
    }
    ports = [int(worker.env["ENCORE_WEB_PORT"]), second_port]
    with running_worker(second_env, tmp_path / "worker-2.log"):

        def split() -> dict[int, list[int]] | None:
            owned = {}
            for port in ports:
                status, health = get_json(port, "/health")
                owned[port] = health["assignment"]["event_partitions"]
                if status != 200:
                    return None
            all_partitions = sorted(owned[ports[0]] + owned[ports[1]])
            return owned if all_partitions == [0, 1, 2, 3] else None

        owned = wait_for(split, 60, "the two workers split the four partitions")
        for user in ("u-1", "u-2", "u-3", "u-4", "u-5", "u-6"):
            partition = partition_of(user, 4)
            owner = next(port for port in ports if partition in owned[port])
            other = next(port for port in ports if port != owner)
            status, body = get_json(other, f"/users/{user}/profile")
            assert status == 421, body
            assert body["error"] == "not_owner" and body["partition"] == partition
            status, body = get_json(other, f"/users/{user}/recommendations")
            assert status == 421 and body["partition"] == partition
            status, body = get_json(other, f"/users/{user}/wrapped?period=2026")
            assert status == 421 and body["partition"] == partition
            # the owner answers: this user has no events
            status, body = get_json(owner, f"/users/{user}/profile")
            assert (status, body["error"]) == (404, "unknown_user")


# --------------------------------------------------------------------------- experiment arms

EXPERIMENT = Experiment("api-exp", holdout_share=0.5)
ARM_USERS = [f"aw-u{n:02d}" for n in range(12)]
ARM_CATALOG = [
    (f"aw-{n:02d}", f"Artist {n % 6}", ("jazz", "rock", "pop")[n % 3]) for n in range(30)
]


@pytest.fixture
def holdout_worker(worker_env):
    """A worker splitting users half and half between the personalised and holdout arms."""
    worker_env.env["ENCORE_EXPERIMENT_ID"] = EXPERIMENT.experiment_id
    worker_env.env["ENCORE_HOLDOUT_SHARE"] = str(EXPERIMENT.holdout_share)
    with running_worker(worker_env.env, worker_env.log_path):
        yield worker_env


def _expected_wrapped(events: list[dict], top: int) -> dict:
    """Wrapped totals and top items computed from the events sent."""
    items: dict[str, list[int]] = {}
    for e in events:
        entry = items.setdefault(e["item_id"], [0, 0])
        entry[0] += e["type"] != "skip"
        entry[1] += e["ms_played"]
    ranked = sorted(items.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:top]
    skips = sum(e["type"] == "skip" for e in events)
    return {
        "events": len(events),
        "plays": sum(e["type"] == "play" for e in events),
        "skips": skips,
        "replays": sum(e["type"] == "replay" for e in events),
        "minutes_played": round(sum(e["ms_played"] for e in events) / 60_000, 2),
        "skip_rate": round(skips / len(events), 4),
        "top_items": [
            {"id": item, "plays": plays, "minutes": round(ms / 60_000, 2)}
            for item, (plays, ms) in ranked
        ],
    }


async def test_wrapped_and_per_arm_quality_from_the_api(holdout_worker):
    worker = holdout_worker
    port = worker.env["ENCORE_WEB_PORT"]
    arms = {user: EXPERIMENT.arm(user) for user in ARM_USERS}
    assert set(arms.values()) == {PERSONALISED, HOLDOUT}, arms  # both arms have users
    catalog = [("catalog", i.encode(), _catalog_item(i, a, g)) for i, a, g in ARM_CATALOG]
    await _produce(worker, catalog)
    wait_for(
        lambda: get_json(port, "/stats/")[1]["catalog_messages_applied"] == len(ARM_CATALOG),
        30,
        "catalog applied",
    )
    # one play each, then the user's first list (no play of theirs came after a list yet)
    sent: dict[str, list[dict]] = {
        user: [_event(user, ARM_CATALOG[n * 2][0], "play")] for n, user in enumerate(ARM_USERS)
    }
    await _produce(worker, [("plays", u.encode(), orjson.dumps(e[0])) for u, e in sent.items()])

    def first_lists() -> dict[str, dict] | None:
        lists = {}
        for user in ARM_USERS:
            status, headers, body = get(port, f"/users/{user}/recommendations")
            if status != 200 or headers.get("X-Encore-List-Source") != "published":
                return None
            lists[user] = orjson.loads(body)
        return lists

    lists = wait_for(first_lists, 30, "a published list for every user")

    # attributed events from each list: a full play, a skip (even users), a partial play
    expected = {
        arm: {"users": 0, "events": 0, "through": 0, "skips": 0, "plays": 0}
        for arm in (PERSONALISED, HOLDOUT)
    }
    attributed = []
    for n, user in enumerate(ARM_USERS):
        doc = lists[user]
        assert (doc["arm"], doc["experiment"]) == (arms[user], EXPERIMENT.experiment_id), doc
        row = next(r for r in doc["rows"] if len(r["items"]) >= 3)
        source = {"list_id": doc["list_id"], "row": row["row_id"]}
        reactions = [("play", 200_000)]
        reactions += [("skip", 5_000)] if n % 2 == 0 else []
        reactions += [("play", 60_000)] if n % 3 == 0 else []  # 30 %: not played through
        counts = expected[arms[user]]
        counts["users"] += 1
        for position, (kind, ms) in enumerate(reactions):
            item = row["items"][position]["item_id"]
            event = _event(user, item, kind, ms, source={**source, "position": position})
            sent[user].append(event)
            attributed.append((TOPIC_BY_TYPE[kind], user.encode(), orjson.dumps(event)))
            counts["events"] += 1
            counts["through"] += kind == "play" and ms >= 160_000
            counts["skips"] += kind == "skip"
            counts["plays"] += kind == "play"
    await _produce(worker, attributed)
    total = len(ARM_USERS) + len(attributed)
    wait_for(lambda: get_json(port, "/stats/")[1]["events_accepted"] == total, 30, "events learned")

    # --- /stats/ quality_by_arm: exactly what was sent, arm by arm
    stats = get_json(port, "/stats/")[1]
    quality = stats["quality_by_arm"]
    assert quality == {
        arm: {
            "users": c["users"],
            "attributed_events": c["events"],
            "play_through_rate": round(c["through"] / c["events"], 6),
            "skip_rate": round(c["skips"] / c["events"], 6),
            "plays_per_user": round(c["plays"] / c["users"], 6),
        }
        for arm, c in expected.items()
    }, (quality, expected)
    assert stats["experiment"]["unattributed_events"] == 0

    # --- /metrics: the same figures per arm
    status, _, text = get(port, "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    series = {
        "users": "encore_arm_users",
        "attributed_events": "encore_arm_attributed_events",
        "play_through_rate": "encore_arm_play_through_rate",
        "skip_rate": "encore_arm_skip_rate",
        "plays_per_user": "encore_arm_plays_per_user",
    }
    for figure, family in series.items():
        by_arm = {s.labels["arm"]: s.value for s in families[family].samples}
        assert by_arm == {arm: quality[arm][figure] for arm in quality}, (family, by_arm)

    # --- Wrapped from the API: the wrapped topic's document, from what each user sent
    month = sent[ARM_USERS[0]][0]["occurred_at"][:7]
    for user in ARM_USERS:
        status, wrapped = get_json(port, f"/users/{user}/wrapped?period={month}&top=2")
        assert status == 200, wrapped
        assert validate_document("wrapped", wrapped) is None, wrapped
        assert (wrapped["user_id"], wrapped["period"], wrapped["request_id"]) == (user, month, None)
        figures = {key: wrapped[key] for key in _expected_wrapped(sent[user], 2)}
        assert figures == _expected_wrapped(sent[user], 2), user
    status, year = get_json(port, f"/users/{ARM_USERS[0]}/wrapped?period={month[:4]}")
    assert status == 200 and year["period"] == month[:4]
    assert year["events"] == len(sent[ARM_USERS[0]])
    # default top 5: every item heard, the skipped one too (0 plays, its seconds heard)
    assert year["top_items"] == _expected_wrapped(sent[ARM_USERS[0]], 5)["top_items"]
    assert len(year["top_items"]) == len({e["item_id"] for e in sent[ARM_USERS[0]]})

    # --- errors: 400 naming the parameter, 404 for a user the engine does not know
    user = ARM_USERS[0]
    for query, parameter in [
        ("", "period"),
        ("?period=2026-13", "period"),
        ("?period=last-month", "period"),
        (f"?period={month}&top=0", "top"),
        (f"?period={month}&top=51", "top"),
        (f"?period={month}&top=many", "top"),
    ]:
        status, error = get_json(port, f"/users/{user}/wrapped{query}")
        assert (status, error["error"], error["parameter"]) == (400, "bad_parameter", parameter)
        assert parameter in error["message"]
    status, error = get_json(port, f"/users/nobody/wrapped?period={month}")
    assert (status, error["error"], error["user_id"]) == (404, "unknown_user", "nobody")
