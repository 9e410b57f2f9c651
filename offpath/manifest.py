"""The run manifest: what ran, where, with what — written atomically, kept current as cells finish."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from foundation.format import INCOMPLETE_MARKER, MANIFEST_FILE, SCHEMA_VERSION

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_PACKAGES = {"offpath": "offpath", "locust": "locust", "rq": "rq", "redis_py": "redis", "fastapi": "fastapi",
             "uvicorn": "uvicorn", "hdrhistogram": "hdrhistogram", "pydantic": "pydantic", "gevent": "gevent"}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def git_facts() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"sha": "unknown", "dirty": None}


def versions(redis_server: str) -> dict[str, str]:
    found = {"python": platform.python_version(), "redis_server": redis_server}
    for key, dist in _PACKAGES.items():
        try:
            found[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[key] = "not installed"
    return found


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


class Manifest:
    def __init__(self, run_dir: Path, data: dict[str, Any], *, fresh: bool = True):
        self.run_dir = run_dir
        self.data = {"schema_version": SCHEMA_VERSION, **data, "status": "incomplete", "error": None,
                     "layout": {}, "cells": []} if fresh else data
        self.mark_incomplete("running")
        self.save()

    @classmethod
    def reopen(cls, run_dir: Path) -> Manifest:
        """The manifest of an existing run folder, marked running again (a sweep's resume goes on with it)."""
        return cls(run_dir, json.loads((run_dir / MANIFEST_FILE).read_text()), fresh=False)

    @property
    def path(self) -> Path:
        return self.run_dir / MANIFEST_FILE

    def save(self) -> None:
        write_json_atomic(self.path, self.data)

    def mark_incomplete(self, reason: str) -> None:
        Manifest.mark(self.run_dir, reason)

    @staticmethod
    def mark(run_dir: Path, reason: str) -> None:
        """Mark a run folder incomplete, with the reason (a run that failed before its manifest gets only this)."""
        (run_dir / INCOMPLETE_MARKER).write_text(reason.rstrip() + "\n")

    def finish(self, error: str | None) -> None:
        self.data["finished_at"] = now_iso()
        self.data["status"] = "incomplete" if error else "complete"
        self.data["error"] = error
        # A sweep keeps its cells per point (foundation/format.py POINTS_DIR); a point cut short is incomplete, and a
        # resume redoes it from scratch.
        points = self.data.get("points") or []
        for record in [self.data, *points]:
            for cell in record["cells"]:
                if cell["status"] == "running":
                    cell["status"] = "incomplete"
        for point in points:
            if point["status"] == "running":
                point["status"] = "incomplete"
        self.save()
        if error:
            self.mark_incomplete(error)
        else:
            (self.run_dir / INCOMPLETE_MARKER).unlink(missing_ok=True)
