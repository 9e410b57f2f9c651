"""Reading a results folder (foundation/format.py, results/README.md): the manifest, its cells, their interval logs
and CSVs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.stats import hlog_reader as hlog
from analysis.stats.histogram import Intervals
from foundation.errors import ConfigurationError
from foundation.experiment_facts import DesignFacts
from foundation.format import (
    CELLS_DIR,
    COMMANDS_FILE,
    COMPLETION,
    COMPLETION_FILE,
    CPU_COLUMNS,
    CPU_FILE,
    CREATE,
    ERROR_COLUMNS,
    ERRORS_FILE,
    FAILED_SEEN,
    INCOMPLETE_MARKER,
    KEYS_FILE,
    LOG_SUFFIX,
    MANIFEST_FILE,
    MEMORY_COLUMNS,
    MEMORY_FILE,
    NON_ENDPOINT_LOGS,
    OUTCOME_SEEN,
    POLL,
    QUEUE_COLUMNS,
    QUEUE_FILE,
    RAW_SUFFIX,
    REDIS_MEMORY_COLUMNS,
    REDIS_MEMORY_FILE,
    SCHEMA_VERSION,
    CommandCounts,
    CompletionCensus,
    KeyCensus,
    endpoint_key,
    log_file,
)
from foundation.manifest_format import CellRecord, RunRecord, schema_version_of


class ResultsFolderError(ConfigurationError):
    """A folder analysis cannot read as it is; the message says what to do."""


class ForeignFolderError(ResultsFolderError):
    pass


class SchemaVersionError(ResultsFolderError):
    pass


class IncompleteRunError(ResultsFolderError):
    pass


def read_interval_log(path: Path) -> Intervals:
    """An `.hlog` as Intervals; an absent file reads as empty (a partial cell), a damaged one is an error."""
    if not path.is_file():
        return Intervals.empty()
    try:
        return hlog.read(path)
    except (hlog.IntervalLogError, UnicodeDecodeError) as exc:
        raise ResultsFolderError(f"{path}: not a readable HdrHistogram interval log ({exc})") from None


def read_queue_csv(path: Path) -> pd.DataFrame | None:
    """queue.csv as a frame (None when the cell has none: its design does not queue its work)."""
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    missing = [c for c in QUEUE_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsFolderError(f"{path}: missing column(s) {', '.join(missing)}; schema {SCHEMA_VERSION} has "
                                 f"{', '.join(QUEUE_COLUMNS)}")
    return frame


def read_cpu_csv(path: Path) -> pd.DataFrame | None:
    """cpu.csv as a frame of cumulative CPU seconds (None when the cell has none: written before cost accounting)."""
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    missing = [c for c in CPU_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsFolderError(f"{path}: missing column(s) {', '.join(missing)}; schema {SCHEMA_VERSION} has "
                                 f"{', '.join(CPU_COLUMNS)}")
    return frame.astype({column: float for column in CPU_COLUMNS})


def _read_columns(path: Path, columns: tuple[str, ...]) -> pd.DataFrame | None:
    """A CSV of the format with `columns` (None when the cell has none); a missing column is an error."""
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ResultsFolderError(f"{path}: missing column(s) {', '.join(missing)}; schema {SCHEMA_VERSION} has "
                                 f"{', '.join(columns)}")
    return frame


def read_memory_csv(path: Path) -> pd.DataFrame | None:
    """memory.csv of a soak's cell: a row per process per sample (None for a cell without one)."""
    return _read_columns(path, MEMORY_COLUMNS)


def read_redis_memory_csv(path: Path) -> pd.DataFrame | None:
    """redis_memory.csv of a soak's cell: Redis's memory and keys per sample (None for a cell without one)."""
    return _read_columns(path, REDIS_MEMORY_COLUMNS)


