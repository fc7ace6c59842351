"""The Faust application and the ``encore`` entry point.

``encore worker`` runs a worker (Faust's own command); ``encore --help`` lists the
project's commands (``kafka``, ``topics``, ``simulate``, ``tail``, ``evaluate``,
``demo``), registered in :mod:`stream.commands`.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust

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
    """Faust's app, plus: every Encore topic exists (right partitions, compaction) before
    the worker consumes or produces. Faust itself only creates the topics it consumes."""

    async def on_first_start(self) -> None:
        from stream.topics import ensure_topics

        await ensure_topics(get_settings())
        await super().on_first_start()


def create_app(settings: Settings) -> faust.App:
    """A Faust app configured from ``settings``; agents register through autodiscovery."""
    return EncoreApp(
        settings.app_id,
        broker=settings.broker_urls,
        broker_credentials=broker_credentials(settings),
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
    )


app = create_app(get_settings())


def main() -> None:
    """Entry point of the ``encore`` command."""
    from stream.commands import register_commands

    register_commands()
    app.main()
