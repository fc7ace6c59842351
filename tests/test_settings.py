"""Settings: environment names, fail-fast validation, secrets hidden."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stream.settings import Settings, get_settings


def test_environment_variables_override_defaults(monkeypatch):
    monkeypatch.setenv("ENCORE_BROKER", "10.0.0.1:9092, 10.0.0.2:9092")
    monkeypatch.setenv("ENCORE_PARTITIONS", "12")
    monkeypatch.setenv("ENCORE_TOPIC_PREFIX", "staging-")
    settings = Settings()
    assert settings.bootstrap_servers == "10.0.0.1:9092,10.0.0.2:9092"
    assert settings.partitions == 12
    assert settings.topic_name("recommendations") == "staging-recommendations"


def test_settings_are_frozen():
    with pytest.raises(ValidationError):
        Settings().partitions = 3


def test_a_bad_value_names_the_field(monkeypatch):
    monkeypatch.setenv("ENCORE_PARTITIONS", "zero")
    with pytest.raises(ValidationError, match="partitions"):
        Settings()


def test_production_refuses_a_web_server_on_every_interface():
    with pytest.raises(ValidationError, match="ENCORE_WEB_BIND"):
        Settings(environment="prod", web_bind="0.0.0.0")
    assert Settings(environment="dev", web_bind="0.0.0.0").web_bind == "0.0.0.0"
    assert Settings().web_bind == "127.0.0.1"


def test_sasl_needs_credentials_and_hides_the_password():
    with pytest.raises(ValidationError, match="ENCORE_SASL_USERNAME"):
        Settings(security_protocol="SASL_PLAINTEXT")
    settings = Settings(
        security_protocol="SASL_PLAINTEXT", sasl_username="encore", sasl_password="s3cret"
    )
    assert "s3cret" not in repr(settings)
    options = settings.aiokafka_options()
    assert options["sasl_plain_password"] == "s3cret"
    assert options["security_protocol"] == "SASL_PLAINTEXT"


def test_get_settings_is_cached_until_cleared(monkeypatch):
    get_settings.cache_clear()
    first = get_settings()
    monkeypatch.setenv("ENCORE_APP_ID", "other")
    assert get_settings() is first
    get_settings.cache_clear()
    try:
        assert get_settings().app_id == "other"
    finally:
        monkeypatch.delenv("ENCORE_APP_ID")
        get_settings.cache_clear()


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_faust_gets_the_security_options_plain_clients_get(protocol):
    # what Faust's aiokafka driver passes to its consumer and producer
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from stream.app import broker_credentials

    settings = Settings(
        security_protocol=protocol,
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="encore",
        sasl_password="s3cret",
    )
    faust_options = credentials_to_aiokafka_auth(broker_credentials(settings))
    plain_options = settings.aiokafka_options()
    plain_options.pop("bootstrap_servers")
    assert faust_options.keys() - {"ssl_context"} == plain_options.keys() - {"ssl_context"}
    for key in plain_options.keys() - {"ssl_context"}:
        assert faust_options[key] == plain_options[key], key
    assert faust_options["security_protocol"] == protocol
    assert (faust_options.get("ssl_context") is not None) == ("SSL" in protocol)
