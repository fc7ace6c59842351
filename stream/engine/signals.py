"""Turning raw events into learning signals and context features.

A play counts in proportion to how much of it was heard, a replay is a strong
positive, and a skip is negative, more so the earlier it happens. Context is the
UTC hour of day, the weekday and the device.

>>> from stream.models import EventType, Interaction
>>> config = EngineConfig()
>>> early = Interaction("e1", "u", "i", EventType.SKIP, 0.0, ms_played=5_000, duration_ms=200_000)
>>> late = Interaction("e2", "u", "i", EventType.SKIP, 0.0, ms_played=190_000, duration_ms=200_000)
>>> event_weight(early, config) < event_weight(late, config) < 0
True
>>> hour_of_day(1_700_000_000.0), weekday(1_700_000_000.0)
(22, 1)
"""

from __future__ import annotations

import math
from typing import Final

from stream.engine.config import EngineConfig
from stream.models import EventType, Interaction

UNKNOWN_DEVICE: Final = "unknown"
OTHER_DEVICE: Final = "other"


def completion_of(event: Interaction, catalog_duration_ms: int | None = None) -> float | None:
    """Fraction of the item heard, from the event's duration or else the catalog's.

    >>> from stream.models import EventType, Interaction
    >>> e = Interaction("e", "u", "i", EventType.PLAY, 0.0, ms_played=30_000)
    >>> completion_of(e) is None, completion_of(e, 120_000)
    (True, 0.25)
    """
    completion = event.completion
    if completion is None and catalog_duration_ms:
        completion = min(1.0, max(0.0, event.ms_played / catalog_duration_ms))
    return completion


def event_weight(
    event: Interaction, config: EngineConfig, catalog_duration_ms: int | None = None
) -> float:
    """Signed strength of one event: positive for plays and replays, negative for skips.

    Parameters
    ----------
    event
        The interaction.
    config
        Supplies ``play_weight``, ``replay_weight``, ``skip_weight``,
        ``late_skip_factor`` and ``unknown_completion``.
    catalog_duration_ms
        The item's duration from the catalog, used when the event has none.

    Returns
    -------
    float
        ``play_weight * completion`` for a play, ``replay_weight`` (scaled up to a
        full play by completion when known) for a replay, and
        ``-skip_weight * (1 - (1 - late_skip_factor) * completion)`` for a skip.

    Examples
    --------
    >>> from stream.models import EventType, Interaction
    >>> config = EngineConfig()
    >>> half = Interaction("e", "u", "i", EventType.PLAY, 0.0, ms_played=50, duration_ms=100)
    >>> event_weight(half, config)
    0.5
    >>> event_weight(Interaction("e", "u", "i", EventType.SKIP, 0.0), config)
    -1.0
    >>> event_weight(Interaction("e", "u", "i", EventType.REPLAY, 0.0), config)
    1.5
    """
    completion = completion_of(event, catalog_duration_ms)
    if event.type is EventType.SKIP:
        heard = 0.0 if completion is None else completion
        return -config.skip_weight * (1.0 - (1.0 - config.late_skip_factor) * heard)
    if event.type is EventType.REPLAY:
        # A replay is deliberate: it stays strong even when cut short.
        heard = 1.0 if completion is None else max(completion, 0.5)
        return config.replay_weight * heard
    heard = config.unknown_completion if completion is None else completion
    return config.play_weight * heard


def hour_of_day(timestamp: float) -> int:
    """UTC hour 0-23 of an epoch timestamp.

    >>> hour_of_day(3_600.0 * 25)
    1
    """
    return int(timestamp % 86_400.0 // 3_600.0)


def weekday(timestamp: float) -> int:
    """UTC weekday, Monday = 0 (1970-01-01 was a Thursday).

    >>> weekday(0.0)
    3
    """
    return int((timestamp // 86_400.0 + 3) % 7)


def hour_bucket(timestamp: float, n_buckets: int) -> int:
    """Which of ``n_buckets`` equal slices of the UTC day the timestamp falls in.

    >>> hour_bucket(3_600.0 * 13, 4)
    2
    """
    return hour_of_day(timestamp) * n_buckets // 24


def normalise_device(device: str | None) -> str:
    """Lower-case device name; ``"unknown"`` when absent.

    >>> normalise_device(" Mobile"), normalise_device(None)
    ('mobile', 'unknown')
    """
    if not device:
        return UNKNOWN_DEVICE
    return device.strip().lower() or UNKNOWN_DEVICE


#: (sin, cos) of each UTC hour on the 24-hour circle, rounded so that 0 is exactly 0.
_HOUR_CIRCLE: Final = tuple(
    (round(math.sin(math.pi * hour / 12.0), 12), round(math.cos(math.pi * hour / 12.0), 12))
    for hour in range(24)
)


def context_features(timestamp: float, device: str | None) -> dict[str, float]:
    """Numeric context features for the skip model: hour on the circle, weekend, device.

    >>> features = context_features(0.0, "mobile")
    >>> features["hour_sin"], features["hour_cos"], features["device=mobile"]
    (0.0, 1.0, 1.0)
    """
    hour_sin, hour_cos = _HOUR_CIRCLE[hour_of_day(timestamp)]
    return {
        "hour_sin": hour_sin,
        "hour_cos": hour_cos,
        "weekend": 1.0 if weekday(timestamp) >= 5 else 0.0,
        f"device={normalise_device(device)}": 1.0,
    }
