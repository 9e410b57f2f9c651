"""How a client learns a campaign's outcome: the held GET (`?wait=N`) answers as soon as the campaign is final,
Retry-After says when to ask again, both designs accept the same contract, and the simulated client asks fewer
times per campaign when it holds its GET or honours Retry-After than when it polls on a timer."""

from __future__ import annotations

import asyncio
import math
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from analysis.stats.load import read_interval_log
from foundation.format import CREATE, POLL, log_file
from loadtests.client import Following, run_request
from loadtests.contract import campaign_contract
from offpath.experiment import ExperimentError, parse_experiment
from offpath.process import new_group_dying_with_parent, signal_group
from offpath.runner import locust_argv
from services.campaign.outcome import MAX_RETRY_AFTER_S, MAX_WAIT_S, OutcomeWatch, retry_after_s
from services.campaign.profile import ProfileSpec
from services.campaign.schema import Status
from services.campaign.store import campaign_key
from tests.conftest import valid_body

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def idle(launch, profiles):
    """The queued design without workers: campaigns stay accepted until a test finishes them by hand."""
    return launch("queued", profiles["quick"])


def finish_by_hand(running, campaign_id: str) -> None:
    running.redis().hset(campaign_key(campaign_id), mapping={"status": "completed", "completed_at": repr(time.time()),
                                                             "started_at": repr(time.time())})


def retry_after(response: httpx.Response) -> int:
    value = response.headers["retry-after"]
    assert value.isdigit(), f"Retry-After {value!r} is not delay-seconds"
    return int(value)


# -- the held GET ---------------------------------------------------------------------------------------------------

def test_held_get_answers_as_soon_as_the_campaign_is_final_not_after_the_wait(idle):
    with idle.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
        finisher = threading.Timer(0.5, finish_by_hand, (idle, campaign_id))
        started = time.monotonic()
        finisher.start()
        response = client.get(f"/campaigns/{campaign_id}", params={"wait": 10})
        elapsed = time.monotonic() - started
    finisher.join()
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert 0.45 <= elapsed < 3.0, f"answered after {elapsed:.2f} s: the campaign was final after 0.5 s, the wait 10 s"
    assert "retry-after" not in response.headers


def test_held_get_of_a_campaign_that_stays_unfinished_answers_when_the_wait_ends(idle):
    with idle.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
        started = time.monotonic()
        response = client.get(f"/campaigns/{campaign_id}", params={"wait": 0.6})
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert 0.6 <= elapsed < 3.0
    assert 1 <= retry_after(response) <= MAX_RETRY_AFTER_S


def test_held_get_with_workers_returns_the_completed_campaign(launch, profiles):
    queued = launch("queued", profiles["quick"], workers=1)
    with queued.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
        started = time.monotonic()
        response = client.get(f"/campaigns/{campaign_id}", params={"wait": 20})
        elapsed = time.monotonic() - started
    assert response.json()["status"] == "completed" and response.json()["completed_at"] is not None
    assert elapsed < 10, f"a quick campaign took {elapsed:.1f} s to be reported by a held GET"


def test_held_gets_of_one_campaign_are_all_answered(idle):
    with idle.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]

    async def hold_three() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=idle.url, timeout=30) as client:
            held = [asyncio.create_task(client.get(f"/campaigns/{campaign_id}", params={"wait": 10})) for _ in range(3)]
            await asyncio.sleep(0.4)
            await asyncio.to_thread(finish_by_hand, idle, campaign_id)
            return await asyncio.gather(*held)

    started = time.monotonic()
    answers = asyncio.run(hold_three())
    assert [a.json()["status"] for a in answers] == ["completed"] * 3
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("wait", ["-1", str(MAX_WAIT_S + 1), "soon", "nan"])
def test_a_wait_out_of_range_is_a_documented_422(idle, wait):
    with idle.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
        response = client.get(f"/campaigns/{campaign_id}", params={"wait": wait})
        responses = client.get("/openapi.json").json()["paths"]["/campaigns/{campaign_id}"]["get"]["responses"]
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "wait"]
    assert "schema" in responses["422"]["content"]["application/json"]


