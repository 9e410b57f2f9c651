"""Reading results folders: schema-checked, with errors that say what to do for foreign or incomplete ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from analysis.stats.load import (
    ForeignFolderError,
    IncompleteRunError,
    ResultsFolderError,
    SchemaVersionError,
    endpoint_key,
    load_run,
    read_interval_log,
)
from tests.analysis_fixtures import CellSpec, Queue, write_run

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    specs = [CellSpec("inline", "steady", duration_s=5), CellSpec("queued", "steady", duration_s=5, queue=Queue())]
    return write_run(tmp_path_factory.mktemp("load"), specs)


def test_run_lists_its_cells_and_designs(small_run):
    run_dir, _ = small_run
    run = load_run(run_dir)
    assert [c.id for c in run.cells] == ["inline.steady.r1", "queued.steady.r1"]
    assert run.designs == ["inline", "queued"]
    assert run.slo == {"p99_ms": 500.0, "error_rate": 0.01}


def test_interval_log_reads_every_interval_and_count(small_run):
    run_dir, truth = small_run
    log = read_interval_log(run_dir / "cells" / "inline.steady.r1" / "request.hlog")
    assert log.n_intervals == 5
    assert list(log.start_s) == [0, 1, 2, 3, 4] and list(log.length_s) == [1, 1, 1, 1, 1]
    assert log.total_count == len(truth["inline.steady.r1"]["request"])


def test_interval_log_agrees_with_hdrhistograms_own_reader(small_run):
    run_dir, _ = small_run
    path = run_dir / "cells" / "queued.steady.r1" / "completion.hlog"
    total = HdrHistogram(1, 3_600_000_000, 3)
    reader = HistogramLogReader(str(path), total)
    while reader.add_next_interval_histogram() is not None:
        pass
    reader.close()
    assert (read_interval_log(path).merged() == np.ctypeslib.as_array(total.counts)).all()


def test_absent_log_reads_as_empty(tmp_path):
    assert read_interval_log(tmp_path / "nothing.hlog").n_intervals == 0


def test_damaged_log_is_a_clear_error(tmp_path):
    path = tmp_path / "request.hlog"
    path.write_text("#[StartTime: 1795917800.000 (seconds since epoch), x]\n#[BaseTime: 1795917800.000 (seconds since "
                    "epoch)]\n0.000,1.000,0.1,HISTFAAAnot-base64!!\n")
    with pytest.raises(ResultsFolderError, match="not a readable HdrHistogram interval log"):
        read_interval_log(path)


def test_folder_without_manifest_is_foreign(tmp_path):
    with pytest.raises(ForeignFolderError, match="not an offpath results folder"):
        load_run(tmp_path)


def test_missing_folder_is_foreign(tmp_path):
    with pytest.raises(ForeignFolderError, match="no such folder"):
        load_run(tmp_path / "nope")


def test_manifest_without_schema_version_is_foreign(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "something else"}))
    with pytest.raises(ForeignFolderError, match="no schema_version"):
        load_run(tmp_path)


def test_unparseable_manifest_is_foreign(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ForeignFolderError, match="not valid JSON"):
        load_run(tmp_path)


def test_other_schema_version_says_which_it_reads(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 1, "status": "complete"}))
    with pytest.raises(SchemaVersionError, match="schema_version 1; this offpath reads schema_version 2"):
        load_run(tmp_path)


def test_incomplete_run_is_refused_with_its_reason_unless_allowed(tmp_path):
    run_dir, _ = write_run(tmp_path, [CellSpec("queued", "steady", duration_s=3, queue=Queue())], complete=False)
    with pytest.raises(IncompleteRunError, match="incomplete: interrupted by SIGINT"):
        load_run(run_dir)
    run = load_run(run_dir, allow_incomplete=True)
    assert run.incomplete_reason == "interrupted by SIGINT"


def test_errors_csv_endpoints_are_normalised():
    assert endpoint_key("POST /orders") == "POST_orders"
    assert endpoint_key("GET /orders/{id}") == "GET_orders_id"
    assert endpoint_key("request") == "request"


def test_log_from_hdrhistograms_own_writer_with_absolute_times_and_tags(tmp_path):
    from hdrh.log import HistogramLogWriter

    from tests.analysis_fixtures import hdr_of

    path = tmp_path / "absolute.hlog"
    rng = np.random.default_rng(4)
    parts = [rng.integers(100, 90_000, 50 + i) for i in range(4)]
    with open(path, "w") as f:
        f.write("#[StartTime: 1795917800.000 (seconds since epoch), 2026-11-29]\n")
        writer = HistogramLogWriter(f)
        writer.output_legend()
        for second, values in enumerate(parts):
            if second == 2:
                f.write("Tag=worker-1,")
            writer.output_interval_histogram(hdr_of(values), 1795917800.0 + second, 1795917801.0 + second)
    log = read_interval_log(path)
    assert list(log.start_s) == [0, 1, 2, 3] and list(log.interval_counts()) == [len(p) for p in parts]
    assert (log.merged() == np.ctypeslib.as_array(hdr_of(np.concatenate(parts)).counts)).all()
