"""Signals: how much each event counts, and context features."""

from __future__ import annotations

import pytest

from stream.engine.config import EngineConfig
from stream.engine.signals import (
    context_features,
    event_weight,
    hour_bucket,
    hour_of_day,
    normalise_device,
    weekday,
)
from stream.models import EventType, Interaction

CONFIG = EngineConfig()


def event(kind: EventType, ms_played: int = 0, duration_ms: int | None = 200_000) -> Interaction:
    return Interaction("e", "u", "i", kind, 1_700_000_000.0, ms_played, duration_ms)


def test_play_counts_in_proportion_to_completion() -> None:
    quarter = event_weight(event(EventType.PLAY, 50_000), CONFIG)
    full = event_weight(event(EventType.PLAY, 200_000), CONFIG)
    assert full == pytest.approx(CONFIG.play_weight)
    assert quarter == pytest.approx(0.25 * CONFIG.play_weight)


def test_early_skip_weighs_more_than_late_skip() -> None:
    early = event_weight(event(EventType.SKIP, 2_000), CONFIG)
    late = event_weight(event(EventType.SKIP, 190_000), CONFIG)
    assert early < late < 0
    assert event_weight(event(EventType.SKIP, 0), CONFIG) == pytest.approx(-CONFIG.skip_weight)
    at_end = event_weight(event(EventType.SKIP, 200_000), CONFIG)
    assert at_end == pytest.approx(-CONFIG.skip_weight * CONFIG.late_skip_factor)


def test_replay_is_a_stronger_positive_than_a_full_play() -> None:
    replay = event_weight(event(EventType.REPLAY, 200_000), CONFIG)
    play = event_weight(event(EventType.PLAY, 200_000), CONFIG)
    assert replay > play > 0


def test_catalog_duration_is_the_fallback_and_unknown_uses_the_config() -> None:
    no_duration = event(EventType.PLAY, 100_000, None)
    assert event_weight(no_duration, CONFIG, catalog_duration_ms=400_000) == pytest.approx(0.25)
    assert event_weight(no_duration, CONFIG) == pytest.approx(CONFIG.unknown_completion)


def test_weights_follow_the_config() -> None:
    config = EngineConfig(skip_weight=2.0, replay_weight=3.0)
    assert event_weight(event(EventType.SKIP), config) == pytest.approx(-2.0)
    assert event_weight(event(EventType.REPLAY, 200_000), config) == pytest.approx(3.0)


def test_time_features_are_utc() -> None:
    # 2023-11-14T22:13:20Z, a Tuesday
    assert hour_of_day(1_700_000_000.0) == 22
    assert weekday(1_700_000_000.0) == 1
    assert hour_bucket(1_700_000_000.0, 4) == 3
    assert [hour_bucket(h * 3600.0, 4) for h in (0, 5, 6, 11, 12, 18, 23)] == [0, 0, 1, 1, 2, 3, 3]


def test_context_features_encode_hour_weekend_and_device() -> None:
    saturday_noon = 1_700_000_000.0 + 4 * 86_400 - 10 * 3_600 - 13 * 60 - 20
    features = context_features(saturday_noon, "Mobile")
    assert hour_of_day(saturday_noon) == 12
    assert features["weekend"] == 1.0
    assert features["device=mobile"] == 1.0
    assert features["hour_cos"] == pytest.approx(-1.0)
    assert context_features(saturday_noon, None)["device=unknown"] == 1.0
    assert normalise_device("  TV ") == "tv"