def read_key_census(path: Path) -> KeyCensus | None:
    """keys.json of a soak's cell (None for a cell without one); `error` says why when it cannot be read."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return KeyCensus(error=f"{path.name} is not valid JSON")
    return KeyCensus.from_dict(data) if isinstance(data, dict) else KeyCensus(error=f"{path.name} holds no object")


def read_errors_csv(path: Path) -> pd.DataFrame:
    """errors.csv as a frame with normalised endpoint keys; empty when absent (no failures recorded)."""
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame({column: [] for column in ERROR_COLUMNS})
    frame = pd.read_csv(path)
    missing = [c for c in ERROR_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsFolderError(f"{path}: missing column(s) {', '.join(missing)}; schema {SCHEMA_VERSION} has "
                                 f"{', '.join(ERROR_COLUMNS)}")
    frame["endpoint"] = frame["endpoint"].map(endpoint_key)
    frame["status"] = frame["status"].astype(int)
    frame["count"] = frame["count"].astype(int)
    return frame


@dataclass
class Cell:
    """One design × phase × repetition: its manifest entry and its folder, read lazily and once, and what analysis
    reads of its design's declaration (None in a run written before designs were declared as data)."""

    record: CellRecord
    dir: Path
    facts: DesignFacts | None = None
    _logs: dict[str, Intervals] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def design(self) -> str:
        return self.record.design

    @property
    def phase(self) -> str:
        return self.record.phase

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def repetition(self) -> int:
        return self.record.repetition

    @property
    def offered_rate_per_s(self) -> float | None:
        return self.record.offered_rate_per_s

    @property
    def duration_s(self) -> float:
        """How long load was offered (the phase's duration; queue.csv goes on through the drain after it)."""
        return self.record.duration_s

    def log(self, name: str) -> Intervals:
        """The interval log `<name>.hlog` (e.g. CREATE, raw_log(CREATE), COMPLETION)."""
        if name not in self._logs:
            self._logs[name] = read_interval_log(self.dir / log_file(name))
        return self._logs[name]

    def endpoints(self) -> list[str]:
        """Endpoints with a latency log or an error row, CREATE first."""
        suffix = len(LOG_SUFFIX)
        names = {p.name[:-suffix] for p in self.dir.glob(f"*{LOG_SUFFIX}")} if self.dir.is_dir() else set()
        found = {n for n in names if not n.endswith(RAW_SUFFIX) and n not in NON_ENDPOINT_LOGS}
        found |= set(self.errors["endpoint"].unique())
        return sorted(found, key=lambda n: (n != CREATE, n))

    @cached_property
    def queue(self) -> pd.DataFrame | None:
        """queue.csv; for a design that acknowledges without a queue adapter, the backlog its clients saw (what they
        saw acknowledged minus what they saw final, `queue_source` "client"); None for a cell whose design does not
        queue its work."""
        found = read_queue_csv(self.dir / QUEUE_FILE)
        if found is not None or self.facts is None or not self.facts.acknowledges:
            return found
        return client_backlog(self.log(CREATE), self.log(OUTCOME_SEEN), self.log(FAILED_SEEN))

    @property
    def queue_source(self) -> str | None:
        """Where the cell's backlog figures come from: "adapter" (queue.csv, its queue adapter), "client" (its
        clients' acknowledgements and the finals they saw), None (no backlog)."""
        if (self.dir / QUEUE_FILE).is_file():
            return "adapter"
        return "client" if self.queue is not None else None

    @property
    def completion_log(self) -> str:
        """The log of the outcome's latency: the service's own accepted → completed where it exists (a census, or the
        timestamps in its final answers), else what its clients saw (intended send → the final state seen)."""
        path = self.dir / log_file(COMPLETION)
        if path.is_file() and self.log(COMPLETION).total_count:
            return COMPLETION
        if self.facts is not None and self.facts.acknowledges and self.log(OUTCOME_SEEN).total_count:
            return OUTCOME_SEEN
        return COMPLETION

    @cached_property
    def cpu(self) -> pd.DataFrame | None:
        """cpu.csv: CPU seconds per tier since the cell's start, one row a second; None for a cell without one."""
        return read_cpu_csv(self.dir / CPU_FILE)

    @cached_property
    def errors(self) -> pd.DataFrame:
        return read_errors_csv(self.dir / ERRORS_FILE)

    @cached_property
    def memory(self) -> pd.DataFrame | None:
        """memory.csv (a soak's cell): each process's resident memory and the machine's available, per sample."""
        return read_memory_csv(self.dir / MEMORY_FILE)

    @cached_property
    def redis_memory(self) -> pd.DataFrame | None:
        """redis_memory.csv (a soak's cell): Redis's used memory and the database's keys, per sample."""
        return read_redis_memory_csv(self.dir / REDIS_MEMORY_FILE)

    def keys(self) -> KeyCensus | None:
        """keys.json (a soak's cell): the database's keys by pattern once the cell drained."""
        return read_key_census(self.dir / KEYS_FILE)

    @property
    def completion(self) -> Intervals:
        return self.log(self.completion_log)

    def census(self) -> CompletionCensus | None:
        """The probe's census of the cell's campaigns (completion.json), read afresh; None for a cell without one
        (its design does not queue, or it was written before the census existed); `error` says why when the file
        cannot be read."""
        path = self.dir / COMPLETION_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return CompletionCensus(error=f"{path.name} is not valid JSON")
        if not isinstance(data, dict):
            return CompletionCensus(error=f"{path.name} holds no object")
        return CompletionCensus.from_dict(data)

    def commands(self) -> CommandCounts | None:
        """The Redis commands its design ran through the cell (commands.json); None for a cell without one (written
        before commands were counted); `error` says why when the file cannot be read."""
        path = self.dir / COMMANDS_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return CommandCounts(error=f"{path.name} is not valid JSON")
        if not isinstance(data, dict):
            return CommandCounts(error=f"{path.name} holds no object")
        return CommandCounts.from_dict(data)


