"""A run session: what every command that measures shares — the run id and folder, the manifest with
the machine's facts, stop signals, and the incomplete marker (where each tier runs is
offpath/placement.py). `bench`, `gate` (through the runner) and `chaos` run in one; `up` shares its
signal handling.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from foundation.errors import ConfigurationError, HarnessError, OffpathError
from foundation.manifest_format import RunRecord
from offpath.manifest import Manifest, git_facts, machine, now_iso, versions

__all__ = ["Interrupted", "RunSession", "new_run_id", "stop_signals"]


class Interrupted(HarnessError):
    """SIGINT or SIGTERM arrived: the run stops where it is and keeps what it measured."""


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


@contextmanager
def stop_signals() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise Interrupted in the main thread; the previous handlers come back after."""
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def new_run_id(name: str) -> str:
    """`YYYYmmdd-HHMMSS-<name>-<6 hex>` (results/README.md): sortable by time, unique across parallel runs."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(3)}"


class RunSession:
    """One run's folder and manifest. `run(body)` executes the measurement with stop signals caught and
    marks the folder complete, or incomplete with the reason, whatever happened inside."""

    def __init__(self, out_root: Path, name: str, say: Callable[[str], None] = print):
        self.run_dir = Path(out_root) / new_run_id(name)
        try:
            self.run_dir.mkdir(parents=True)
        except OSError as exc:  # --out names a folder offpath cannot make or write: the user's input, not a crash
            raise ConfigurationError(f"--out {str(out_root)!r}: cannot create a run folder in it ({exc.strerror}); "
                                     "allowed: a folder that exists or can be created, writable") from exc
        self.say = say
        self._manifest: Manifest | None = None

    @classmethod
    def reopen(cls, run_dir: Path, say: Callable[[str], None] = print) -> RunSession:
        """The session of an existing run folder, its manifest reopened and marked running (a sweep's resume)."""
        session = cls.__new__(cls)
        session.run_dir, session.say = Path(run_dir), say
        session._manifest = Manifest.reopen(session.run_dir)
        return session

    @property
    def id(self) -> str:
        return self.run_dir.name

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            raise HarnessError("the run's manifest was used before it was started")
        return self._manifest

    def start_manifest(self, redis_version: str, facts: RunRecord) -> Manifest:
        """The manifest of the caller's facts (kind, experiment, profile, ...) with those every run records."""
        self._manifest = Manifest(self.run_dir, replace(
            facts, run_id=self.id, started_at=now_iso(), finished_at=None, git=git_facts(),
            versions=versions(redis_version), machine=machine()))
        return self._manifest

    def run(self, body: Callable[[], None]) -> str | None:
        """Run the measurement; returns None for a complete run, else why it is incomplete. Bad input found only once
        running (a design whose service does not keep its contract) is raised again once the folder is marked: it is
        the command's one line and exit 2, not a run to report on."""
        error: str | None = None
        bad_input: ConfigurationError | None = None
        try:
            with stop_signals():
                body()
        except ConfigurationError as exc:
            error, bad_input = str(exc), exc
        except OffpathError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any other fault still leaves a marked, partial folder
            error = f"{type(exc).__name__}: {exc}"
        if self._manifest is None:
            Manifest.mark(self.run_dir, error or "the run ended before its manifest was written")
            if bad_input is not None:
                raise bad_input
            self.say(f"run failed before it started: {error}")
            return error or "the run ended before its manifest was written"
        self._manifest.finish(error)
        if bad_input is not None:
            raise bad_input
        return error
