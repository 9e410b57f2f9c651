"""Clients that go away mid-request: against real services (uvicorn, Redis, RQ workers) every campaign ends
completed or failed, its retry with the same Idempotency-Key gets the same campaign, and nothing is doubled."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as redis_async

from foundation.errors import ConfigurationError
from offpath.disconnect import MID_BODY_EVERY, DisconnectResult, _check, _clients, disconnect_mid_request
from services.campaign.store import campaign_key, executions_key, idempotency_record_key

CAMPAIGNS = 16
MID_BODY = CAMPAIGNS // MID_BODY_EVERY


def test_inline_clients_that_leave_during_the_work_get_the_same_campaign(launch, profiles):
    # quick*40: ~200 ms of provider wait and 40 ms of CPU before the first step is done, so a client that leaves
    # after 20-100 ms leaves while the server is doing the work.
    running = launch("inline", profiles["quick"] + "*40")
    result = disconnect_mid_request(running.url, running.redis_url, count=CAMPAIGNS, abort_after_s=(0.02, 0.1),
                                    payload_seed=7, settle_timeout_s=30)
    assert result.ok, result.examples
    assert_every_campaign_accounted_for(result)
    assert result.aborted >= CAMPAIGNS // 2
    # Mid-work, observed: the server finished each whole request's campaign after its client had gone, and retries
    # were told the first request was still running.
    assert result.finished_after_abort == result.aborted - MID_BODY
    assert result.retry_answers.get("409", 0) >= 1


def test_queued_clients_that_leave_around_admission_get_the_same_campaign(launch, profiles):
    running = launch("queued", profiles["quick"], workers=2)
    result = disconnect_mid_request(running.url, running.redis_url, count=CAMPAIGNS, abort_after_s=(0.0, 0.002),
                                    payload_seed=7, settle_timeout_s=30)
    assert result.ok, result.examples
    assert_every_campaign_accounted_for(result)
    assert result.aborted >= CAMPAIGNS // 2
    # Around admission, observed: the service admitted campaigns whose clients were already gone.
    assert result.admitted_after_abort >= 1


def assert_every_campaign_accounted_for(result: DisconnectResult) -> None:
    assert result.requested == result.aborted + result.answered_before_abort == CAMPAIGNS
    assert result.retried == result.same_campaign + result.created_by_retry == CAMPAIGNS
    # A client gone before its body was whole left nothing behind: its retry made the campaign. Every whole
    # request was acted on, client or no client: its retry got the first request's campaign.
    assert result.aborted_mid_body == result.created_by_retry == MID_BODY
    assert result.completed + result.failed == CAMPAIGNS
    assert (result.pending, result.inconsistent, result.examples) == (0, 0, [])


@pytest.mark.fast
@pytest.mark.parametrize("changes", [
    {"service_url": "https://127.0.0.1:8000"},
    {"redis_url": "127.0.0.1:6379"},
    {"count": 0},
    {"abort_after_s": (0.1, 0.05)},
    {"abort_after_s": (-0.1, 0.05)},
    {"abort_after_s": [0.0, 0.1]},
    {"payload_seed": "7"},
    {"settle_timeout_s": 0},
])
def test_bad_arguments_are_refused_before_anything_is_sent(changes):
    arguments = {"service_url": "http://127.0.0.1:1", "redis_url": "redis://127.0.0.1:1/0", "count": 1,
                 "abort_after_s": (0.0, 0.1), "payload_seed": 7, "settle_timeout_s": 1.0, **changes}
    with pytest.raises(ConfigurationError):
        disconnect_mid_request(**arguments)


def test_the_check_names_each_kind_of_inconsistency(redis_server):
    """The checker itself, on states written into a real Redis by hand: what a broken service could leave."""
    url = redis_server.url.rsplit("/", 1)[0] + "/63"  # a database the launch fixture's counter does not reach
    plain = redis.Redis.from_url(url)
    plain.flushdb()
    clients = _clients(6, (0.0, 0.0), payload_seed=1)
    for number, client in enumerate(clients):
        client.campaign_id = f"campaign-{number}"
        client.aborted, client.abort_at, client.retry_sent_at = True, 1.0, 2.0
        plain.hset(campaign_key(client.campaign_id), mapping={
            "status": "completed", "request": client.body, "accepted_at": "1.5", "completed_at": "3.0"})
        plain.set(idempotency_record_key(client.key), f"{client.campaign_id} fingerprint")
    plain.set(idempotency_record_key(clients[1].key), "someone-else fingerprint")
    plain.hset(campaign_key("a-twin"), mapping={"status": "completed", "request": clients[2].body, "accepted_at": "1"})
    plain.hset(executions_key(clients[3].campaign_id), "content", 2)
    plain.hset(campaign_key(clients[4].campaign_id), "status", "generating")
    clients[5].campaign_id, clients[5].why_no_answer = None, "the retry was answered 500: boom"

    async def check() -> DisconnectResult:
        connection = redis_async.Redis.from_url(url)
        try:
            return await _check(connection, clients, settle_timeout_s=0.2)
        finally:
            await connection.aclose()

    result = asyncio.run(check())
    plain.flushdb()
    assert (result.completed, result.pending, result.inconsistent, result.ok) == (4, 1, 4, False), result
    reasons = [example.partition(": ")[2] for example in result.examples]
    assert reasons == [
        "the idempotency record names someone-else, the retry got campaign-1",
        "2 campaigns carry this key",
        "side effects ran more than once: {'content': 2}",
        "the retry was answered 500: boom",
    ]
    assert result.same_campaign == 5 and result.admitted_after_abort == 5 and result.finished_after_abort == 4