@dataclass
class Run:
    """A results folder: its manifest and its cells in the order they ran."""

    dir: Path
    record: RunRecord
    cells: list[Cell]
    incomplete_reason: str | None = None

    @property
    def id(self) -> str:
        return self.record.run_id or self.dir.name

    @property
    def designs(self) -> list[str]:
        """The designs the experiment declares, in its order, then any other that has cells, in the order they ran."""
        declared = list(self.record.experiment.designs)
        seen = [c.design for c in self.cells if c.design not in declared]
        return list(dict.fromkeys(declared + seen))

    @property
    def baseline(self) -> str | None:
        """Design A of a comparison inside the run: the first design (None in a run without any)."""
        return self.designs[0] if self.designs else None

    @property
    def candidate(self) -> str | None:
        """Design B, compared against the baseline: the second design (None in a run of one design)."""
        return self.designs[1] if len(self.designs) > 1 else None

    @property
    def slo(self) -> dict[str, float]:
        """The SLO as the manifest declares it (a manifest older than the completion SLO has no completion_p99_ms)."""
        slo = self.record.experiment.slo
        return {k: v for k, v in slo.to_dict().items() if v is not None} if slo is not None else {}

    @property
    def names(self) -> dict[str, str]:
        """How reports name the logs of this run's requests: the designs' own method and path ('POST /orders'), where
        every design declares the same (else the logs' own names: 'request', 'status')."""
        found: dict[str, str] = {}
        declared = self.record.experiment.declarations.values()
        for key, of in ((CREATE, lambda d: d.request), (POLL, lambda d: d.status)):
            said = {of(d) for d in declared if of(d) not in ("request", "status")}
            if len(said) == 1:
                found[key] = said.pop()
        return found

    def select(self, *, kind: str | None = None, design: str | None = None, phase: str | None = None) -> list[Cell]:
        return [c for c in self.cells if (kind is None or c.kind == kind) and (design is None or c.design == design)
                and (phase is None or c.phase == phase)]


