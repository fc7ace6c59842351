"""On the real broker: editorial rules, experiment arms and Wrapped, end to end.

Curation rules are produced on ``curation`` while the test follows
``recommendations``; each change must be visible in the user's next list within
one second of the broker acknowledging the rule (the delays are printed).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.contracts import decode_recommendation_list, validate_document
from stream.experiments import HOLDOUT, PERSONALISED, Experiment
from stream.models import RecommendationList
from stream.processes import running_worker

pytestmark = pytest.mark.broker

GENRES = ("rock", "jazz", "pop")
CATALOG = [
    {
        "item_id": f"c-{n:02d}",
        "title": f"Song {n}",
        "artist": f"Artist {n % 4}",
        "genres": [GENRES[n % 3]],
        "duration_ms": 200_000,
        "release_date": "2020-01-01",
    }
    for n in range(24)
]
#: user -> (country, items played)
LISTENERS = {
    "cu-gb-1": ("GB", ["c-00", "c-01", "c-02"]),
    "cu-gb-2": ("GB", ["c-03", "c-04"]),
    "cu-fr-1": ("FR", ["c-05", "c-06", "c-00"]),
}
MAX_DELAY = 1.0


def _event(user: str, item: str, kind: str = "play", ms: int = 200_000, **extra: Any) -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "user_id": user,
        "item_id": item,
        "occurred_at": datetime.now(UTC).isoformat(),
        "ms_played": ms,
        "duration_ms": 200_000,
        "device": "mobile",
        **extra,
    }


class Broker:
    """A producer and a follower of recommendations, dead-letters and wrapped."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.latest: dict[str, tuple[float, RecommendationList]] = {}
        self.dead_letters: list[dict] = []
        self.wrapped: list[dict] = []

    async def __aenter__(self) -> Broker:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.worker.bootstrap, acks="all")
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            self.worker.topic("recommendations"),
            self.worker.topic("dead-letters"),
            self.worker.topic("wrapped"),
            bootstrap_servers=self.worker.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def send(self, base: str, key: str, value: dict | bytes | None) -> float:
        """Produce and wait for the broker's ack; returns when (monotonic)."""
        raw = orjson.dumps(value) if isinstance(value, dict) else value
        await self.producer.send_and_wait(self.worker.topic(base), raw, key=key.encode())
        return time.monotonic()

    async def poll(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=20)
        now = time.monotonic()
        for batch in batches.values():
            for record in batch:
                if record.topic.endswith("dead-letters"):
                    self.dead_letters.append(orjson.loads(record.value))
                elif record.topic.endswith("wrapped"):
                    self.wrapped.append(orjson.loads(record.value))
                else:
                    doc = orjson.loads(record.value)
                    assert validate_document("recommendation-list", doc) is None, doc
                    rec = decode_recommendation_list(record.value)
                    self.latest[rec.user_id] = (now, rec)

    async def wait_for(self, what: str, done: Callable[[], Any], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.poll()
            result = done()
            if result:
                return result
        raise AssertionError(f"timed out waiting for {what}")

    async def list_after(
        self, user: str, since: float, check: Callable[[RecommendationList], bool]
    ) -> float:
        """Seconds from ``since`` until a list of ``user`` received after it passes ``check``."""

        def done() -> float | None:
            received = self.latest.get(user)
            if received and received[0] >= since and check(received[1]):
                return received[0] - since
            return None

        try:
            return await self.wait_for(f"a curated list for {user}", done, timeout=5.0)
        except AssertionError as error:
            last = self.latest[user][1] if user in self.latest else None
            shown = [(r.row_id, [(i.item_id, i.score) for i in r.items]) for r in last.rows]
            raise AssertionError(f"{error}; the last list: {shown}") from None


def _row(rec: RecommendationList, row_id: str) -> list[str]:
    for row in rec.rows:
        if row.row_id == row_id:
            return [item.item_id for item in row.items]
    return []


async def _warm_up(broker: Broker) -> None:
    for item in CATALOG:
        await broker.send("catalog", item["item_id"], item)
    for n in range(30):  # background listeners: popularity and trending
        user = f"bg-{n % 6}"
        await broker.send("plays", user, _event(user, CATALOG[(n * 7) % 24]["item_id"]))
    for user, (country, items) in LISTENERS.items():
        for item in items:
            await broker.send("plays", user, _event(user, item, country=country))
    counts = {user: len(items) for user, (_, items) in LISTENERS.items()}
    await broker.wait_for(
        "first lists",
        lambda: all(
            user in broker.latest and broker.latest[user][1].based_on_events == n
            for user, n in counts.items()
        ),
    )


async def _curation_scenario(worker: Any) -> dict[str, float]:
    delays: dict[str, float] = {}
    async with Broker(worker) as broker:
        await _warm_up(broker)
        user = "cu-gb-1"
        before = broker.latest[user][1]
        top = _row(before, "top-picks")
        assert len(top) >= 3, before
        # --- block: the item leaves every row
        blocked = top[0]
        sent = await broker.send(
            "curation",
            "block-1",
            {"rule_id": "block-1", "action": "block", "target": {"item_id": blocked}},
        )
        delays["block"] = await broker.list_after(
            user, sent, lambda rec: blocked not in rec.item_ids()
        )
        # --- pin: an item the user was not shown, at position 1 of top-picks
        shown = set(broker.latest[user][1].item_ids())
        pinned = next(i["item_id"] for i in CATALOG if i["item_id"] not in shown | {blocked})
        sent = await broker.send(
            "curation",
            "pin-1",
            {
                "rule_id": "pin-1",
                "action": "pin",
                "target": {"item_id": pinned},
                "row": "top-picks",
                "position": 1,
            },
        )
        delays["pin"] = await broker.list_after(
            user, sent, lambda rec: _row(rec, "top-picks")[1:2] == [pinned]
        )
        # --- boost: the lowest item of top-picks rises to the top (pins keep their slot)
        current = _row(broker.latest[user][1], "top-picks")
        lowest = next(i for i in reversed(current) if i != pinned)
        sent = await broker.send(
            "curation",
            "boost-1",
            {"rule_id": "boost-1", "action": "boost", "target": {"item_id": lowest}, "add": 1000},
        )
        delays["boost"] = await broker.list_after(
            user, sent, lambda rec: _row(rec, "top-picks")[:2] == [lowest, pinned]
        )
        # --- tombstone: the blocked item may be shown again
        sent = await broker.send("curation", "block-1", None)
        delays["tombstone"] = await broker.list_after(
            user, sent, lambda rec: blocked in rec.item_ids()
        )
        # --- segment: a block for GB users only
        gb, fr = broker.latest["cu-gb-1"][1], broker.latest["cu-fr-1"][1]
        common = [i for i in gb.item_ids() if i in set(fr.item_ids()) and i != pinned]
        assert common, "the two users share an item"
        target = common[0]
        sent = await broker.send(
            "curation",
            "gb-only",
            {
                "rule_id": "gb-only",
                "action": "block",
                "target": {"item_id": target},
                "segment": {"countries": ["GB"]},
            },
        )
        delays["segment"] = await broker.list_after(
            "cu-gb-1", sent, lambda rec: target not in rec.item_ids()
        )
        await asyncio.sleep(0.3)
        await broker.poll()
        assert target in broker.latest["cu-fr-1"][1].item_ids(), "FR users keep the item"
        # --- invalid rule -> dead letter with a reason
        await broker.send("curation", "bad-1", b'{"rule_id":"bad-1","action":"boost"}')
        letter = await broker.wait_for(
            "a dead letter",
            lambda: next((d for d in broker.dead_letters if d["topic"].endswith("curation")), None),
        )
        assert letter["reason"] == "schema_violation"
        assert validate_document("dead-letter", letter) is None
        # invariants on every list now: no duplicates, pins in place
        for _, rec in broker.latest.values():
            ids = rec.item_ids()
            assert len(ids) == len(set(ids)), rec
    return delays


def test_curation_rules_reach_the_next_lists_within_a_second(worker):
    delays = asyncio.run(_curation_scenario(worker))
    print("curation delays (s):", {k: round(v, 3) for k, v in delays.items()})  # noqa: T201
    slow = {action: delay for action, delay in delays.items() if delay > MAX_DELAY}
    assert not slow, f"rules took longer than {MAX_DELAY} s: {slow}"
    stats = _stats(worker)
    assert stats["curation"]["rules"] == 3  # pin, boost, gb-only
    assert stats["curation"]["rules_by_action"] == {"pin": 1, "boost": 1, "block": 1}
    assert stats["rejected_by_reason"] == {"schema_violation": 1}


def _stats(worker: Any) -> dict:
    port = worker.env["ENCORE_WEB_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/", timeout=10) as response:
        return orjson.loads(response.read())


# --------------------------------------------------------------------------- experiments

EXPERIMENT = Experiment("it-exp", holdout_share=0.3)


@pytest.fixture
def experiment_worker(worker_env: Any) -> Iterator[Any]:
    worker_env.env["ENCORE_EXPERIMENT_ID"] = EXPERIMENT.experiment_id
    worker_env.env["ENCORE_HOLDOUT_SHARE"] = str(EXPERIMENT.holdout_share)
    with running_worker(worker_env.env, worker_env.log_path):
        yield worker_env


async def _experiment_scenario(worker: Any) -> dict[str, dict[str, int]]:
    users = [f"ex-{n:03d}" for n in range(80)]
    sent = {PERSONALISED: {"plays": 0, "skips": 0}, HOLDOUT: {"plays": 0, "skips": 0}}
    async with Broker(worker) as broker:
        for item in CATALOG:
            await broker.send("catalog", item["item_id"], item)
        for n, user in enumerate(users):
            await broker.send("plays", user, _event(user, CATALOG[n % 24]["item_id"]))
            await broker.send("plays", user, _event(user, CATALOG[(n * 5 + 1) % 24]["item_id"]))
        await broker.wait_for(
            "a list for every user",
            lambda: all(
                u in broker.latest and broker.latest[u][1].based_on_events == 2 for u in users
            ),
        )
        for user in users:
            rec = broker.latest[user][1]
            assert rec.experiment == EXPERIMENT.experiment_id
            assert rec.arm == EXPERIMENT.arm(user), user
            assert rec.model == ("popularity" if rec.arm == HOLDOUT else "engine")
            row = rec.rows[0]
            source = {"list_id": rec.list_id, "row": row.row_id, "position": 0}
            await broker.send("plays", user, _event(user, row.items[0].item_id, source=source))
            sent[rec.arm]["plays"] += 1
            if rec.arm == HOLDOUT and len(row.items) > 1:
                source = {**source, "position": 1}
                skip = _event(user, row.items[1].item_id, "skip", 5_000, source=source)
                await broker.send("skips", user, skip)
                sent[rec.arm]["skips"] += 1
    return sent


def test_experiment_arms_are_on_every_list_and_attributed_plays_counted(experiment_worker):
    sent = asyncio.run(_experiment_scenario(experiment_worker))
    holdout_share = sent[HOLDOUT]["plays"] / 80
    assert 0.15 < holdout_share < 0.45, holdout_share
    deadline = time.monotonic() + 10
    while True:
        arms = _stats(experiment_worker)["experiment"]["arms"]
        counted = {
            arm: {
                "plays": arms.get(arm, {}).get("attributed_plays", 0),
                "skips": arms.get(arm, {}).get("attributed_skips", 0),
            }
            for arm in sent
        }
        if counted == sent or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counted == sent
    assert arms[HOLDOUT]["users"] == sent[HOLDOUT]["plays"]
    assert arms[HOLDOUT]["skip_rate"] == pytest.approx(
        sent[HOLDOUT]["skips"] / (sent[HOLDOUT]["plays"] + sent[HOLDOUT]["skips"]), abs=1e-4
    )
    assert arms[PERSONALISED]["play_through_rate"] == 1.0


# --------------------------------------------------------------------------- wrapped


async def _wrapped_scenario(worker: Any) -> tuple[dict, str, list[dict]]:
    user = "wr-1"
    events = [
        ("plays", _event(user, "c-01")),  # 200 000 ms each
        ("plays", _event(user, "c-01")),
        ("replays", _event(user, "c-02", "replay", 100_000)),
        ("skips", _event(user, "c-03", "skip", 10_000)),
    ]
    period = events[0][1]["occurred_at"][:7]
    async with Broker(worker) as broker:
        for item in CATALOG:
            await broker.send("catalog", item["item_id"], item)
        for topic, event in events:
            await broker.send(topic, user, event)
        await broker.wait_for(
            "the user's events learned",
            lambda: user in broker.latest and broker.latest[user][1].based_on_events == 4,
        )
        request = {"request_id": "rq-1", "user_id": user, "period": period, "top": 2}
        await broker.send("wrapped-requests", user, request)
        await broker.send("wrapped-requests", user, {"user_id": user, "period": "someday"})
        answer = await broker.wait_for(
            "the wrapped answer", lambda: broker.wrapped[0] if broker.wrapped else None
        )
        await broker.wait_for("a dead letter", lambda: broker.dead_letters)
        await asyncio.sleep(0.3)
        await broker.poll()
        return answer, period, list(broker.dead_letters)


def test_wrapped_request_gets_the_users_summary(worker):
    answer, period, letters = asyncio.run(_wrapped_scenario(worker))
    assert validate_document("wrapped", answer) is None, answer
    assert answer["request_id"] == "rq-1" and answer["period"] == period
    assert (answer["events"], answer["plays"], answer["replays"], answer["skips"]) == (4, 2, 1, 1)
    assert answer["minutes_played"] == 8.5  # (2 * 200 000 + 100 000 + 10 000) ms
    assert answer["skip_rate"] == 0.25
    assert answer["top_items"] == [
        {"id": "c-01", "plays": 2, "minutes": 6.67},
        {"id": "c-02", "plays": 1, "minutes": 1.67},
    ]
    # c-01 is Artist 1 / jazz, c-02 Artist 2 / pop, c-03 Artist 3 / rock (skipped)
    assert answer["top_artists"][0] == {"id": "Artist 1", "plays": 2, "minutes": 6.67}
    assert [g["id"] for g in answer["top_genres"]] == ["jazz", "pop"]
    assert [d["reason"] for d in letters] == ["schema_violation"]
