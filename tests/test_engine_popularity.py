"""Decayed popularity, trending and context popularity."""

from __future__ import annotations

import numpy as np
import pytest

from stream.engine.popularity import Popularity, top_rows

HOUR = 3_600.0
DAY = 86_400.0


def model(**changes: float) -> Popularity:
    params = dict(
        half_life=7 * DAY,
        trending_half_life=DAY,
        trending_min_plays=3.0,
        hour_buckets=4,
        max_devices=2,
    )
    params.update(changes)
    return Popularity(**params)  # type: ignore[arg-type]


def test_play_count_halves_after_one_half_life() -> None:
    pop = model()
    for _ in range(10):
        pop.learn(0, positive=True, at=0.0)
    assert pop.play_count(0, now=0.0) == pytest.approx(10.0)
    assert pop.play_count(0, now=7 * DAY) == pytest.approx(5.0)
    assert pop.recent_play_count(0, now=DAY) == pytest.approx(5.0)


def test_skips_do_not_count_as_plays_but_raise_the_skip_rate() -> None:
    pop = model()
    for _ in range(8):
        pop.learn(1, positive=False, at=0.0)
    pop.learn(2, positive=True, at=0.0)
    assert pop.play_count(1, now=0.0) == 0.0
    share = (8 + 1) / (9 + 2)  # 8 skips in 9 events, smoothed
    assert pop.skip_share == pytest.approx(share)
    assert pop.skip_rate(1, now=0.0) == pytest.approx((8 + 4 * share) / (8 + 4))
    assert pop.skip_rate(2, now=0.0) == pytest.approx((0 + 4 * share) / (1 + 4))
    assert pop.skip_rate(9, now=0.0) == pytest.approx(share)  # no data: the global rate
    rows = np.array([1, 2, 9])
    expected = [pop.skip_rate(r, now=0.0) for r in rows.tolist()]
    assert pop.skip_rates(rows, now=0.0).tolist() == pytest.approx(expected)
    assert pop.top_popular(5, now=0.0) == [2]


def test_burst_trends_over_steady_popularity_and_floor_applies() -> None:
    pop = model()
    for day in range(30):  # item 0: 20 plays a day for a month
        for n in range(20):
            pop.learn(0, positive=True, at=day * DAY + n * 60.0)
    now = 30 * DAY
    for n in range(12):  # item 1: a sudden burst today
        pop.learn(1, positive=True, at=now - n * 600.0)
    pop.learn(2, positive=True, at=now)  # one play only: under the floor
    assert pop.top_popular(1, now=now) == [0]
    assert pop.top_trending(3, now=now)[0] == 1
    assert 2 not in pop.top_trending(3, now=now)


def test_context_popularity_follows_hour_and_device() -> None:
    pop = model()
    evening = 20 * HOUR
    morning = 8 * HOUR
    for n in range(10):
        pop.learn(0, positive=True, at=evening + n, device="tv")
        pop.learn(1, positive=True, at=morning + n, device="mobile")
    pop.learn(1, positive=True, at=morning + 11, device="mobile")  # 1 is more popular overall
    tv_evening = pop.context_vector(2, now=evening + 100, device="tv")
    mobile_morning = pop.context_vector(2, now=morning + 100, device="mobile")
    assert tv_evening[0] > tv_evening[1]
    assert mobile_morning[1] > mobile_morning[0]


def test_devices_beyond_the_cap_share_a_bucket() -> None:
    pop = model(max_devices=1)
    pop.learn(0, positive=True, at=0.0, device="mobile")
    pop.learn(1, positive=True, at=0.0, device="tv")
    pop.learn(2, positive=True, at=0.0, device="car")
    assert pop.devices == ["mobile"]
    assert len(pop.by_context) == 2


def test_top_rows_orders_and_skips_non_finite() -> None:
    import numpy as np

    scores = np.array([1.0, np.inf * -1, 3.0, 3.0, 0.5])
    assert top_rows(scores, 3).tolist() == [2, 3, 0]
    assert top_rows(scores, 10).tolist() == [2, 3, 0, 4]
    assert top_rows(scores, 0).tolist() == []
