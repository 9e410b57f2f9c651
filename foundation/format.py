"""The results format: every name, column, range and JSON shape of a results folder, declared once.

`offpath bench` (the harness in offpath/, the recording plugin in loadtests/) writes `results/<run-id>/`;
analysis/ reads it back, and nothing else passes between them. Both sides import this module, and it imports
nothing of theirs: it is the bottom layer, stdlib only. results/README.md documents every file. manifest.json's
records (the run, its cells, a sweep's points and resumes) are in foundation/manifest_format.py, under this module's
version and history.

History of the format (`SCHEMA_VERSION`, in manifest.json; a reader refuses any other version):

- 1, 2026-11-29: manifest.json and the INCOMPLETE marker; per cell in cells/<cell-id>/: summary.json,
  `<endpoint>.hlog` and `<endpoint>.raw.hlog`, send_lag.hlog, completion.hlog, queue.csv, errors.csv,
  acks-<pid>.txt and Locust's own CSVs. Latencies in µs, HDR histograms of 1 µs .. 1 h, 3 significant digits.
- 1, 2026-11-30: completion.json added, the probe's census of the campaigns a cell accepted (accepted,
  completed, failed, pending); summary.json's `queue` takes accepted, failed and pending from it (null without
  one). No bump: readers of 1 ignore files they do not know, and cells written before it simply have none.
- 1, 2026-11-30: manifest.json's experiment gains `slo.completion_p99_ms` (absent: the request's `p99_ms`) and
  `layout.poll` (absent: "interval"); comparison.json gains rows of endpoint OUTCOME, whose `a_endpoint` and
  `b_endpoint` say which log each side's figure comes from. No bump: keys added, none changed.
- 1, 2026-11-30: sweeps. A sweep's manifest.json has `kind` "sweep", `experiment.sweep` (parameter -> values),
  `points` (per point: id, values, status, the experiment and profile it ran, and its own layout, placement and
  cells) and `resumes`; its top-level `cells` stay empty. Each point's cells are under points/<point-id>/cells/, laid
  out as a plain run's; analysis writes decision_map.json beside the report. `[capacity] step_factor` (a geometric
  search) may replace `step_per_s`. No bump: a plain run's folder is unchanged.
- 1, 2026-12-06: manifest.json written and read as typed records (foundation/manifest_format.py: RunRecord,
  CellRecord, PointRecord, ResumeRecord) instead of dicts built at each writer and read key by key. No bump: the
  files are unchanged, the same keys with the same values in the same order (each record's `to_dict()` gives the
  JSON the harness wrote before them; tests/test_manifest_records.py holds manifests written before the change).
- 1, 2026-12-06: verdicts that decide (#25). comparison.json's `verdict` is one of better, worse, equivalent,
  undecided (no more `~`); rows gain `confidence`, `margin_pct`, `need_factor`, `repetitions`, `phase_s` (and, on
  an undecided row, `need_more_repetitions`, `need_phase_s`, `need`). manifest.json (a sweep: each point's entry)
  gains `capacity_searches` (per design, manifest_format.CapacitySearchRecord: how its search ended) and
  `sequential` (manifest_format.SequentialRecord: the looks of a run that adds repetitions until its headline rows
  are decided), each only where there is one; its experiment may declare `margins`, `sequential` and more
  `capacity` keys (`precision_pct`, `refine_steps`, `ceiling_per_s`, `tail_values`). Capacity cells may be named
  with two decimals (`capacity-0008_19`). No bump: keys added, none changed; a reader of 1 that does not know the
  new verdict words shows them as they are.

- 2, 2026-12-06: designs are declared as data (any service, not only offpath's own): the logs are named by what they
  time, not by a path — `request.hlog` (was `POST_campaigns.hlog`), `status.hlog` (was `GET_campaigns_id.hlog`) —
  and cells gain the client's `outcome_seen.hlog` and `failed_seen.hlog`, and, from the service's timestamps,
  `queue_wait.hlog` and `run.hlog`; manifest.json's experiment gains `declarations` (design name -> its resolved
  declaration: tiers, request, outcome contract, queue adapter). Readers of 1 would look for logs that are gone.
- 2, 2026-12-06: commands.json per cell (CommandCounts): the Redis commands the design ran on the run's Redis from the
  cell's start through its drain, by kind, the harness's own subtracted; summary.json gains `commands`
  (CommandFigures: per campaign served, by kind). No bump: a file and a key added; cells written before have neither.
- 2, 2026-12-06: soaks (#26). A soak's manifest.json has `kind` "soak" and `experiment.soak` (its duration, where its
  rate comes from, how often it samples); its cells of kind "soak" gain `memory.csv` (MEMORY_COLUMNS: each process
  offpath started, its RSS, and the machine's available memory), `redis_memory.csv` (REDIS_MEMORY_COLUMNS: Redis's
  used memory and its database's keys) and `keys.json` (KeyCensus: the database's keys by pattern at the cell's end);
  analysis writes `soak.json` beside its report. No bump: files and keys added, none changed.

Bump SCHEMA_VERSION (and add a line above) when a reader of the previous version would misread a folder: a file,
key or column renamed or removed, a unit or the HDR range changed. Adding a file or a key is not a bump.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "ACKS_GLOB", "CELLS_DIR", "DECISION_MAP_FILE", "POINTS_DIR", "SWEEP_KIND",
    "CHAOS_FILE", "CHAOS_TABLE_FILE", "CONTRACT_MISMATCH_FILE", "COMPARISON_FILE", "COMPLETION", "COMPLETION_FILE",
    "COMMANDS_FILE", "CPU_COLUMNS", "CPU_FILE", "CREATE", "FAILED_SEEN", "OUTCOME_SEEN", "QUEUE_WAIT", "REQUEST", "RUN_TIME",
    "STATUS", "ENDPOINT_LABELS", "ERRORS_FILE", "ERROR_COLUMNS", "HIGHEST_US",
    "INCOMPLETE_MARKER", "LOGS_DIR", "LOG_SUFFIX", "LOWEST_US", "MANIFEST_FILE", "NON_ENDPOINT_LOGS", "OUTCOME",
    "PLOTS_DIR", "POLL", "QUEUE_COLUMNS", "QUEUE_FILE", "RAW_SUFFIX", "REPORT_HTML_FILE", "REPORT_MD_FILE", "SCHEMA_VERSION",
    "SEND_LAG", "SIGNIFICANT_DIGITS", "SUMMARY_FILE", "SUMMARY_PERCENTILES", "SYSTEM_TIERS", "TIERS",
    "BENCH_KIND", "CHAOS_KIND", "SOAK_KIND", "KEYS_FILE", "SOAK_FILE", "MACHINE_TIER", "MEMORY_COLUMNS", "MEMORY_FILE",
    "REDIS_MEMORY_COLUMNS", "REDIS_MEMORY_FILE", "KeyCensus", "KeyPattern", "CellSummary", "CommandCounts",
    "CommandFigures", "CompletionCensus", "CostFigures", "EndpointFigures", "LatencyFigures", "QueueFigures", "Slo",
    "acks_file", "cell_id", "endpoint_key", "label", "log_file", "raw_log", "record_from",
]

SCHEMA_VERSION = 2

# -- the run folder ----------------------------------------------------------------------------------------------
MANIFEST_FILE = "manifest.json"
# Present while a run is going and after one that failed or was interrupted; holds the reason.
INCOMPLETE_MARKER = "INCOMPLETE"
CELLS_DIR = "cells"  # cells/<cell-id>/, cell-id "<design>.<phase>.r<repetition>"
LOGS_DIR = "logs"  # logs/<block>/: stdout and stderr of every process
CHAOS_FILE = "chaos.json"  # `offpath chaos` runs: the audit of each fault
CHAOS_TABLE_FILE = "chaos.md"  # `offpath chaos` runs: the fault table as Markdown
# What ran, manifest.json's `kind`: `offpath bench` (a plain run, whose manifest has no `kind`), `offpath chaos`, or a
# sweep, which has points/<point-id>/ per point, laid out as a plain run's folder (cells/, logs/, and analysis'
# report, comparison and plots), its facts in the one manifest's `points`.
BENCH_KIND = "bench"
CHAOS_KIND = "chaos"
SWEEP_KIND = "sweep"
# A soak (`offpath bench soak`): each design's capacity search (unless the experiment declares its rates), then one cell
# of kind "soak" per design, a long steady load, with its memory sampled (MEMORY_FILE, REDIS_MEMORY_FILE, KEYS_FILE).
SOAK_KIND = "soak"
POINTS_DIR = "points"
# Written by analysis (`offpath report`) beside what was measured.
COMPARISON_FILE = "comparison.json"
DECISION_MAP_FILE = "decision_map.json"  # a sweep: the queued/inline ratios per point, their CIs and the crossovers
SOAK_FILE = "soak.json"  # a soak: per design, every slope with its interval, projection and flag, and the drift
REPORT_HTML_FILE = "report.html"
REPORT_MD_FILE = "report.md"
PLOTS_DIR = "plots"

# -- a cell's folder ---------------------------------------------------------------------------------------------
SUMMARY_FILE = "summary.json"  # CellSummary
COMPLETION_FILE = "completion.json"  # CompletionCensus
QUEUE_FILE = "queue.csv"  # QUEUE_COLUMNS, one row a second
ERRORS_FILE = "errors.csv"  # ERROR_COLUMNS
CPU_FILE = "cpu.csv"  # CPU_COLUMNS, one row a second: CPU seconds used since the cell's start, by tier
COMMANDS_FILE = "commands.json"  # CommandCounts: the design's Redis commands through the cell, by kind
MEMORY_FILE = "memory.csv"  # a soak's cells: MEMORY_COLUMNS, one row per process per sample
REDIS_MEMORY_FILE = "redis_memory.csv"  # a soak's cells: REDIS_MEMORY_COLUMNS, one row per sample
KEYS_FILE = "keys.json"  # a soak's cells: KeyCensus, the database's keys by pattern at the cell's end
ACKS_GLOB = "acks-*.txt"  # acks-<pid>.txt: ids of the requests each Locust process saw acknowledged or finished
# Written by a Locust process whose service answered outside its contract: the one line saying how (the run stops).
CONTRACT_MISMATCH_FILE = "contract_mismatch.txt"


def acks_file(pid: int) -> str:
    return f"acks-{pid}.txt"
LOG_SUFFIX = ".hlog"  # HdrHistogram interval logs, one 1-second interval a line
RAW_SUFFIX = ".raw"  # `<endpoint>.raw.hlog`: timed from the actual send (no coordinated-omission correction)

QUEUE_COLUMNS: tuple[str, ...] = ("t_s", "depth", "deferred", "scheduled", "started", "finished_total", "failed_total",
                                  "completed_total", "campaigns_failed_total", "workers")
ERROR_COLUMNS: tuple[str, ...] = ("t_s", "endpoint", "status", "count")  # status 0: no HTTP answer

# -- HDR histograms: every latency in microseconds ----------------------------------------------------------------
LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # 1 h
SIGNIFICANT_DIGITS = 3
SUMMARY_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)  # the p50_us .. p999_us of LatencyFigures

# -- interval logs: `<key>.hlog` ----------------------------------------------------------------------------------
# The logs are named by what they time, not by the design's path: every design's request is `request`, whatever its
# method and path (the manifest's design declarations say them; reports label rows with them).
REQUEST = "request"  # the design's request (a campaign's POST /campaigns for offpath's own designs)
STATUS = "status"  # GETs of an acknowledged request's state, when the load follows it
OUTCOME_SEEN = "outcome_seen"  # the client: intended send -> first observation of the final state `done`
FAILED_SEEN = "failed_seen"  # the same for the final state `failed`
COMPLETION = "completion"  # the service's own clock: accepted -> completed (the probe's census, or the final answer)
QUEUE_WAIT = "queue_wait"  # the service's own clock: accepted -> started
RUN_TIME = "run"  # the service's own clock: started -> completed
SEND_LAG = "send_lag"  # open model: actual minus intended send time of every request
# Not a log: comparison.json's rows that set what each side's owner waits for against the other's: the completion of a
# design with queue data (its request only acknowledges), else what its client saw of the outcome, else the answer.
OUTCOME = "outcome"
# Until every reader says REQUEST and STATUS (the names before the format's version 2).
CREATE = REQUEST
POLL = STATUS
ENDPOINT_LABELS: Mapping[str, str] = {REQUEST: "request", STATUS: "status", OUTCOME_SEEN: "outcome seen",
                                      FAILED_SEEN: "failure seen", COMPLETION: "completion", QUEUE_WAIT: "queue wait",
                                      RUN_TIME: "run time", SEND_LAG: "send lag", OUTCOME: "outcome"}
# Logs that time something other than responses to requests.
NON_ENDPOINT_LOGS = frozenset({OUTCOME_SEEN, FAILED_SEEN, COMPLETION, QUEUE_WAIT, RUN_TIME, SEND_LAG})


def endpoint_key(*parts: str) -> str:
    """The file-name key of a request: ('POST', '/campaigns'), 'POST /campaigns' and 'POST_campaigns' all give
    'POST_campaigns'; 'GET /campaigns/{id}' gives 'GET_campaigns_id'."""
    text = " ".join(str(part) for part in parts)
    return "_".join("".join(c if c.isalnum() else " " for c in text).split())


def label(key: str) -> str:
    """How reports name a log: 'request' -> 'request'; an unknown key as it is."""
    return ENDPOINT_LABELS.get(key, key)


def raw_log(key: str) -> str:
    """'request' -> 'request.raw', the log of the same requests timed from their actual send."""
    return key + RAW_SUFFIX


def log_file(name: str) -> str:
    """'request.raw' -> 'request.raw.hlog'."""
    return name + LOG_SUFFIX


def cell_id(design: str, phase: str, repetition: int) -> str:
    return f"{design}.{phase}.r{repetition}"


_Record = TypeVar("_Record", bound="DataclassInstance")

# -- summary.json --------------------------------------------------------------------------------------------------
# Each record's fields are its JSON keys, in the order written; `to_dict` gives exactly the JSON, `from_dict` reads
# it back (a key the reader does not know is ignored, one it misses takes its default).


def record_from(cls: type[_Record], data: Mapping[str, Any], **nested: Any) -> _Record:
    known = {f.name: data[f.name] for f in fields(cls) if f.name in data and f.name not in nested}
    return cls(**known, **nested)


@dataclass(frozen=True)
class LatencyFigures:
    """One merged histogram: how many values, and its percentiles, max and mean in µs (None when empty)."""

    count: int = 0
    p50_us: int | None = None
    p90_us: int | None = None
    p99_us: int | None = None
    p999_us: int | None = None
    max_us: int | None = None
    mean_us: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyFigures:
        return record_from(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EndpointFigures:
    """One endpoint of a cell: successes (`count`, latencies from the CO-corrected log), failures by status,
    successes per second over the log's own span, and the same requests timed from their actual send (`raw`,
    absent from the JSON when the cell has no raw log)."""

    count: int = 0
    errors: int = 0
    error_rate: float = 0.0
    errors_by_status: Mapping[str, int] = field(default_factory=dict)
    throughput_per_s: float = 0.0
    intervals: int = 0
    p50_us: int | None = None
    p90_us: int | None = None
    p99_us: int | None = None
    p999_us: int | None = None
    max_us: int | None = None
    mean_us: float | None = None
    raw: LatencyFigures | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndpointFigures:
        raw = data.get("raw")
        return record_from(cls, data, raw=LatencyFigures.from_dict(raw) if raw is not None else None)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "raw"}
        out["errors_by_status"] = dict(self.errors_by_status)
        if self.raw is not None:
            out["raw"] = self.raw.to_dict()
        return out


# Backlog figures that exist only when the probe took samples (absent from the JSON of a cell without any).
_SAMPLED_ONLY = frozenset({"backlog_end", "backlog_max", "backlog_after_drain", "backlog_slope_se_per_s",
                           "campaigns_failed"})


@dataclass(frozen=True)
class QueueFigures:
    """Completion latency and backlog health of a cell whose design queues its work (one with a queue.csv).

    `accepted`, `failed`, `pending` come from completion.json (None without one; `census_error` says why when it
    could not be read): completion.count + failed + pending = accepted. Backlog = depth + deferred + scheduled;
    `depth_*` cover the depth column only, while load was offered. `sustainable` is None when too short to tell.
    """

    completion: LatencyFigures = field(default_factory=LatencyFigures)
    accepted: int | None = None
    failed: int | None = None
    pending: int | None = None
    census_error: str | None = None  # absent from the JSON unless the census could not be read
    depth_start: int | None = None
    depth_end: int | None = None
    depth_max: int | None = None
    backlog_end: int | None = None
    backlog_max: int | None = None
    backlog_after_drain: int | None = None
    backlog_slope_per_s: float | None = None
    backlog_slope_se_per_s: float | None = None
    drain_rate_per_s: float | None = None
    campaigns_failed: int | None = None
    sustainable: bool | None = None
    samples: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueueFigures:
        return record_from(cls, data, completion=LatencyFigures.from_dict(data.get("completion") or {}))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if (f.name == "census_error" and self.census_error is None) or (f.name in _SAMPLED_ONLY and not self.samples):
                continue
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, LatencyFigures) else value
        return out


@dataclass(frozen=True)
class CostFigures:
    """What serving a cell's campaigns cost in CPU, from its cpu.csv (analysis/stats/cost.py computes it).

    `campaigns`: those the cell served to their outcome, never mere acceptances — for a design without queue data
    its successful creates (`campaigns_source` "create"), for one with queue data the campaigns completed
    ("census": completion.json's `completed`; "completion_log": completion.hlog's count, for a cell without a
    census). `cpu_s` per tier (TIERS) over the whole of cpu.csv (a queued design's drain included);
    `cpu_ms_per_campaign` per tier (the load generator's shown, never charged), `total_cpu_ms_per_campaign` and
    `campaigns_per_cpu_s` over SYSTEM_TIERS (None without campaigns, resp. without CPU). The machine check:
    `unaccounted_share` = (machine − tiers − others) / machine, `accounting_gap` when it exceeds analysis'
    tolerance (10%) either way; `others_share` = others / machine, CPU spent beside the tiers (the harness,
    anything else running).
    """

    campaigns: int = 0
    campaigns_source: str = ""  # "create" | "census" | "completion_log"
    wall_s: float = 0.0  # the last row's t_s: how long the CPU was counted
    samples: int = 0  # rows of cpu.csv
    cpu_s: Mapping[str, float] = field(default_factory=dict)  # by tier, TIERS order
    system_cpu_s: float = 0.0  # sum over SYSTEM_TIERS
    cpu_ms_per_campaign: Mapping[str, float | None] = field(default_factory=dict)  # by tier
    total_cpu_ms_per_campaign: float | None = None  # SYSTEM_TIERS
    campaigns_per_cpu_s: float | None = None  # SYSTEM_TIERS
    machine_cpu_s: float = 0.0
    others_cpu_s: float = 0.0
    others_share: float | None = None
    unaccounted_share: float | None = None
    accounting_gap: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostFigures:
        return record_from(cls, data, cpu_s=dict(data.get("cpu_s") or {}),
                     cpu_ms_per_campaign=dict(data.get("cpu_ms_per_campaign") or {}))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cpu_s"], out["cpu_ms_per_campaign"] = dict(self.cpu_s), dict(self.cpu_ms_per_campaign)
        return out


@dataclass(frozen=True)
class CommandFigures:
    """The Redis commands a cell's design ran per campaign (analysis/stats/commands.py computes it from commands.json):
    `commands` over `campaigns`, the campaigns served counted as CostFigures counts them (`campaigns_source`), in all
    and by kind (most frequent first); the harness's own commands, subtracted, beside them. `unmeasured` (and no
    figures) when the design's commands are not on the run's Redis, or could not be read; absent from the JSON
    otherwise."""

    campaigns: int = 0
    campaigns_source: str = ""
    commands: int | None = None
    per_campaign: float | None = None  # None without campaigns, or unmeasured
    by_kind_per_campaign: Mapping[str, float] = field(default_factory=dict)
    harness_commands: int | None = None
    unmeasured: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommandFigures:
        return record_from(cls, data, by_kind_per_campaign=dict(data.get("by_kind_per_campaign") or {}))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["by_kind_per_campaign"] = dict(self.by_kind_per_campaign)
        if self.unmeasured is None:
            del out["unmeasured"]
        return out


@dataclass(frozen=True)
class CellSummary:
    """summary.json: one cell's figures, computed from the files beside it (analysis/stats/summary.py)."""

    cell: str
    design: str = ""
    phase: str = ""
    kind: str = ""
    repetition: int = 1
    model: str | None = None  # "open" | "closed"
    offered_rate_per_s: float | None = None
    duration_s: float = 0.0
    status: str | None = None
    endpoints: Mapping[str, EndpointFigures] = field(default_factory=dict)  # by endpoint key, CREATE first
    send_lag: LatencyFigures | None = None  # None in the closed model: requests have no intended send time
    driver_bottleneck: bool = False
    queue: QueueFigures | None = None  # None for a design that does not queue its work
    cost: CostFigures | None = None  # None for a cell without a cpu.csv (written before cost accounting)
    commands: CommandFigures | None = None  # None for a cell without a commands.json (written before counting)

    def endpoint(self, key: str) -> EndpointFigures:
        """The figures of `key` (e.g. CREATE); an endpoint the cell recorded nothing for reads as no requests."""
        return self.endpoints.get(key) or EndpointFigures()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellSummary:
        lag, queue, cost, commands = data.get("send_lag"), data.get("queue"), data.get("cost"), data.get("commands")
        return record_from(cls, data,
                     endpoints={k: EndpointFigures.from_dict(v) for k, v in (data.get("endpoints") or {}).items()},
                     send_lag=LatencyFigures.from_dict(lag) if lag is not None else None,
                     queue=QueueFigures.from_dict(queue) if queue is not None else None,
                     cost=CostFigures.from_dict(cost) if cost is not None else None,
                     commands=CommandFigures.from_dict(commands) if commands is not None else None)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["endpoints"] = {k: v.to_dict() for k, v in self.endpoints.items()}
        out["send_lag"] = self.send_lag.to_dict() if self.send_lag is not None else None
        out["queue"] = self.queue.to_dict() if self.queue is not None else None
        out["cost"] = self.cost.to_dict() if self.cost is not None else None
        out["commands"] = self.commands.to_dict() if self.commands is not None else None
        return out


# -- cpu.csv ----------------------------------------------------------------------------------------------------
# Where each tier's CPU goes (offpath/placement.py names the tiers): services ("web"), Redis, the RQ workers and the
# load generator, then the whole machine (/proc/stat) and every process outside the tiers ("others"). Values are
# cumulative CPU seconds since the cell's start (the first row, t_s = 0, is all zeros), sampled once a second
# while load is offered and, for a queued design, through the drain; the last row is the cell's end.
TIERS = ("web", "redis", "workers", "load")
SYSTEM_TIERS = ("web", "redis", "workers")  # what serving a campaign costs; the load generator is the client's
CPU_COLUMNS = ["t_s", *TIERS, "machine", "others"]


# -- memory.csv, redis_memory.csv and keys.json (a soak's cells) -------------------------------------------------------
# memory.csv: at each sample (`t_s`, seconds since the cell's start), one row per living process offpath started for
# the block — `tier` (TIERS), `process` (the supervisor's name of the process it descends from, e.g. "worker-3", then
# ">" and the command name for a descendant: "redis-server>redis-rdb-bgsave"), `pid`, `rss_bytes` (resident set,
# /proc/<pid>/statm) — and one row of tier MACHINE_TIER, process "available", pid 0: the memory the machine had left
# (/proc/meminfo MemAvailable) in `rss_bytes`.
MACHINE_TIER = "machine"
MEMORY_COLUMNS: tuple[str, ...] = ("t_s", "tier", "process", "pid", "rss_bytes")
# redis_memory.csv: Redis's own figures at each sample: INFO memory's used_memory (what its data and buffers take,
# whichever database holds them) and used_memory_rss (what the machine gives it), and the cell's database's keys and
# keys with a TTL (INFO keyspace).
REDIS_MEMORY_COLUMNS: tuple[str, ...] = ("t_s", "used_memory_bytes", "used_memory_rss_bytes", "keys", "expiring_keys")


@dataclass(frozen=True)
class KeyPattern:
    """Keys whose names differ only in ids (runs of hex digits, numbers: `offpath:campaign:{id}`), at one instant:
    how many, how many have a TTL and its range in seconds, and the mean MEMORY USAGE of up to `sampled` of them."""

    pattern: str
    count: int = 0
    with_ttl: int = 0
    ttl_min_s: float | None = None
    ttl_max_s: float | None = None
    sampled: int = 0
    mean_bytes: float | None = None
    type: str = ""  # Redis's TYPE of the first key sampled

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeyPattern:
        return record_from(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KeyCensus:
    """keys.json: every key of the cell's database at `at` (epoch seconds, after the drain), by pattern, most first;
    `error` instead when Redis did not answer."""

    at: float | None = None
    keys: int = 0
    patterns: tuple[KeyPattern, ...] = ()
    error: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeyCensus:
        return record_from(cls, data, patterns=tuple(KeyPattern.from_dict(p) for p in data.get("patterns") or ()))

    def to_dict(self) -> dict[str, Any]:
        out = {"at": self.at, "keys": self.keys, "patterns": [p.to_dict() for p in self.patterns]}
        return out | ({"error": self.error} if self.error is not None else {})


# -- completion.json -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletionCensus:
    """completion.json: the campaigns accepted in [started_at, stopped_at) and where each stood at stopped_at
    (accepted = completed + failed + pending); when Redis did not answer the census, `error` instead of counts."""

    started_at: float | None = None
    stopped_at: float | None = None
    accepted: int | None = None
    completed: int | None = None
    failed: int | None = None
    pending: int | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompletionCensus:
        return record_from(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# -- commands.json -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandCounts:
    """commands.json: the Redis commands the run's Redis executed in [started_at, stopped_at) — the cell and, for a
    design with a queue, its drain — by kind as INFO commandstats names them (a container command's subcommands under
    the container: `client`, `config`), most frequent first, less the harness's own (its probe, its census, the INFO
    reads around the cell), which `harness_commands` and `harness_by_kind` keep. `processed`: INFO's
    total_commands_processed over the same span, everyone's (commands + harness_commands, as a check).

    `unmeasured` instead of counts when the design's commands are not on the run's Redis (a deployment already
    running, a broker of its own); `error` when Redis did not answer the INFO at either end."""

    started_at: float | None = None
    stopped_at: float | None = None
    commands: int | None = None
    by_kind: Mapping[str, int] = field(default_factory=dict)
    harness_commands: int | None = None
    harness_by_kind: Mapping[str, int] = field(default_factory=dict)
    processed: int | None = None
    unmeasured: str | None = None
    error: str | None = None

    @property
    def measured(self) -> bool:
        return self.commands is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommandCounts:
        return record_from(cls, data, by_kind=dict(data.get("by_kind") or {}),
                           harness_by_kind=dict(data.get("harness_by_kind") or {}))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["by_kind"], out["harness_by_kind"] = dict(self.by_kind), dict(self.harness_by_kind)
        return {k: v for k, v in out.items() if v is not None and (self.measured or k not in ("by_kind",
                                                                                            "harness_by_kind"))}


# -- the SLO an experiment declares (manifest.json's experiment.slo; foundation/manifest_format.py reads it) -----------


@dataclass(frozen=True)
class Slo:
    p99_ms: float  # POST /campaigns P99
    error_rate: float  # a fraction
    # A design with queue data: the P99 of accepted -> completed. None in manifests written before it existed, and
    # then the request's, as an experiment that does not declare one gets.
    completion_p99_ms: float | None = None

    @property
    def completion_ms(self) -> float:
        return self.p99_ms if self.completion_p99_ms is None else self.completion_p99_ms

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)
