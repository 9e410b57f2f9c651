"""The recording plugin without Locust: what the recorder puts in which histogram, and how the merger lays
intervals from several processes into .hlog files that HdrHistogram's reader reads back; and the payloads."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from loadtests.merger import IntervalMerger
from loadtests.payloads import PayloadFactory
from loadtests.recorder import LOG_KEY, SEND_LAG_KEY, THINK_KEY, Recorder, endpoint_key
from services.campaign.schema import CampaignRequest

pytestmark = pytest.mark.fast

EPOCH = 1_800_000_000.0


class _Response:
    def __init__(self, status_code: int):
        self.status_code = status_code


def _read(path: Path) -> list[HdrHistogram]:
    reader = HistogramLogReader(str(path), HdrHistogram(1, 3_600_000_000, 3))
    out = []
    while (histogram := reader.get_next_interval_histogram()) is not None:
        out.append(histogram)
    reader.close()
    return out


def test_a_request_is_logged_under_the_log_its_client_names() -> None:
    recorder = Recorder()
    recorder.on_request("POST", "/orders", response_time=2.0, response_length=10, context={LOG_KEY: "request"})
    recorder.on_request("GET", "/health", response_time=1.0, response_length=10)  # named by nobody: by its path
    assert set(recorder.take_interval(0)["histograms"]) == {"request", "request.raw", "GET_health", "GET_health.raw"}
    assert endpoint_key("GET", "/orders/{id}") == "GET_orders_id"


def test_open_model_latency_counts_from_the_intended_send() -> None:
    recorder = Recorder()
    recorder.on_request("POST", "/campaigns", response_time=2.0, response_length=10,
                        context={SEND_LAG_KEY: 500.0, LOG_KEY: "request"})
    message = recorder.take_interval(0)
    histograms = {name: HdrHistogram.decode(encoded) for name, encoded in message["histograms"].items()}
    # HDR keeps 3 significant digits: compare within 0.1 %.
    assert histograms["request.raw"].get_max_value() == pytest.approx(2000, rel=1e-3)
    assert histograms["request"].get_max_value() == pytest.approx(2500, rel=1e-3)
    assert histograms["send_lag"].get_max_value() == pytest.approx(500, rel=1e-3)


def test_closed_model_correction_fills_in_what_the_user_would_have_sent() -> None:
    recorder = Recorder()
    recorder.on_request("POST", "/campaigns", response_time=1000.0, response_length=0,
                        context={THINK_KEY: 100_000, LOG_KEY: "request"})
    histograms = {n: HdrHistogram.decode(e) for n, e in recorder.take_interval(0)["histograms"].items()}
    assert histograms["request.raw"].get_total_count() == 1
    # 1 s against an expected 100 ms interval: 1000, 900, ..., 100 ms.
    assert histograms["request"].get_total_count() == 10
    assert "send_lag" not in histograms


def test_failures_are_counted_by_status_not_timed() -> None:
    recorder = Recorder()
    for status in (500, 500, 0):
        recorder.on_request("POST", "/campaigns", response_time=3.0, response_length=0,
                            exception=RuntimeError("x"), response=_Response(status), context={LOG_KEY: "request"})
    message = recorder.take_interval(4)
    assert message["histograms"] == {}
    assert sorted(map(tuple, message["errors"])) == [("request", 0, 1), ("request", 500, 2)]


def _message(source: str, index: int, values: dict[str, list[int]], final: bool = False,
             errors: list[list[object]] | None = None) -> dict[str, object]:
    histograms = {}
    for name, latencies in values.items():
        histogram = HdrHistogram(1, 3_600_000_000, 3)
        for value in latencies:
            histogram.record_value(value)
        histograms[name] = histogram.encode().decode()
    return {"source": source, "index": index, "final": final, "histograms": histograms, "errors": errors or []}


def test_merged_count_equals_sum_with_empty_and_late_logs_still_one_interval_per_second(tmp_path: Path) -> None:
    merger = IntervalMerger(tmp_path, EPOCH, {"w1", "w2"}, always=("request",))
    merger.add(_message("w1", 0, {"request": [1000, 2000]}))
    merger.add(_message("w2", 0, {"request": [3000]}))
    merger.add(_message("w1", 1, {}))  # an empty second
    merger.add(_message("w2", 1, {}))
    merger.add(_message("w1", 2, {"status": [500]}))  # the first poll, in second 2
    merger.add(_message("w2", 2, {"request": [4000]}, errors=[["request", 503, 2]]))
    merger.stopping(EPOCH + 4.3)  # a 4 s run, stopped a little late
    merger.add(_message("w1", 3, {"request": [5000]}))
    merger.add(_message("w1", 4, {"request": [6000]}, final=True))  # drained after the stop
    merger.add(_message("w2", 4, {}, final=True))
    assert merger.all_final
    summary = merger.finish(EPOCH + 4.3)

    assert summary.intervals == 4 and summary.missing_sources == []
    post, get = _read(tmp_path / "request.hlog"), _read(tmp_path / "status.hlog")
    assert [h.get_total_count() for h in post] == [3, 0, 1, 2]  # the drained value folds into the last second
    assert [h.get_total_count() for h in get] == [0, 0, 1, 0]
    assert summary.counts["request"] == 6
    lines = (tmp_path / "request.hlog").read_text().splitlines()
    assert lines[1].startswith(f"#[StartTime: {EPOCH:.3f} (seconds since epoch), ")
    assert [line.split(",")[:2] for line in lines[4:]] == [
        ["0.000", "1.000"], ["1.000", "1.000"], ["2.000", "1.000"], ["3.000", "1.300"]]
    with open(tmp_path / "errors.csv", newline="") as file:
        assert list(csv.DictReader(file)) == [{"t_s": "2", "endpoint": "request", "status": "503", "count": "2"}]


def test_a_worker_that_never_finishes_is_named(tmp_path: Path) -> None:
    merger = IntervalMerger(tmp_path, EPOCH, {"w1", "w2"})
    merger.add(_message("w1", 0, {"request": [1000]}, final=True))
    summary = merger.finish(EPOCH + 1.0)
    assert summary.missing_sources == ["w2"]
    assert [h.get_total_count() for h in _read(tmp_path / "request.hlog")] == [1]


def test_payloads_are_valid_varied_and_seeded() -> None:
    bodies = [PayloadFactory(seed=7).next_body() for _ in range(1)]
    factory = PayloadFactory(seed=7)
    requests = [CampaignRequest.model_validate_json(factory.next_body()) for _ in range(500)]
    assert {len(r.channels) for r in requests} == {1, 2, 3}
    assert {r.follow_ups for r in requests} == set(range(6))
    assert len({r.name for r in requests}) == 500 and len({r.audience.segment for r in requests}) > 5
    assert bodies[0] == PayloadFactory(seed=7).next_body() != PayloadFactory(seed=8).next_body()
    assert PayloadFactory(seed=7, stream=1).next_body() != bodies[0]  # each process starts elsewhere
