"""What the queued design promises on every queue backend, checked the same way on each (tests/test_backend_*.py
subclass QueueBackendContract, naming their backend and how to look at their library's messages): 202 and a Location
at once, the states and timestamps on GET, retries that wait their backoff, automation only after generation
succeeded, side effects once even when a job is delivered twice, idempotency, backpressure, the worker's ready line,
its warm stop and its end with its parent. Real Redis, real uvicorn, real worker processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from offpath.serving import start_workers
from offpath.supervisor import Managed, Supervisor
from services.campaign.settings import Settings
from services.queued.attempts import generation_job_id
from services.queued.backend import queue_backend
from services.queued.lifetime import READY
from tests.conftest import Running, project_root, start_queue_workers, stop_launched, valid_body
from tests.processes import alive, wait_gone


@dataclass(frozen=True)
class Admitted:
    """The first message of a campaign as its library holds it, decoded from JSON: the step it runs, its id and
    arguments, and the step the library will run next (None: the library holds no next step; RQ's generation enqueues
    automation itself)."""

    step: str
    job_id: str
    args: list
    next_step: str | None
    next_id: str | None


def wait_for_status(client: httpx.Client, campaign_id: str, statuses: set[str], timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    campaign: dict = {}
    while time.monotonic() < deadline:
        campaign = client.get(f"/campaigns/{campaign_id}").json()
        if campaign["status"] in statuses:
            return campaign
        time.sleep(0.02)
    raise AssertionError(f"campaign {campaign_id} did not reach {statuses} in {timeout_s} s: {campaign}")


def executions(running: Running, campaign_id: str) -> dict[bytes, bytes]:
    return running.redis().hgetall(f"offpath:executions:{campaign_id}")


def log_of(worker: Managed) -> str:
    return worker.tail(100_000)


async def _post_all(base_url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        return list(await asyncio.gather(*(client.post("/campaigns", json=body) for body in bodies)))


def post_all(base_url: str, bodies: list[dict]) -> list[httpx.Response]:
    return asyncio.run(_post_all(base_url, bodies))


class QueueBackendContract:
    backend: str
    # How late a retry may start after its backoff, at most, on an idle worker (the library's own timing).
    retry_lateness_s: float = 0.1
    # How long the library takes at most to deliver again a job whose worker was killed, after recover() returned.
    redelivery_s: float = 15.0
    # Where the library keeps a job its one worker runs, and one waiting behind it (job_places, which the chaos audit
    # reports for a pending campaign).
    running_place: str = ""
    waiting_place: str = "queue"

    # --- what each backend's module says about its library ---------------------------------------------------

    def admitted(self, connection: redis.Redis, campaign_id: str) -> Admitted:
        raise NotImplementedError

    def recover(self, running: Running) -> None:
        """Whatever the library needs to take back the job of a worker that was killed (by default: time)."""

    # --- fixtures ---------------------------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def queued(cls, launch, profiles, supervisor, redis_server) -> Iterator[Running]:
        running = launch("queued", profiles["quick"], workers=2, backend=cls.backend)
        yield running
        stop_launched(supervisor, redis_server, running)

    def settings(self, running: Running) -> Settings:
        return Settings(redis_url=running.redis_url, queue_backend=self.backend)

    def backlog(self, running: Running) -> int:
        return int(running.redis().llen(queue_backend(self.backend).backlog_key(self.settings(running))))

    def deliver_generation_again(self, running: Running, campaign_id: str) -> None:
        """The campaign's generation, delivered once more: its first message, as the admission writes it."""
        admission = queue_backend(self.backend).admission(self.settings(running), (6, 2, 0))
        try:
            with running.redis().pipeline(transaction=True) as pipe:
                admission.buffer(pipe, campaign_id)  # type: ignore[arg-type]  # a sync pipeline buffers the same
                pipe.execute()
        finally:
            admission.close()

    # --- the contract -----------------------------------------------------------------------------------------

    def test_post_returns_202_with_location_and_workers_complete_it(self, queued):
        with queued.client() as client:
            response = client.post("/campaigns", json=valid_body(follow_ups=4))
            assert response.status_code == 202, response.text
            accepted = response.json()
            assert accepted["status"] == "accepted"
            assert response.headers["location"] == f"/campaigns/{accepted['id']}"
            campaign = wait_for_status(client, accepted["id"], {"completed", "failed"})
        assert campaign["status"] == "completed"
        assert campaign["accepted_at"] <= campaign["started_at"] <= campaign["completed_at"]
        assert campaign["attempts"] == 2
        assert campaign["follow_ups_scheduled"] == 4
        assert executions(queued, accepted["id"]) == {b"content": b"1", b"automation": b"1"}

    def test_every_worker_writes_its_ready_line_once(self, queued):
        for worker in queued.workers:
            lines = [line for line in log_of(worker).splitlines() if READY in line]
            assert len(lines) == 1, lines
            assert f"backend={self.backend}" in lines[0] and f"name={worker.argv[-1]}" in lines[0]

    def test_state_and_the_first_message_are_written_together(self, launch_for_test, profiles):
        idle = launch_for_test("queued", profiles["quick"], backend=self.backend)  # no workers: what admission wrote
        with idle.client() as client:
            campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
        connection = idle.redis()
        assert connection.hget(f"offpath:campaign:{campaign_id}", "status") == b"accepted"
        admitted = self.admitted(connection, campaign_id)
        assert (admitted.step, admitted.job_id, admitted.args) == ("generate", f"{campaign_id}-generation",
                                                                   [campaign_id])
        assert admitted.next_id in (None, f"{campaign_id}-automation")
        assert admitted.next_step == ("automate" if admitted.next_id else None)
        assert self.backlog(idle) == 1

    def test_a_refused_request_writes_no_message(self, launch_for_test, profiles):
        idle = launch_for_test("queued", profiles["quick"], backend=self.backend)
        with idle.client() as client:
            assert client.post("/campaigns", json=valid_body(follow_ups=-1)).status_code == 422
            first = client.post("/campaigns", json=valid_body(), headers={"Idempotency-Key": "one"})
            conflict = client.post("/campaigns", json=valid_body(name="other"), headers={"Idempotency-Key": "one"})
        assert (first.status_code, conflict.status_code) == (202, 409)
        assert self.backlog(idle) == 1

    def test_idempotent_repeat_does_the_work_once(self, queued):
        with queued.client() as client:
            first = client.post("/campaigns", json=valid_body(), headers={"Idempotency-Key": "once"}).json()
            wait_for_status(client, first["id"], {"completed"})
            repeat = client.post("/campaigns", json=valid_body(), headers={"Idempotency-Key": "once"})
        assert repeat.status_code == 202
        assert repeat.json() == {"id": first["id"], "status": "completed"}
        assert executions(queued, first["id"]) == {b"content": b"1", b"automation": b"1"}

    def test_the_backlog_bound_sheds_new_campaigns(self, launch_for_test, profiles):
        idle = launch_for_test("queued", profiles["quick"], backend=self.backend, env={"OFFPATH_MAX_BACKLOG": "3"})
        with idle.client() as client:
            answers = [client.post("/campaigns", json=valid_body(name=f"c{i}")).status_code for i in range(3)]
            time.sleep(0.3)  # the gauge samples every 100 ms
            shed = client.post("/campaigns", json=valid_body(name="one too many"))
        assert answers == [202, 202, 202]
        assert shed.status_code == 503 and "backlog of 3" in shed.json()["detail"]

    def test_failed_attempts_wait_their_backoff_then_the_campaign_fails_visibly(self, launch_for_test, profiles):
        broken = launch_for_test("queued", profiles["broken"], workers=1, backend=self.backend)
        with broken.client() as client:
            campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
            campaign = wait_for_status(client, campaign_id, {"completed", "failed"}, timeout_s=60)
        assert campaign["status"] == "failed" and "ProviderError" in campaign["last_error"]
        assert campaign["attempts"] == 3  # the first try and two retries (OFFPATH_RETRIES=2)
        # Two backoffs of 1 s (OFFPATH_RETRY_BACKOFF_S=1), each kept to within the library's own timing.
        assert 2.0 <= campaign["failed_at"] - campaign["started_at"] < 2.0 + 2 * self.retry_lateness_s + 0.3
        # Automation never ran after a failed generation.
        assert campaign["content_digest"] is None and executions(broken, campaign_id) == {}
        # Each expected failure is one line with the campaign, the attempt and when the next one is due.
        time.sleep(0.3)  # the worker's log is written as it goes; the last line may trail the state
        lines = [line for line in log_of(broken.workers[0]).splitlines() if campaign_id in line]
        assert [re.search(r"generation attempt (\d) of 3 failed", line).group(1) for line in lines] == ["1", "2", "3"]
        assert all(re.search(r"retry at \d\d:\d\d:\d\d\.\d{3} \(in 1 s\)$", line) for line in lines[:2]), lines
        assert lines[2].endswith("no retry left, campaign failed")
        assert "Traceback" not in log_of(broken.workers[0])

    def test_flaky_providers_cost_the_same_attempts_as_inline_and_each_retry_waits_its_backoff(self, launch_for_test):
        # The providers' dice are keyed by the request's body, step and attempt (services/campaign/work.py): the same
        # bodies meet the same failures in both designs, so every campaign must end as it does inline.
        bodies = [valid_body(name=f"flaky {i}", follow_ups=0) for i in range(12)]
        inline = launch_for_test("inline", "flaky")
        truth = [answer.json() for answer in post_all(inline.url, bodies)]
        truth = [(c["campaign"] if "campaign" in c else c) for c in truth]
        running = launch_for_test("queued", "flaky", workers=2, backend=self.backend)
        ids = [answer.json()["id"] for answer in post_all(running.url, bodies)]
        with running.client() as client:
            campaigns = [wait_for_status(client, i, {"completed", "failed"}, timeout_s=60) for i in ids]
        assert [(c["status"], c["attempts"]) for c in campaigns] == [(t["status"], t["attempts"]) for t in truth]
        assert {c["status"] for c in campaigns} == {"completed", "failed"}, "the dice must test both ends"
        for campaign in campaigns:
            ended = campaign["completed_at"] or campaign["failed_at"]
            steps_begun = 2 if campaign["content_digest"] else 1
            backoffs = campaign["attempts"] - steps_begun  # one backoff of 1 s before each retry
            assert backoffs <= ended - campaign["started_at"] < backoffs * (1 + self.retry_lateness_s) + 0.5, campaign

    def test_a_generation_delivered_again_repeats_no_side_effect(self, queued):
        with queued.client() as client:
            campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
            wait_for_status(client, campaign_id, {"completed"})
            self.deliver_generation_again(queued, campaign_id)
            deadline = time.monotonic() + 10
            while self.backlog(queued):
                assert time.monotonic() < deadline, "the generation delivered again was not taken"
                time.sleep(0.05)
            time.sleep(1.0)  # time enough for a wrongly repeated step, and for what it would chain, to run
            campaign = client.get(f"/campaigns/{campaign_id}").json()
        assert campaign["status"] == "completed" and campaign["attempts"] == 2
        assert executions(queued, campaign_id) == {b"content": b"1", b"automation": b"1"}

    def test_a_job_whose_worker_was_killed_runs_again_once(self, launch_for_test, profiles, supervisor):
        running = launch_for_test("queued", profiles["slow"], workers=1, backend=self.backend)  # generation waits 1 s
        with running.client() as client:
            campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
            wait_for_status(client, campaign_id, {"generating"}, timeout_s=10)
            time.sleep(0.2)
            os.killpg(running.workers[0].pid, signal.SIGKILL)  # mid-job: the provider wait has 1 s to go
            survivor = _one_more_worker(supervisor, running, self.backend)
            running.workers.append(survivor)  # stopped with the rest when the test ends
            self.recover(running)
            campaign = wait_for_status(client, campaign_id, {"completed", "failed"}, timeout_s=self.redelivery_s)
        assert campaign["status"] == "completed"
        assert campaign["attempts"] == 3  # generation twice (the killed attempt counts), automation once
        assert executions(running, campaign_id) == {b"content": b"1", b"automation": b"1"}
        assert survivor.alive()

    def test_sigterm_lets_the_job_in_progress_finish(self, launch_for_test, profiles):
        running = launch_for_test("queued", profiles["slow"], workers=1, backend=self.backend)
        worker = running.workers[0]
        with running.client() as client:
            campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
            wait_for_status(client, campaign_id, {"generating"}, timeout_s=10)
            os.kill(worker.pid, signal.SIGTERM)
            assert worker.process.wait(timeout=15) == 0
        assert executions(running, campaign_id) == {b"content": b"1"}  # generation finished, then the worker stopped

    def test_the_audit_finds_each_job_where_its_library_keeps_it(self, launch_for_test, profiles):
        running = launch_for_test("queued", profiles["slow"], workers=1, backend=self.backend)  # generation waits 1 s
        with running.client() as client:
            first = client.post("/campaigns", json=valid_body()).json()["id"]
            wait_for_status(client, first, {"generating"}, timeout_s=10)
            second = client.post("/campaigns", json=valid_body()).json()["id"]  # behind the first: one worker
            time.sleep(0.3)
        jobs = {generation_job_id(first), generation_job_id(second), generation_job_id("never-admitted")}
        places = queue_backend(self.backend).job_places(running.redis(), self.settings(running).queue_name, jobs)
        expected: dict[str, list[str]] = {}
        expected.setdefault(self.running_place, []).append(generation_job_id(first))
        expected.setdefault(self.waiting_place, []).append(generation_job_id(second))
        assert {place: sorted(ids) for place, ids in places.items()} == \
            {place: sorted(ids) for place, ids in expected.items()}

    def test_a_worker_stops_once_its_parent_is_gone(self, launch_for_test, profiles, tmp_path):
        idle = launch_for_test("queued", profiles["quick"], backend=self.backend)
        # A parent that starts the worker without the kernel's parent-death signal, waits until it is ready and exits:
        # the worker's own watch must notice.
        parent = subprocess.Popen(
            [sys.executable, "-c", _ORPHANING_PARENT, str(tmp_path / "orphan.log"),
             sys.executable, "-m", "services.queued.worker", "--name", "orphan"],
            cwd=project_root(), stdout=subprocess.PIPE, text=True,
            env={**os.environ, "REDIS_URL": idle.redis_url, "OFFPATH_QUEUE_BACKEND": self.backend,
                 "OFFPATH_PROFILE": profiles["quick"]})
        worker = int(parent.communicate(timeout=30)[0])
        try:
            assert not wait_gone({worker}, timeout_s=15), "the worker outlived its parent"
        finally:
            for pid in alive({worker}):
                os.kill(pid, signal.SIGKILL)


def _one_more_worker(supervisor: Supervisor, running: Running, backend: str) -> Managed:
    """One more worker on `running`'s Redis database, as `launch` starts them."""
    profile, env = running.workers[0].env["OFFPATH_PROFILE"], running.workers[0].env
    if backend == "rq":
        return start_workers(supervisor, 1, running.redis_url, profile, env=env)[0]
    return start_queue_workers(supervisor, 1, running.redis_url, profile, env)[0]


_ORPHANING_PARENT = """
import subprocess, sys, time
log, argv = sys.argv[1], sys.argv[2:]
child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
deadline = time.monotonic() + 30
while "offpath worker ready" not in open(log).read() and time.monotonic() < deadline:
    time.sleep(0.05)
print(child.pid)
"""
