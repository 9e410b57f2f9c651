"""The admission on Celery: the campaign's state and its first message written in one MULTI/EXEC, as on RQ.

Celery cannot take a caller's transaction: a publish goes out on its producer's own connection. But on Redis a publish
ends in writes kombu computes before making them: kombu's Redis channel routes the prepared message and, for a
publish batch, only *adds* its final commands (`LPUSH <queue> <message>`) to the batch instead of sending them
(kombu/transport/redis.py:1679-1690, the seam its PublishBatch uses, :938-993). The service's Celery application
publishes through AdmissionTransport, whose channel hands every publish such a collector; the admission then buffers
the collected commands onto its own transaction. Everything up to the last write is Celery's and kombu's own: the
chain (`generate.si(id) | automate.si(id)`, celery/canvas.py:1229-1283), its task message (protocol 2, JSON, the
chain inside), routing to the anonymous exchange and the queue (celery/app/amqp.py:586-588), kombu's envelope with
its delivery tag and base64 body (kombu/transport/virtual/base.py:616-638).

So a crash between the two steps cannot happen: the campaign (`accepted`) and its generation message are written by
one EXEC or not at all, and the 202 still means "will be done or visibly fail". What Celery adds after that is at
least once: a worker killed mid-task leaves the message unacknowledged until the visibility timeout puts it back
(application.py); and the chain is published by the worker after generation returned, before it acknowledges it, so
a worker killed between the two publishes automation again when generation is delivered again (generation finds its
outcome recorded and returns at once: services/campaign/steps.py). The duplicate automation message then finds the
follow-ups recorded; if both copies run at the same time (the first one still queued when the second is published, a
visibility timeout later), the step's fence lets only the copy that began last record, and the other is acknowledged
without continuing its chain (services/campaign/steps.py, application.py).

The service's channel connects once, at startup (kombu pings Redis when a channel opens, kombu/transport/redis.py:
1199-1203, and declares the queue on the first publish, kombu/messaging.py:367-370): no request waits on either.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from celery import chain
from kombu.transport import redis as kombu_redis
from redis.asyncio.client import Pipeline as AsyncPipeline

from services.campaign.settings import Settings
from services.queued.attempts import automation_job_id, generation_job_id
from services.queued.celery_backend.application import AUTOMATE, GENERATE, celery_app

__all__ = ["AdmissionTransport", "CeleryAdmission"]


class _Collected:
    """A publish batch that keeps kombu's final Redis commands instead of sending them."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, name: str, *args: Any) -> None:
        self.commands.append((name, args))


_collecting: ContextVar[_Collected | None] = ContextVar("offpath_celery_admission", default=None)


class _AdmissionChannel(kombu_redis.Channel):
    def basic_publish(self, message: Any, exchange: str, routing_key: str, **kwargs: Any) -> Any:
        collected = _collecting.get()
        if collected is None:
            raise RuntimeError("the queued service's Celery application publishes only inside an admission")
        return super().basic_publish(message, exchange, routing_key, _publish_batch=collected, **kwargs)


class AdmissionTransport(kombu_redis.Transport):
    """kombu's Redis transport, whose publishes are collected for the admission's transaction."""

    Channel = _AdmissionChannel


class CeleryAdmission:
    """Buffers a campaign's chain onto the admission's transaction."""

    def __init__(self, settings: Settings) -> None:
        self.app = celery_app(settings, transport=f"{__name__}:AdmissionTransport")
        self.generate = self.app.tasks[GENERATE]
        self.automate = self.app.tasks[AUTOMATE]
        with self.app.producer_or_acquire() as producer:
            producer.maybe_declare(self.app.amqp.queues[settings.queue_name])

    def buffer(self, pipe: AsyncPipeline, campaign_id: str) -> None:
        collected = _Collected()
        token = _collecting.set(collected)
        try:
            chain(self.generate.si(campaign_id).set(task_id=generation_job_id(campaign_id)),
                  self.automate.si(campaign_id).set(task_id=automation_job_id(campaign_id))).apply_async()
        finally:
            _collecting.reset(token)
        for name, args in collected.commands:
            getattr(pipe, name)(*args)

    def close(self) -> None:
        self.app.close()
