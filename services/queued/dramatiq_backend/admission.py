"""The admission on Dramatiq: the campaign's state and its first message written in one MULTI/EXEC, as on RQ.

Dramatiq cannot take a caller's transaction: `RedisBroker.enqueue` runs its Lua script on its own client
(dramatiq/brokers/redis.py:150-186, 259-280). What that script does to enqueue is two writes: the encoded message into
the queue's hash under its Redis id, and the id onto the queue's list (dispatch.lua:145-150); its other write, the
heartbeat of the calling process (dispatch.lua:58), matters only for a consumer, whose fetched messages it guards.
So the admission builds the message with Dramatiq's own API (the actor's message, a pipeline to automation, Dramatiq's
JSON encoding) and buffers those two writes onto its own transaction. It calls no script: a script in a MULTI after a
Redis restart fails alone (NOSCRIPT) while the transaction's other writes commit, which would be a campaign without
its message; two plain writes cannot fail apart.

So a crash between the two steps cannot happen: the campaign (`accepted`) and its generation message are written by
one EXEC or not at all, and the 202 still means "will be done or visibly fail". What Dramatiq adds after that is at
least once: a worker killed mid-job leaves its message in its ack set until maintenance finds it silent (broker.py);
and the pipeline enqueues automation after generation returned, before the ack, so a worker killed between the two
enqueues automation again when generation is delivered again (generation finds its outcome recorded and returns at
once: services/campaign/steps.py). The duplicate automation message then finds the follow-ups recorded; if both
copies run at the same time (the first still queued when the second is enqueued), the step's fence lets only the copy
that began last record, and the other is acknowledged without continuing its pipeline (services/campaign/steps.py,
broker.py). The admission's Redis id is deterministic (the campaign's generation job id): written twice, the second
write would leave one hash entry and an id listed twice, the second fetch of which finds no message after the first
was acknowledged and is skipped (dramatiq/brokers/redis.py:341-349).
"""

from __future__ import annotations

from dramatiq import pipeline
from redis.asyncio.client import Pipeline as AsyncPipeline

from services.campaign.settings import Settings
from services.queued.attempts import automation_job_id, generation_job_id
from services.queued.dramatiq_backend.broker import AUTOMATE, GENERATE, NAMESPACE, dramatiq_broker

__all__ = ["DramatiqAdmission", "queue_key"]


def queue_key(queue_name: str) -> str:
    """The list of message ids ready to run (dispatch.lua:68); their messages are in queue_key + '.msgs' (:69)."""
    return f"{NAMESPACE}:{queue_name}"


class DramatiqAdmission:
    """Buffers a campaign's pipeline onto the admission's transaction. Makes no Redis call of its own."""

    def __init__(self, settings: Settings) -> None:
        self.broker = dramatiq_broker(settings)
        self.generate = self.broker.get_actor(GENERATE)
        self.automate = self.broker.get_actor(AUTOMATE)
        self.queue = queue_key(settings.queue_name)
        self.messages = f"{self.queue}.msgs"

    def buffer(self, pipe: AsyncPipeline, campaign_id: str) -> None:
        first = self.generate.message_with_options(args=(campaign_id,)).copy(message_id=generation_job_id(campaign_id))
        # pipe_ignore: automation takes the campaign id only, not generation's return value.
        then = self.automate.message_with_options(args=(campaign_id,), pipe_ignore=True).copy(
            message_id=automation_job_id(campaign_id))
        head = pipeline([first, then], broker=self.broker).messages[0]
        # The broker's enqueue gives each message a Redis id of its own (dramatiq/brokers/redis.py:163-170).
        redis_id = generation_job_id(campaign_id)
        message = head.copy(options={"redis_message_id": redis_id})
        pipe.hset(self.messages, redis_id, message.encode())
        pipe.rpush(self.queue, redis_id)

    def close(self) -> None:
        self.broker.client.close()