def test_unknown_campaign_is_404_at_once_even_with_a_wait(idle):
    with idle.client() as client:
        started = time.monotonic()
        response = client.get("/campaigns/does-not-exist", params={"wait": 10})
    assert response.status_code == 404
    assert time.monotonic() - started < 2.0


def test_inline_accepts_the_same_wait_and_answers_a_final_campaign_at_once(launch, profiles):
    inline = launch("inline", profiles["quick"])
    with inline.client() as client:
        created = client.post("/campaigns", json=valid_body())
        assert created.status_code == 201
        started = time.monotonic()
        response = client.get(f"/campaigns/{created.json()['id']}", params={"wait": 10})
        elapsed = time.monotonic() - started
        bad = client.get(f"/campaigns/{created.json()['id']}", params={"wait": -1})
    assert response.status_code == 200 and response.json()["status"] == "completed"
    assert elapsed < 2.0 and "retry-after" not in response.headers
    assert bad.status_code == 422


# -- Retry-After ------------------------------------------------------------------------------------------------------

def test_202_and_gets_of_unfinished_campaigns_carry_a_sane_retry_after(idle):
    with idle.client() as client:
        accepted = client.post("/campaigns", json=valid_body())
        campaign_id = accepted.json()["id"]
        unfinished = client.get(f"/campaigns/{campaign_id}")
        finish_by_hand(idle, campaign_id)
        final = client.get(f"/campaigns/{campaign_id}")
    assert accepted.status_code == 202 and 1 <= retry_after(accepted) <= MAX_RETRY_AFTER_S
    assert 1 <= retry_after(unfinished) <= MAX_RETRY_AFTER_S
    assert "retry-after" not in final.headers


@pytest.mark.fast
def test_retry_after_follows_the_work_ahead_then_backs_off_with_the_wait_so_far():
    profile = ProfileSpec().load()  # ~60 ms of work at the medians
    assert retry_after_s(profile, Status.accepted, accepted_at=100.0, now=100.0) == 1
    assert retry_after_s(profile, Status.accepted, accepted_at=100.0, now=110.0) == 5  # waited 10 s: half of it
    assert retry_after_s(profile, Status.generating, accepted_at=100.0, now=100.5) == 1
    assert retry_after_s(profile, Status.accepted, accepted_at=100.0, now=1_000.0) == MAX_RETRY_AFTER_S
    slow = ProfileSpec().scaled(100).load()  # ~6 s of work ahead of an accepted campaign, ~1.5 s of it automation
    assert retry_after_s(slow, Status.accepted, accepted_at=100.0, now=100.0) == math.ceil(
        (slow.generation.cpu_ms + slow.generation.wait_median_ms + slow.automation.cpu_ms
         + slow.automation.wait_median_ms) / 1000)
    assert retry_after_s(slow, Status.automating, accepted_at=100.0, now=100.0) == 2


