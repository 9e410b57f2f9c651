"""Reading a results folder (schema_version 1): the manifest, its cells, their interval logs and CSVs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import hlog
from analysis.histogram import Intervals

SCHEMA_VERSION = 1
INCOMPLETE_MARKER = "INCOMPLETE"
QUEUE_COLUMNS = ["t_s", "depth", "deferred", "scheduled", "started", "finished_total", "failed_total",
                 "completed_total", "campaigns_failed_total", "workers"]
ERROR_COLUMNS = ["t_s", "endpoint", "status", "count"]


class ResultsFolderError(Exception):
    """A folder analysis cannot read as it is; the message says what to do."""


class ForeignFolderError(ResultsFolderError):
    pass


class SchemaVersionError(ResultsFolderError):
    pass


class IncompleteRunError(ResultsFolderError):
    pass


def endpoint_key(name: str) -> str:
    """'POST /campaigns' and 'POST_campaigns' both -> 'POST_campaigns'; 'GET /campaigns/{id}' -> 'GET_campaigns_id'."""
    return "_".join(part for part in "".join(c if c.isalnum() else " " for c in str(name)).split())


def read_interval_log(path: Path) -> Intervals:
    """An `.hlog` as Intervals; an absent file reads as empty (a partial cell), a damaged one is an error."""
    if not path.is_file():
        return Intervals.empty()
    try:
        return hlog.read(path)
    except (hlog.IntervalLogError, UnicodeDecodeError) as exc:
        raise ResultsFolderError(f"{path}: not a readable HdrHistogram interval log ({exc})") from None


def read_queue_csv(path: Path) -> pd.DataFrame | None:
    """queue.csv as a frame (None when the cell has none, i.e. the inline design)."""
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    missing = [c for c in QUEUE_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsFolderError(f"{path}: missing column(s) {', '.join(missing)}; schema 1 has {', '.join(QUEUE_COLUMNS)}")
    return frame


def read_errors_csv(path: Path) -> pd.DataFrame:
    """errors.csv as a frame with normalised endpoint keys; empty when absent (no failures recorded)."""
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame({"t_s": [], "endpoint": [], "status": [], "count": []})
    frame = pd.read_csv(path)
    missing = [c for c in ERROR_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsFolderError(f"{path}: missing column(s) {', '.join(missing)}; schema 1 has {', '.join(ERROR_COLUMNS)}")
    frame["endpoint"] = frame["endpoint"].map(endpoint_key)
    frame["status"] = frame["status"].astype(int)
    frame["count"] = frame["count"].astype(int)
    return frame


@dataclass
class Cell:
    """One design × phase × repetition: its manifest entry and its folder, read lazily and once."""

    meta: dict[str, Any]
    dir: Path
    _logs: dict[str, Intervals] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def design(self) -> str:
        return str(self.meta.get("design", ""))

    @property
    def phase(self) -> str:
        return str(self.meta.get("phase", ""))

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", ""))

    @property
    def repetition(self) -> int:
        return int(self.meta.get("repetition") or 1)

    @property
    def offered_rate_per_s(self) -> float | None:
        rate = self.meta.get("offered_rate_per_s")
        return float(rate) if rate is not None else None

    def log(self, name: str) -> Intervals:
        """The interval log `<name>.hlog` (e.g. 'POST_campaigns', 'POST_campaigns.raw', 'completion')."""
        if name not in self._logs:
            self._logs[name] = read_interval_log(self.dir / f"{name}.hlog")
        return self._logs[name]

    def endpoints(self) -> list[str]:
        """Endpoints with a latency log or an error row, POST /campaigns first."""
        names = {p.name[: -len(".hlog")] for p in self.dir.glob("*.hlog")} if self.dir.is_dir() else set()
        found = {n for n in names if not n.endswith(".raw") and n not in ("send_lag", "completion")}
        found |= set(self.errors["endpoint"].unique())
        return sorted(found, key=lambda n: (n != "POST_campaigns", n))

    @cached_property
    def queue(self) -> pd.DataFrame | None:
        return read_queue_csv(self.dir / "queue.csv")

    @cached_property
    def errors(self) -> pd.DataFrame:
        return read_errors_csv(self.dir / "errors.csv")


@dataclass
class Run:
    """A results folder: its manifest and its cells in the order they ran."""

    dir: Path
    manifest: dict[str, Any]
    cells: list[Cell]
    incomplete_reason: str | None = None

    @property
    def id(self) -> str:
        return str(self.manifest.get("run_id") or self.dir.name)

    @property
    def designs(self) -> list[str]:
        declared = list((self.manifest.get("experiment") or {}).get("designs") or [])
        seen = [c.design for c in self.cells if c.design not in declared]
        return list(dict.fromkeys(declared + seen))

    @property
    def slo(self) -> dict[str, float]:
        return dict((self.manifest.get("experiment") or {}).get("slo") or {})

    def select(self, *, kind: str | None = None, design: str | None = None, phase: str | None = None) -> list[Cell]:
        return [c for c in self.cells if (kind is None or c.kind == kind) and (design is None or c.design == design)
                and (phase is None or c.phase == phase)]


def load_run(run_dir: Path | str, *, allow_incomplete: bool = False) -> Run:
    """Read a results folder; ResultsFolderError (with what to do) for a foreign, newer or incomplete one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ForeignFolderError(f"{run_dir}: no such folder; pass a run folder such as results/<run-id>")
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ForeignFolderError(f"{run_dir} is not an offpath results folder (no manifest.json); "
                                 "pass a folder written by `offpath bench`, such as results/<run-id>")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ForeignFolderError(f"{manifest_path}: not valid JSON ({exc}); the run may have been written by "
                                 "something else, or the file was damaged") from None
    if not isinstance(manifest, dict) or "schema_version" not in manifest:
        raise ForeignFolderError(f"{manifest_path} has no schema_version: not an offpath results folder")
    version = manifest["schema_version"]
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(f"{run_dir} uses results schema_version {version}; this offpath reads schema_version "
                                 f"{SCHEMA_VERSION}. Use the offpath version that wrote it, or re-run the experiment")
    reason = _incomplete_reason(run_dir, manifest)
    if reason is not None and not allow_incomplete:
        raise IncompleteRunError(f"run {run_dir.name} is incomplete: {reason}. The cells it finished are on disk; "
                                 "re-run `offpath bench`, or report what it measured with allow_incomplete "
                                 "(`offpath report --partial`)")
    cells = [Cell(meta=dict(meta), dir=run_dir / "cells" / str(meta["id"]))
             for meta in manifest.get("cells") or [] if isinstance(meta, dict) and "id" in meta]
    return Run(dir=run_dir, manifest=manifest, cells=cells, incomplete_reason=reason)


def _incomplete_reason(run_dir: Path, manifest: dict[str, Any]) -> str | None:
    marker = run_dir / INCOMPLETE_MARKER
    if marker.is_file():
        return marker.read_text().strip() or "marked INCOMPLETE"
    if manifest.get("status") != "complete":
        return str(manifest.get("error") or f"manifest status is {manifest.get('status')!r}")
    return None
