"""Load the compiled code a worker runs before its first event, not during it.

The engine's kernels (and the de-duplication window's probing loops) are numba
functions compiled on first use and cached on disk. Loading them from the cache
still costs about a second and some 60 MiB of one-time memory (LLVM's code and
data) the first time each is called: without a warm-up, the first events of a
fresh worker wait for it, and a memory reading taken before and after them
counts it against those users. :func:`warm_up` runs a throwaway pipeline
through every path a worker takes (learn, recommend, item updates, moving
users, Wrapped) on a small synthetic world, so this happens at start-up.

>>> seconds = warm_up(EngineConfig(seed=0))
>>> seconds >= 0.0
True
"""

from __future__ import annotations

import time

from stream.contracts import encode_catalog_item, encode_interaction
from stream.engine import Engine, EngineConfig
from stream.pipeline import Pipeline
from stream.simulator import World, WorldConfig


def warm_up(config: EngineConfig, *, n_events: int = 600) -> float:
    """Exercise every compiled path once on a throwaway pipeline; returns the seconds taken.

    Nothing of the worker's own state is touched: the pipeline, its engine and
    the world are dropped on return.
    """
    started = time.perf_counter()
    world = World.generate(WorldConfig(n_users=30, n_items=120, seed=config.seed))
    events = list(world.events(n_events))
    now = events[-1].timestamp + 60.0
    pipeline = Pipeline(Engine(config), clock=lambda: now, max_event_age=0)
    for item in world.catalog:
        pipeline.ingest_catalog(encode_catalog_item(item), key=item.item_id.encode())
    for offset, event in enumerate(events):
        pipeline.ingest_event(
            encode_interaction(event),
            key=event.user_id.encode(),
            event_type=event.type,
            produced_at=now,
            source=("warm-up", offset % 2, offset),
        )
    for user_id in pipeline.take_dirty():
        pipeline.recommend(user_id)
        pipeline.wrapped(user_id, time.strftime("%Y", time.gmtime(now)))
    engine = pipeline.engine
    other = Engine(config)
    updates = engine.take_item_updates()
    if updates is not None:
        other.apply_item_updates(updates)
    other.import_users(engine.export_users(list(engine.users)[:5]))
    other.predict_skip(events[-1])
    receiver = Pipeline(Engine(config), clock=lambda: now, max_event_age=0)
    receiver.import_partitions(pipeline.export_partitions({0}))
    return time.perf_counter() - started