def load_run(run_dir: Path | str, *, allow_incomplete: bool = False) -> Run:
    """Read a results folder; ResultsFolderError (with what to do) for a foreign, newer or incomplete one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ForeignFolderError(f"{run_dir}: no such folder; pass a run folder such as results/<run-id>")
    manifest_path = run_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ForeignFolderError(f"{run_dir} is not an offpath results folder (no manifest.json); "
                                 "pass a folder written by `offpath bench`, such as results/<run-id>")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ForeignFolderError(f"{manifest_path}: not valid JSON ({exc}); the run may have been written by "
                                 "something else, or the file was damaged") from None
    version = schema_version_of(manifest)
    if version is None:
        raise ForeignFolderError(f"{manifest_path} has no schema_version: not an offpath results folder")
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(f"{run_dir} uses results schema_version {version}; this offpath reads schema_version "
                                 f"{SCHEMA_VERSION}. Use the offpath version that wrote it, or re-run the experiment")
    try:
        record = RunRecord.from_dict(manifest)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ForeignFolderError(f"{manifest_path}: not a manifest offpath wrote ({type(exc).__name__}: {exc}); the "
                                 "file was damaged, or written by something else") from None
    reason = _incomplete_reason(run_dir, record)
    if reason is not None and not allow_incomplete:
        raise IncompleteRunError(f"run {run_dir.name} is incomplete: {reason}. The cells it finished are on disk; "
                                 "re-run `offpath bench`, or report what it measured with allow_incomplete "
                                 "(`offpath report --partial`)")
    return Run(dir=run_dir, record=record, cells=cells_of(record.cells, run_dir, record.experiment.declarations),
               incomplete_reason=reason)


def cells_of(records: tuple[CellRecord, ...], run_dir: Path,
             declarations: Mapping[str, DesignFacts] | None = None) -> list[Cell]:
    """The cells of a run folder (a plain run's, or a sweep point's: points/<point-id>/), in the order they ran."""
    found = declarations or {}
    return [Cell(record=record, dir=run_dir / CELLS_DIR / record.id, facts=found.get(record.design))
            for record in records]


def client_backlog(acknowledged: Intervals, done: Intervals, failed: Intervals) -> pd.DataFrame | None:
    """A queue.csv built from what the clients saw, second by second: the backlog is the requests acknowledged so far
    minus those seen final (done or failed). It lags the service by the clients' polling interval, and a request not
    followed (polling off) never reads as final: None without any final seen."""
    if not acknowledged.n_intervals or not (done.total_count + failed.total_count):
        return None
    n = acknowledged.n_intervals

    def per_interval(log: Intervals) -> np.ndarray:
        counts = log.interval_counts() if log.n_intervals else np.zeros(0, dtype=np.int64)
        return np.pad(counts, (0, max(0, n - len(counts))))[:n]

    acked, finished, gave_up = (np.cumsum(per_interval(log)) for log in (acknowledged, done, failed))
    t_s = acknowledged.start_s - acknowledged.start_s[0] + acknowledged.length_s
    frame = pd.DataFrame({"t_s": t_s, "depth": acked - finished - gave_up, "deferred": 0, "scheduled": 0, "started": 0,
                          "finished_total": finished + gave_up, "failed_total": gave_up, "completed_total": finished,
                          "campaigns_failed_total": gave_up, "workers": np.nan})
    return frame[list(QUEUE_COLUMNS)]


def _incomplete_reason(run_dir: Path, record: RunRecord) -> str | None:
    marker = run_dir / INCOMPLETE_MARKER
    if marker.is_file():
        return marker.read_text().strip() or "marked INCOMPLETE"
    if record.status != "complete":
        return str(record.error or f"manifest status is {record.status!r}")
    return None
