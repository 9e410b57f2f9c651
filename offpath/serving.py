"""Serving a design from its declaration (offpath/designs.py): its tiers' processes started under a supervisor from
their templates, each in its placement tier, and waited for until ready — or the URL of a deployment already running,
of which nothing is started.

`start_service` and `start_workers` serve offpath's own designs by name (the built-in declarations) for the commands,
chaos scenarios and tests that start one tier at a time; they take the same path.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from foundation.errors import ConfigurationError
from offpath.designs import PROJECT_ROOT, Declaration, Design, Ready, Tier, declare
from offpath.ports import free_port
from offpath.process import pin
from offpath.queues import QueueAdapter, adapter_for
from offpath.supervisor import Managed, NotReady, ProcessDied, Restart, Supervisor, http_ok, python
from services.campaign.profile import ProfileSpec

__all__ = ["Conditions", "NotReady", "ProcessDied", "Served", "SystemUnderTest", "add_worker", "built_in", "serve",
           "serving_from",
           "start_service", "start_workers", "system_under_test"]


@dataclass(frozen=True)
class SystemUnderTest:
    """Where the measured processes come from: the interpreter `{python}` names, and the checkout whose files the
    declarations' relative paths point into. Usually this checkout; under `offpath gate --against`, the base commit's
    worktree (`cwd`) and its venv, while Locust and the recorder stay this checkout's: one instrument for both sides.
    A path inside `home` (this checkout's root) is read at the same place inside `cwd`."""

    python: str
    cwd: Path | None = None
    home: Path = PROJECT_ROOT

    def relocate(self, path: Path) -> Path:
        if self.cwd is None:
            return path
        try:
            return self.cwd / path.resolve().relative_to(self.home.resolve())
        except ValueError:
            return path  # outside this checkout: the same for both sides


_SERVED_BY: ContextVar[SystemUnderTest | None] = ContextVar("offpath_system_under_test", default=None)


@contextmanager
def serving_from(system: SystemUnderTest) -> Iterator[None]:
    """Start the designs of every experiment run inside this block from `system`."""
    token = _SERVED_BY.set(system)
    try:
        yield
    finally:
        _SERVED_BY.reset(token)


def system_under_test() -> SystemUnderTest:
    """The designs' interpreter and checkout: this checkout's, unless serving_from() says otherwise."""
    return _SERVED_BY.get() or SystemUnderTest(python())


@dataclass(frozen=True)
class Conditions:
    """What the experiment (or the command) fixes for a design it serves: the placeholders' values, the environment
    added to every tier, and what `offpath up` wants beside a run (a fixed port, info logs, workers replaced when they
    die)."""

    redis_url: str
    profile: str = "default"
    processes: int = 1
    concurrency: int = 0
    workers: int = 1
    log_level: str = "warning"
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None
    cpus: list[int] | None = None  # pin the web tier (benchmarks); placement is the supervisor's placer's
    worker_restart: Restart | None = None
    worker_redis_url: str | None = None  # the workers' Redis, when it is not the service's (a relay: the partition fault)


@dataclass
class Served:
    """A design being served: its base URL, the processes started (none for a deployment already running), the values
    its templates were filled with, and its queue adapter (None without a queue)."""

    design: Design
    url: str
    web: list[Managed]
    workers: list[Managed]
    values: dict[str, str]
    queue: QueueAdapter | None = None

    @property
    def started_anything(self) -> bool:
        return bool(self.web or self.workers)


def serve(supervisor: Supervisor, design: Design, conditions: Conditions) -> Served:
    """Start `design`'s tiers (web, then workers) and wait until each is ready; or check the URL of a deployment that
    is already running. Raises NotReady or ProcessDied (HarnessErrors) with what the process said."""
    declaration = design.declaration
    system = system_under_test()
    values = {
        "python": _interpreter(design, system),
        "redis_url": conditions.redis_url, "profile": conditions.profile, "processes": str(conditions.processes),
        "concurrency": str(conditions.concurrency), "workers": str(conditions.workers),
        "log_level": conditions.log_level, **declaration.params,
    }
    if declaration.url is not None:
        url = declaration.url.rstrip("/")
        values.update(port=str(urllib.parse.urlsplit(url).port or ""), url=url)
        _wait_for_url(url, declaration.ready)
        return Served(design, url, [], [], values, _queue(design, values, conditions))
    assert declaration.web is not None
    port = conditions.port or free_port()
    url = f"http://127.0.0.1:{port}"
    values.update(port=str(port), url=url)
    web = _start(supervisor, design, "service", declaration.web, values, system, conditions,
                 name=f"{design.name}-service")
    served = Served(design, url, [web], [], values, _queue(design, values, conditions))
    _wait_ready(supervisor, web, declaration.web.ready, values, port=port, served=served)
    if declaration.workers is not None:
        served.workers = _start_workers(supervisor, design, declaration.workers, values, system, conditions, served)
    return served


def _interpreter(design: Design, system: SystemUnderTest) -> str:
    if design.declaration.python is None:
        return system.python
    path = Path(design.declaration.python)
    if not path.is_absolute() and "/" in design.declaration.python:
        path = design.base_dir / path
        moved = system.relocate(path)
        path = moved if moved.exists() else path  # a venv git does not track stays where it is, for both sides
    return str(path)


def _queue(design: Design, values: Mapping[str, str], conditions: Conditions) -> QueueAdapter | None:
    spec = design.declaration.queue
    if spec is None:
        return None
    return adapter_for(spec, {**values, "redis_url": conditions.worker_redis_url or conditions.redis_url})


def _fill(template: str, values: Mapping[str, str]) -> str:
    return template.format_map(values)


def _command(tier: Tier, values: Mapping[str, str]) -> list[str]:
    return [_fill(part, values) for part in tier.argv_template()]


def _cwd(design: Design, tier: Tier, values: Mapping[str, str], system: SystemUnderTest) -> Path:
    folder = design.base_dir / _fill(tier.cwd, values) if tier.cwd is not None else design.base_dir
    return system.relocate(folder.resolve())


def _start(supervisor: Supervisor, design: Design, role: str, tier: Tier, values: Mapping[str, str],
           system: SystemUnderTest, conditions: Conditions, name: str,
           fresh: Callable[[], list[str]] | None = None, restart: Restart | None = None) -> Managed:
    argv = _command(tier, values)
    env = {key: _fill(value, values) for key, value in tier.env.items()}
    return supervisor.start(name, argv, role=role, env={**env, **conditions.env}, cwd=_cwd(design, tier, values, system),
                            cpus=conditions.cpus if role == "service" else None, restart=restart, fresh_argv=fresh)


def _start_workers(supervisor: Supervisor, design: Design, tier: Tier, values: dict[str, str],
                   system: SystemUnderTest, conditions: Conditions, served: Served) -> list[Managed]:
    count = tier.count if tier.count is not None else "{workers}"
    try:
        number = int(_fill(count, values)) if isinstance(count, str) else count
    except ValueError:
        raise ConfigurationError(f"design {design.name!r}: workers.count {count!r} is not a whole number") from None
    worker_values = {**values, "redis_url": conditions.worker_redis_url or conditions.redis_url}
    started = []
    for index in range(number):
        def named(index: int = index) -> dict[str, str]:
            # A fresh name for every start: RQ refuses the name of a worker that died without registering its death.
            return {**worker_values, "index": str(index),
                    "name": f"offpath-worker-{index}-{time.monotonic_ns() % 1_000_000_000}"}

        def fresh(index: int = index) -> list[str]:
            return _command(tier, named(index))

        started.append(_start(supervisor, design, "worker", tier, named(), system, conditions, name=f"worker-{index}",
                              fresh=fresh, restart=conditions.worker_restart))
    for managed in started:
        _wait_ready(supervisor, managed, tier.ready, worker_values, served=served, count=number, group=started)
    return started


def add_worker(supervisor: Supervisor, served: Served, conditions: Conditions) -> Managed:
    """One more worker of a served design, as a process manager replacing one would start it (not waited for: the
    fault that killed the other measures how soon the work goes on)."""
    tier = served.design.declaration.workers
    assert tier is not None, f"design {served.design.name!r} has no workers"
    index = len(served.workers)
    values = {**served.values, "redis_url": conditions.worker_redis_url or conditions.redis_url, "index": str(index),
              "name": f"offpath-worker-{index}-{time.monotonic_ns() % 1_000_000_000}"}
    return _start(supervisor, served.design, "worker", tier, values, system_under_test(), conditions,
                  name=f"worker-{index}")


def _wait_ready(supervisor: Supervisor, managed: Managed, ready: Ready | None, values: Mapping[str, str],
                port: int | None = None, served: Served | None = None, count: int = 1,
                group: list[Managed] | None = None) -> None:
    timeout_s = ready.timeout_s if ready is not None else 30.0
    check = _readiness(managed, ready, values, port, served, count, group or [managed])
    if check is None:
        return
    supervisor.wait_ready(managed, check, timeout_s)


def _readiness(managed: Managed, ready: Ready | None, values: Mapping[str, str], port: int | None,
               served: Served | None, count: int, group: list[Managed]) -> Callable[[], bool] | None:
    """What tells that `managed` is ready, as a check to poll; None: it is ready once started."""
    if ready is None:
        return (lambda: _accepts(port)) if port is not None else None
    if ready.url is not None:
        target = ready.url if "://" in ready.url else f"{values['url']}{ready.url}"
        target = _fill(target, values)
        return lambda: http_ok(target)
    if ready.log is not None:
        pattern = re.compile(ready.log)
        if managed.log_path is None:
            # Its output goes to the terminal (`offpath up`), not to a file offpath can read: the queue adapter can
            # still tell registered workers; without one, it is ready once started.
            adapter = served.queue if served is not None else None
            if adapter is None:
                return None

            def registered() -> bool:
                assert adapter is not None
                return adapter.workers_ready(count)

            return registered
        return lambda: _log_matches(managed, pattern)
    if ready.command is not None:
        argv = [_fill(part, values) for part in (ready.command if isinstance(ready.command, list)
                                                  else shlex.split(ready.command))]
        return lambda: _command_ok(argv)
    if ready.adapter:
        queue = served.queue if served is not None else None
        if queue is None:
            raise ConfigurationError("ready = { adapter = true } needs the design's [queue] adapter")
        return lambda: queue.workers_ready(count)
    return None


def _accepts(port: int | None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port or 0), timeout=0.5):
            return True
    except OSError:
        return False


