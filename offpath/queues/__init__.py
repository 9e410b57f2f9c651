"""Queue adapters: where a design's backlog is read — queue depth, work in flight, scheduled retries, failures and
workers — whatever library keeps it. The harness samples an adapter every second while a cell runs (queue.csv), waits
on it for the drain after each cell, and asks it whether a design's workers are ready.

One small protocol (adapter.py), offpath's own RQ queue its first user (rq.py); Celery, Dramatiq and arq on a Redis
broker, and two generic ones for anything else: a command that prints the depth, a metrics URL that answers it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from foundation.errors import ConfigurationError
from offpath.designs import QueueSpec
from offpath.queues.adapter import QueueAdapter, QueueState

__all__ = ["QueueAdapter", "QueueState", "adapter_for"]


def adapter_for(spec: QueueSpec, values: Mapping[str, str]) -> QueueAdapter:
    """The adapter a design's `[queue]` names, its templates filled with `values`."""
    kind = spec.adapter.format_map(values)
    redis_url = (spec.redis_url or "{redis_url}").format_map(values)
    if kind == "rq":
        from offpath.queues.rq import RqQueue

        return RqQueue(redis_url, spec.name)
    if kind == "celery":
        from offpath.queues.celery import CeleryQueue

        return CeleryQueue(redis_url, spec.name)
    if kind == "dramatiq":
        from offpath.queues.dramatiq import DramatiqQueue

        return DramatiqQueue(redis_url, spec.name)
    if kind == "arq":
        from offpath.queues.arq import ArqQueue

        return ArqQueue(redis_url, spec.name)
    if kind in ("command", "metrics"):
        from offpath.queues.external import CommandQueue, MetricsQueue

        if kind == "command":
            if spec.command is None:
                raise ConfigurationError("queue adapter 'command' needs `command`: what prints the queue's depth")
            command = spec.command if isinstance(spec.command, list) else shlex.split(spec.command)
            return CommandQueue([part.format_map(values) for part in command])
        if spec.url is None:
            raise ConfigurationError("queue adapter 'metrics' needs `url`: where the queue's depth is answered")
        return MetricsQueue(spec.url.format_map(values), spec.pointer)
    raise ConfigurationError(f"queue adapter {kind!r} is not one offpath knows; allowed: rq, celery, dramatiq, arq, "
                             "command, metrics")
