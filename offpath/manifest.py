"""The run manifest: what ran, where, with what — a RunRecord (foundation/manifest_format.py) kept current as blocks
start and cells end, and saved atomically after every change."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
import subprocess
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

from foundation.format import INCOMPLETE_MARKER, MANIFEST_FILE, SCHEMA_VERSION
from foundation.manifest_format import (
    CapacitySearchRecord,
    CellRecord,
    GitFacts,
    LookRecord,
    MachineFacts,
    PointRecord,
    ProcessFacts,
    ResumeRecord,
    RunRecord,
    TierGrant,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_PACKAGES = {"offpath": "offpath", "locust": "locust", "rq": "rq", "redis_py": "redis", "fastapi": "fastapi",
             "uvicorn": "uvicorn", "hdrhistogram": "hdrhistogram", "pydantic": "pydantic", "gevent": "gevent"}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def git_facts() -> GitFacts:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        return GitFacts(sha=git("rev-parse", "HEAD"), dirty=bool(git("status", "--porcelain", "--untracked-files=no")))
    except (OSError, subprocess.SubprocessError):
        return GitFacts(sha="unknown", dirty=None)


def versions(redis_server: str) -> dict[str, str]:
    found = {"python": platform.python_version(), "redis_server": redis_server}
    for key, dist in _PACKAGES.items():
        try:
            found[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[key] = "not installed"
    return found


def machine() -> MachineFacts:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return MachineFacts(
        cpu_count=os.cpu_count(),
        cpus_available=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        cpu_model=model,
        platform=platform.platform(),
        hostname=socket.gethostname(),
        memory_gib=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    )


class Manifest:
    """The run's record as it goes, and its manifest.json: every change below is saved at once, so that a run that
    dies leaves a manifest as current as its last change. `point` names the sweep point a block or cell belongs to
    (None: the run's own, a plain run's)."""

    def __init__(self, run_dir: Path, record: RunRecord, *, fresh: bool = True):
        self.run_dir = run_dir
        self.record = replace(record, schema_version=SCHEMA_VERSION, status="incomplete", error=None, layout={},
                              cells=()) if fresh else record
        self.mark_incomplete("running")
        self.save()

    @classmethod
    def reopen(cls, run_dir: Path) -> Manifest:
        """The manifest of an existing run folder, marked running again (a sweep's resume goes on with it)."""
        return cls(run_dir, RunRecord.from_dict(json.loads((run_dir / MANIFEST_FILE).read_text())), fresh=False)

    @property
    def path(self) -> Path:
        return self.run_dir / MANIFEST_FILE

    def save(self) -> None:
        write_json_atomic(self.path, self.record.to_dict())

    def add_resume(self, resume: ResumeRecord) -> None:
        self.record = replace(self.record, resumes=(*self.record.resumes, resume))
        self.save()

    def put_point(self, point: PointRecord) -> None:
        self.record = self.record.with_point(point)
        self.save()

    def add_block(self, point: str | None, label: str, processes: list[ProcessFacts],
                  granted: dict[str, TierGrant] | None) -> None:
        """A block's processes as started, and what each tier got (None: no placement was read back)."""
        if point is None:
            self.record = self.record.with_block(label, processes, granted)
        else:
            self.record = self.record.with_point(self.record.point(point).with_block(label, processes, granted))
        self.save()

    def put_cell(self, point: str | None, cell: CellRecord) -> None:
        """A cell as it starts, or as it ends (in place of the entry of its id)."""
        if point is None:
            self.record = self.record.with_cell(cell)
        else:
            self.record = self.record.with_point(self.record.point(point).with_cell(cell))
        self.save()

    def put_search(self, point: str | None, design: str, search: CapacitySearchRecord) -> None:
        """How a design's capacity search ended."""
        if point is None:
            self.record = self.record.with_search(design, search)
        else:
            self.record = self.record.with_point(self.record.point(point).with_search(design, search))
        self.save()

    def add_look(self, point: str | None, look: LookRecord) -> None:
        """A sequential run's look at its headline rows."""
        if point is None:
            self.record = self.record.with_look(look)
        else:
            self.record = self.record.with_point(self.record.point(point).with_look(look))
        self.save()

    def mark_incomplete(self, reason: str) -> None:
        Manifest.mark(self.run_dir, reason)

    @staticmethod
    def mark(run_dir: Path, reason: str) -> None:
        """Mark a run folder incomplete, with the reason (a run that failed before its manifest gets only this)."""
        (run_dir / INCOMPLETE_MARKER).write_text(reason.rstrip() + "\n")

    def finish(self, error: str | None) -> None:
        self.record = self.record.finished(now_iso(), error)
        self.save()
        if error:
            self.mark_incomplete(error)
        else:
            (self.run_dir / INCOMPLETE_MARKER).unlink(missing_ok=True)