def test_openapi_documents_the_wait_parameter_and_the_retry_after_headers(idle):
    with idle.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    get = paths["/campaigns/{campaign_id}"]["get"]
    wait = next(p for p in get["parameters"] if p["name"] == "wait")
    assert wait["in"] == "query" and not wait.get("required")
    assert wait["schema"]["minimum"] == 0 and wait["schema"]["maximum"] == MAX_WAIT_S
    assert get["responses"]["200"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    accepted = paths["/campaigns"]["post"]["responses"]["202"]
    assert {"Location", "Retry-After"} <= set(accepted["headers"])
    assert "schema" in accepted["content"]["application/json"]


# -- the watch itself -----------------------------------------------------------------------------------------------

def test_a_client_that_goes_away_ends_its_held_get(redis_server):
    async def scenario() -> tuple[bool, float]:
        client = aioredis.Redis.from_url(redis_server.url)
        key = campaign_key("held-by-a-client-that-leaves")
        await client.hset(key, mapping={"status": "accepted"})  # and so it stays
        watch = OutcomeWatch(client)
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict:
            if messages:
                return messages.pop()
            await asyncio.sleep(0.3)
            return {"type": "http.disconnect"}

        started = time.monotonic()
        final = await watch.until_final("held-by-a-client-that-leaves", 20, receive)
        elapsed = time.monotonic() - started
        await client.delete(key)
        await client.aclose()
        return final, elapsed

    final, elapsed = asyncio.run(scenario())
    assert final is False and elapsed < 2.0


def test_one_round_trip_reads_every_held_campaign(redis_server):
    async def scenario() -> tuple[int, int, int]:
        client = aioredis.Redis.from_url(redis_server.url)
        keys = [campaign_key(f"held-{n}") for n in range(50)]
        for key in keys:
            await client.hset(key, mapping={"status": "accepted"})
        watch = OutcomeWatch(client)
        held = [asyncio.create_task(watch.until_final(f"held-{n}", 5)) for n in range(50)]
        await asyncio.sleep(1.0)
        reads_while_waiting = watch.reads
        for key in keys:
            await client.hset(key, "status", "completed")
        results = await asyncio.gather(*held)
        await asyncio.sleep(0.3)
        await client.delete(*keys)
        await client.aclose()
        assert all(results)
        return reads_while_waiting, watch.reads, watch.keys_read

    reads_while_waiting, reads, keys_read = asyncio.run(scenario())
    # Fifty GETs held for a second: at most ten round trips (one per MIN_READ_GAP_S), each reading all fifty.
    assert 4 <= reads_while_waiting <= 1.0 / OutcomeWatch.MIN_READ_GAP_S + 1
    assert keys_read == 50 * reads
    assert reads <= reads_while_waiting + 3  # and none once nothing is held


# -- the client -------------------------------------------------------------------------------------------------------

class FakeResponse:
    def __init__(self, status_code: int, body: dict, headers: dict | None = None):
        self.status_code, self._body, self.headers = status_code, body, headers or {}

    def json(self) -> dict:
        return self._body


def follow(request, pause, mode: str) -> str:
    """One campaign through the client, following its acknowledgement the way `mode` says."""
    return run_request(campaign_contract(), request, pause, lambda name, value: None, b"{}", time.monotonic(),
                       Following(1.0, mode, 60.0))


def scripted(answers: list[FakeResponse]):
    sent: list[tuple[str, str, float | None]] = []

    def request(method, path, name, body, intended, pause_s):
        sent.append((method, path, pause_s))
        return answers[len(sent) - 1]

    return request, sent


@pytest.mark.fast
def test_the_client_honours_retry_after_and_holds_its_gets():
    accepted = FakeResponse(202, {"id": "c1", "status": "accepted"}, {"Location": "/campaigns/c1", "Retry-After": "3"})
    running = FakeResponse(200, {"status": "generating"}, {"Retry-After": "2"})
    done = FakeResponse(200, {"status": "completed"})
    pauses: list[float] = []

    def pause(seconds: float) -> bool:
        pauses.append(seconds)
        return True

    request, sent = scripted([accepted, running, done])
    assert follow(request, pause, "retry-after") == "completed"
    assert [p for _, _, p in sent] == [None, 3.0, 2.0]
    assert pauses[0] == pytest.approx(3.0, abs=0.05) and pauses[1] == pytest.approx(2.0, abs=0.05)

    request, sent = scripted([accepted, done])
    pauses.clear()
    assert follow(request, pause, "wait") == "completed"
    assert sent[1][1] == "/campaigns/c1?wait=20" and pauses == [0.0]

    request, sent = scripted([accepted, running, running, done])
    assert follow(request, pause, "interval") == "completed"
    assert [p for _, _, p in sent] == [None, 1.0, 1.0, 1.0]


@pytest.mark.fast
def test_a_held_get_answered_early_without_the_outcome_is_not_asked_again_at_once():
    # A server that does not hold: the client must not turn into a busy loop.
    accepted = FakeResponse(202, {"id": "c1", "status": "accepted"}, {"Location": "/campaigns/c1"})
    running = FakeResponse(200, {"status": "accepted"}, {"Retry-After": "4"})
    done = FakeResponse(200, {"status": "completed"})
    pauses: list[float] = []
    request, sent = scripted([accepted, running, done])
    follow(request, lambda s: pauses.append(s) or True, "wait")
    assert pauses[1] == pytest.approx(4.0, abs=0.05)


def gets_per_campaign(cell: Path) -> float:
    posts = read_interval_log(cell / log_file(CREATE)).total_count
    gets = read_interval_log(cell / log_file(POLL)).total_count
    assert posts > 0
    return gets / posts


@pytest.fixture(scope="module")
def slow_queued(launch, profiles):
    """Campaigns that take about a second (the slow profile's provider wait), drained by enough workers."""
    return launch("queued", profiles["slow"], workers=4)


@pytest.mark.parametrize("poll", ["interval", "retry-after", "wait"])
def test_the_simulated_client_asks_less_per_campaign_when_told_when_or_held(slow_queued, tmp_path, poll):
    from offpath.experiment import Phase

    phase = Phase(name="steady", kind="steady", rate_per_s=4, duration_s=6)
    argv = locust_argv(slow_queued.url, tmp_path, phase, payload_seed=1, poll_interval_s=0.25, processes=1, poll=poll)
    assert argv[argv.index("--poll") + 1] == poll
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=new_group_dying_with_parent)
    try:
        _, stderr = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        signal_group(process.pid, 9)
        process.communicate()
        raise
    assert process.returncode == 0, stderr[-2000:]
    per_campaign = gets_per_campaign(tmp_path)
    # About 1 s of work: a 0.25 s timer asks ~4-5 times; Retry-After (2 s on the 202) and a held GET, once.
    if poll == "interval":
        assert per_campaign >= 3.0, per_campaign
    else:
        assert per_campaign <= 1.2, per_campaign
    errors = (tmp_path / "errors.csv").read_text().strip().splitlines()[1:]
    assert not [e for e in errors if "GET" in e], errors