def _log_matches(managed: Managed, pattern: re.Pattern[str]) -> bool:
    """Whether this process has written a line `pattern` finds (not an earlier process of the same name)."""
    return pattern.search(managed.log_text()) is not None


def _command_ok(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _wait_for_url(url: str, ready: Ready | None, timeout_s: float = 30.0) -> None:
    """A deployment already running: ready when its ready URL answers 2xx, or its port accepts connections."""
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + (ready.timeout_s if ready is not None else timeout_s)
    while time.monotonic() < deadline:
        if ready is not None and ready.url is not None:
            if http_ok(ready.url if "://" in ready.url else url + ready.url):
                return
        else:
            try:
                with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=0.5):
                    return
            except OSError:
                pass
        time.sleep(0.1)
    raise NotReady(f"the deployment at {url} did not answer within {deadline:.0f} s; is it running?")


# -- offpath's own designs, served by name ----------------------------------------------------------------------


def built_in(name: str, **params: str) -> Design:
    """One of offpath's own designs (offpath/designs.py BUILT_IN), with `params` set (e.g. backend="celery")."""
    table: dict[str, object] = {"use": name}
    if params:
        table["params"] = dict(params)
    return declare(name, table, source=f"built-in design {name!r}", base_dir=PROJECT_ROOT, where=name)


