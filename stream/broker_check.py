"""One short connection check before a command uses Kafka: bad settings fail fast, in one line.

aiokafka only logs why it could not connect: its clients raise "Unable to
bootstrap from [...]" (or a consumer retries forever), and Kafka's reason (a wrong
password, say) is in some earlier log line. So the worker (and ``encore
simulate``/``tail``/``topics``) first connects to a bootstrap server with the
configured security settings and asks for metadata:

* a refused login, an unknown SASL mechanism or a TLS failure ends the check at
  once, with Kafka's reason;
* an unreachable server (refused, timed out) is retried until ``timeout`` runs
  out, so a broker that is still starting is waited for.

The message names the server, the security protocol, the SASL mechanism and user,
and never the password:

>>> import asyncio
>>> from stream.settings import Settings
>>> settings = Settings(broker="127.0.0.1:1", security_protocol="SASL_PLAINTEXT",
...                     sasl_username="encore", sasl_password="s3cret")
>>> asyncio.run(check_broker(settings, timeout=0.5))
Traceback (most recent call last):
...
stream.broker_check.BrokerUnavailable: cannot reach Kafka at 127.0.0.1:1 (SASL_PLAINTEXT, mechanism
PLAIN, user 'encore') within 0.5 s: ... check ENCORE_BROKER and ENCORE_SECURITY_PROTOCOL
"""

from __future__ import annotations

import asyncio
import ssl
import time

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    BrokerResponseError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from stream.settings import Settings

__all__ = ["BrokerUnavailable", "check_broker"]

#: errors that retrying cannot fix: the settings or the broker's configuration must change
_CONFIGURATION_ERRORS = (
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
    ssl.SSLError,
)


class BrokerUnavailable(RuntimeError):
    """No bootstrap server accepted a connection with the configured settings.

    The message is one line: the servers, the security settings (never the
    password), Kafka's or the network's reason and the settings to check.
    """


async def check_broker(settings: Settings, timeout: float = 10.0) -> None:
    """Connect to a bootstrap server as configured and ask for metadata, or raise.

    Parameters
    ----------
    settings
        Broker address and security settings (``aiokafka_options``).
    timeout
        Seconds to keep trying unreachable servers; configuration errors (a
        refused login, TLS) are raised at once.

    Raises
    ------
    BrokerUnavailable
        With a one-line reason.
    """
    options = settings.aiokafka_options()
    options.pop("bootstrap_servers")
    hosts = [(host, port) for host, port, _ in collect_hosts(settings.bootstrap_servers)]
    deadline = time.monotonic() + timeout
    reasons: dict[str, str] = {}
    while True:
        for host, port in hosts:
            server = f"{host}:{port}"
            left = deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(left, 0.1)):
                    await _ask_for_metadata(host, port, options)
                return
            except _CONFIGURATION_ERRORS as error:
                raise BrokerUnavailable(_refused(settings, server, error)) from None
            except (OSError, KafkaError, TimeoutError) as error:
                reasons[server] = _reason(error, settings)
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
    tried = "; ".join(f"{server}: {reason}" for server, reason in reasons.items())
    raise BrokerUnavailable(
        f"cannot reach Kafka at {settings.bootstrap_servers} ({_security(settings)}) within "
        f"{timeout:g} s: {tried}; check ENCORE_BROKER and ENCORE_SECURITY_PROTOCOL"
    )


async def _ask_for_metadata(host: str, port: int, options: dict) -> None:
    # the SASL handshake and login happen in create_conn; a PLAINTEXT client talking
    # to a SASL (or TLS) listener only notices when its first request goes unanswered
    conn = await create_conn(host, port, client_id="encore-broker-check", **options)
    try:
        await conn.send(MetadataRequest([]))
    finally:
        conn.close()


def _security(settings: Settings) -> str:
    described = settings.security_protocol
    if settings.security_protocol.startswith("SASL"):
        described += f", mechanism {settings.sasl_mechanism}, user {settings.sasl_username!r}"
    return described


def _refused(settings: Settings, server: str, error: BaseException) -> str:
    reason = _reason(error, settings)
    if isinstance(error, SaslAuthenticationFailed):
        return (
            f"Kafka at {server} refused the login of user {settings.sasl_username!r} "
            f"({settings.security_protocol}, mechanism {settings.sasl_mechanism}): {reason}; "
            "check ENCORE_SASL_USERNAME and ENCORE_SASL_PASSWORD"
        )
    return (
        f"Kafka at {server} refused the connection ({_security(settings)}): {reason}; check "
        "ENCORE_SECURITY_PROTOCOL, ENCORE_SASL_MECHANISM and ENCORE_SSL_CAFILE against the "
        "broker's listener"
    )


def _reason(error: BaseException, settings: Settings) -> str:
    """``ErrorName: what happened`` on one line, without the password."""
    if isinstance(error, TimeoutError):
        return "no answer (timed out)"
    if isinstance(error, BrokerResponseError):
        # aiokafka puts Kafka's message in args[0], or else the connection object
        message = error.args[0] if error.args and isinstance(error.args[0], str) else ""
        reason = f"{type(error).__name__}: {message or error.description}"
    elif isinstance(error, KafkaError):
        reason = str(error)  # aiokafka's own "ClassName: message"
    else:
        reason = f"{type(error).__name__}: {error}"
    if settings.sasl_password is not None:
        secret = settings.sasl_password.get_secret_value()
        if secret:
            reason = reason.replace(secret, "***")
    return " ".join(reason.split())