# -- the experiment ---------------------------------------------------------------------------------------------------

BASE = {"name": "x", "slo": {"p99_ms": 500, "error_rate": 0.01},
        "phases": [{"name": "steady", "rate_per_s": 10, "duration_s": 5}]}


@pytest.mark.fast
def test_the_polling_mode_is_declared_in_the_layout_and_validated():
    assert parse_experiment(BASE, "x.toml").layout.poll == "interval"
    assert parse_experiment({**BASE, "layout": {"poll": "wait"}}, "x.toml").layout.poll == "wait"
    with pytest.raises(ExperimentError, match=r"x.toml: key 'layout.poll' has value 'sometimes'; allowed: one of "
                                              r"interval, retry-after, wait"):
        parse_experiment({**BASE, "layout": {"poll": "sometimes"}}, "x.toml")
    with pytest.raises(ExperimentError, match=r"key 'layout' has value .*allowed with a bounded server \(concurrency "
                                              r"4\): poll = interval or retry-after"):
        parse_experiment({**BASE, "layout": {"poll": "wait", "concurrency": 4}}, "x.toml")


@pytest.mark.fast
def test_the_completion_slo_defaults_to_the_request_slo():
    assert parse_experiment(BASE, "x.toml").slo.completion_p99_ms == 500
    declared = parse_experiment({**BASE, "slo": {**BASE["slo"], "completion_p99_ms": 2000}}, "x.toml")
    assert declared.slo.completion_p99_ms == 2000 and declared.resolved()["slo"]["completion_p99_ms"] == 2000
    with pytest.raises(ExperimentError, match=r"x.toml: key 'slo.completion_p99_ms' has value -1; allowed: "
                                              r"milliseconds > 0"):
        parse_experiment({**BASE, "slo": {**BASE["slo"], "completion_p99_ms": -1}}, "x.toml")


@pytest.mark.fast
def test_locust_argv_defaults_to_interval_polling(tmp_path):
    from offpath.experiment import Phase

    phase = Phase(name="s", kind="steady", rate_per_s=10, duration_s=5)
    argv = locust_argv("http://127.0.0.1:1", tmp_path, phase, 1, 1.0, 1)
    assert argv[argv.index("--poll") + 1] == "interval"
