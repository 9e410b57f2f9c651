"""Open-model schedules: shapes integrate to the asked load, and shards interleave into one even schedule."""

from __future__ import annotations

import bisect
import itertools

import pytest

from loadtests.arrivals import Shard, intended_times, parse_shape

pytestmark = pytest.mark.fast

WHOLE = Shard()


def _times(spec: str, rate: float, until_s: float, shard: Shard = WHOLE) -> list[float]:
    return list(itertools.takewhile(lambda t: t < until_s, intended_times(parse_shape(spec), rate, shard)))


def _count_between(times: list[float], start_s: float, end_s: float) -> int:
    return bisect.bisect_left(times, end_s) - bisect.bisect_left(times, start_s)


def test_constant_rate_is_evenly_spaced_from_the_start() -> None:
    times = _times("constant", 200, 10)
    assert len(times) == 2000
    assert times[:3] == [0.0, 0.005, 0.01]


@pytest.mark.parametrize(("spec", "windows"), [
    ("steps:0.5,1,1.5@10s", [((0, 10), 500), ((10, 20), 1000), ((20, 40), 3000)]),
    ("ramp:0,1@30s", [((0, 30), 1500), ((30, 40), 1000), ((0, 15), 375)]),
    ("spike:1,4@10s+2s", [((0, 10), 1000), ((10, 12), 800), ((12, 20), 800)]),
    ("steps:0,1@2s", [((0, 2), 0), ((2, 3), 100)]),
])
def test_each_window_gets_the_integral_of_its_shape(spec: str, windows: list[tuple[tuple[float, float], int]]) -> None:
    times = _times(spec, 100, 45)
    for (start_s, end_s), expected in windows:
        assert abs(_count_between(times, start_s, end_s) - expected) <= 1, (spec, start_s, end_s)


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_shards_interleave_into_the_single_schedule(workers: int) -> None:
    spec = "ramp:0.2,1@5s"
    whole = _times(spec, 300, 8)
    shards = [_times(spec, 300, 8, Shard(index, workers)) for index in range(workers)]
    assert sorted(itertools.chain.from_iterable(shards)) == pytest.approx(whole)
    assert sum(len(s) for s in shards) == len(whole)
    # Each shard gets every workers-th arrival, so the shards' rates differ by at most one arrival.
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


@pytest.mark.parametrize("spec", ["ramp", "constant:2", "steps:1@0s", "steps:0,0@1s", "spike:1,2@5s", "wave:1"])
def test_bad_shapes_are_refused_with_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ValueError, match="constant.*steps.*ramp.*spike"):
        parse_shape(spec)


def test_a_non_positive_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        next(intended_times(parse_shape("constant"), 0))