def start_service(supervisor: Supervisor, design: str, redis_url: str, profile: ProfileSpec | str,
                  port: int | None = None,
                  processes: int = 1, cpus: list[int] | None = None, env: dict[str, str] | None = None,
                  log_level: str = "warning", concurrency: int = 0, **params: str) -> tuple[Managed, str]:
    """The web tier of one of offpath's own designs, on 127.0.0.1, ready; (its process, its base URL)."""
    served = _serve_tier(supervisor, built_in(design, **params), Conditions(
        redis_url=redis_url, profile=str(profile), processes=processes, concurrency=concurrency, log_level=log_level,
        env=env or {}, port=port, cpus=cpus), with_workers=False)
    return served.web[0], served.url


def start_workers(supervisor: Supervisor, count: int, redis_url: str, profile: ProfileSpec | str,
                  cpus: list[int] | None = None,
                  env: dict[str, str] | None = None, restart: Restart | None = None, **params: str) -> list[Managed]:
    """`count` workers of offpath's queued design, each registered with its queue (ready). With `restart`, a worker
    that dies is replaced (`offpath up`); an experiment's workers are not: a worker lost mid-run changes what is
    measured, so there it is a harness fault."""
    design = built_in("queued", **params)
    declaration = design.declaration
    assert declaration.workers is not None
    conditions = Conditions(redis_url=redis_url, profile=str(profile), workers=count, env=env or {},
                            worker_restart=restart, cpus=cpus)
    system = system_under_test()
    values = {"python": _interpreter(design, system), "redis_url": redis_url, "profile": str(profile), "processes": "1",
              "concurrency": "0", "workers": str(count), "log_level": "warning", "url": "", "port": "",
              **declaration.params}
    served = Served(design, "", [], [], values, _queue(design, values, conditions))
    workers = _start_workers(supervisor, design, declaration.workers, values, system, conditions, served)
    if cpus:
        for managed in workers:
            if pin(managed.pid, cpus):
                managed.cpus = list(cpus)
    return workers


def _serve_tier(supervisor: Supervisor, design: Design, conditions: Conditions, with_workers: bool) -> Served:
    if with_workers:
        return serve(supervisor, design, conditions)
    web_only = Design(design.name, Declaration.model_validate(
        {**design.declaration.model_dump(exclude_none=True, by_alias=True), "workers": None}), design.base_dir,
        design.contract)
    return serve(supervisor, web_only, conditions)

