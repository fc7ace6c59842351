"""The Faust application and the ``encore`` entry point.

``encore worker`` runs a worker (Faust's own command); ``encore --help`` lists the
project's commands (``kafka``, ``topics``, ``simulate``, ``tail``, ``evaluate``,
``demo``), registered in :mod:`stream.commands`.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import faust
from faust.types import TP

from stream.batching import BatchHandler, BatchProgress, BatchTransport
from stream.checkpoint import Checkpointer
from stream.item_sharing import ITEM_UPDATE_MAX_BYTES
from stream.settings import Settings, get_settings


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials for TLS and/or SASL, or ``None`` for PLAINTEXT."""
    context = None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
    if settings.security_protocol.startswith("SASL"):
        assert settings.sasl_username and settings.sasl_password  # checked by Settings
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class EncoreApp(faust.App):
    """Faust's app, plus two things.

    - Every Encore topic exists (right partitions, compaction) before the worker
      consumes or produces; Faust itself only creates the topics it consumes.
    - Batch agents (:meth:`batch_agent`): event topics are processed a partition
      chunk at a time by :mod:`stream.batching`, not message by message.
    """

    #: records per batch-handler call: bounds how long the event loop is held
    batch_chunk_size = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}
        #: Set by ``open_state`` when handlers' state is checkpointed (stream.checkpoint):
        #: the batch consumer skips what the state already covers, and offsets are
        #: committed from checkpoints instead of from acks.
        self.batch_progress: BatchProgress | None = None
        self.checkpointer: Checkpointer | None = None
        #: Called once before the consumer starts (agents restore their state here).
        self.open_state: Callable[[], None] | None = None
        #: Awaited when partitions were assigned, before their records are processed
        #: (the state takes over the users of newly assigned partitions here).
        self.on_assigned: Callable[[set[TP]], Awaitable[None]] | None = None
        #: Awaited after the checkpoint written on revocation and stop (the item updates
        #: it took are delivered here, before another worker takes the partitions over).
        self.on_revoking: Callable[[], Awaitable[None]] | None = None

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)

    def batch_agent(self, *topics: faust.TopicT) -> Callable[[BatchHandler], BatchHandler]:
        """Register ``handler(tp, records)`` for every partition chunk of ``topics``."""

        def register(handler: BatchHandler) -> BatchHandler:
            for topic in topics:
                self.topics.add(topic)  # subscribes; it is never read through a Stream
                for name in topic.topics:
                    self.batch_handlers[name] = handler
            return handler

        return register

    async def on_first_start(self) -> None:
        from stream.topics import ensure_topics

        await ensure_topics(get_settings())
        if self.open_state is not None:
            self.open_state()
        await super().on_first_start()


class EncoreWorker(faust.Worker):
    """Faust's worker, which first checks that it can use the broker at all.

    aiokafka only logs why a connection failed (a wrong password shows up as the
    topic set-up's "Unable to bootstrap" traceback, a consumer retries forever);
    :func:`stream.broker_check.check_broker` says why in one line on stderr, and
    the worker exits with status 1 before any service starts.
    """

    def execute_from_commandline(self) -> NoReturn:
        from stream.broker_check import BrokerUnavailable, check_broker

        try:
            self.loop.run_until_complete(check_broker(get_settings()))
        except BrokerUnavailable as error:
            # logging is not set up yet, and this is the one line the operator needs
            print(f"encore worker: {error}", file=self.stderr)  # noqa: T201
            raise SystemExit(1) from None
        super().execute_from_commandline()


def create_app(settings: Settings) -> faust.App:
    """A Faust app configured from ``settings``; agents register through autodiscovery."""
    return EncoreApp(
        settings.app_id,
        broker=settings.broker_urls,
        broker_credentials=broker_credentials(settings),
        Worker=EncoreWorker,
        autodiscover=["agents"],
        origin="stream",
        # Hot state lives in the engine; Faust tables are not on the hot path.
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        web_enabled=settings.web_enabled,
        web_bind=settings.web_bind,
        web_host=settings.web_bind,
        web_port=settings.web_port,
        datadir=str(settings.data_dir),
        consumer_auto_offset_reset="earliest",
        # Lists are published on a short timer; do not hold them back in the producer.
        producer_linger=0.0,
        # Item updates (one message per worker and second) can be large.
        producer_max_request_size=ITEM_UPDATE_MAX_BYTES,
        # Large fetches feed the batch handlers (chunks of batch_chunk_size).
        broker_max_poll_records=5000,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        consumer_group_instance_id=settings.worker_id,
    )


app = create_app(get_settings())


def main() -> None:
    """Entry point of the ``encore`` command."""
    from stream.commands import register_commands

    register_commands()
    app.main()
