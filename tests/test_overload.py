"""Overload: both designs shed load with a clear, fast answer instead of piling it up."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import valid_body


def test_queued_sheds_new_campaigns_with_503_when_the_backlog_is_at_its_bound(launch, profiles):
    service = launch("queued", profiles["quick"], env={"OFFPATH_MAX_BACKLOG": "3"})  # no workers: nothing drains
    with service.client() as client:
        accepted = [client.post("/campaigns", json=valid_body()).status_code for _ in range(3)]
        time.sleep(0.3)  # the depth is sampled every 100 ms
        before = service.data_keys()
        shed = client.post("/campaigns", json=valid_body())
    assert accepted == [202, 202, 202]
    assert shed.status_code == 503
    assert int(shed.headers["retry-after"]) >= 1
    assert "backlog" in shed.json()["detail"]
    assert service.data_keys() == before


def test_inline_sheds_past_its_in_flight_limit_at_once(launch, profiles):
    service = launch("inline", profiles["slow"], env={"OFFPATH_MAX_IN_FLIGHT": "2"})
    with service.client() as client, ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(client.post, "/campaigns", json=valid_body()) for _ in range(2)]
        time.sleep(0.3)
        started = time.monotonic()
        shed = client.post("/campaigns", json=valid_body())
        shed_after_s = time.monotonic() - started
        finished = [f.result().status_code for f in slow]
    assert shed.status_code == 503
    assert shed_after_s < 0.5
    assert finished == [201, 201]


def test_inline_gives_up_with_504_at_its_deadline_and_marks_the_campaign_failed(launch, profiles):
    service = launch("inline", profiles["slow"], env={"OFFPATH_REQUEST_DEADLINE_S": "0.3"})
    with service.client() as client:
        started = time.monotonic()
        response = client.post("/campaigns", json=valid_body())
        elapsed = time.monotonic() - started
        assert response.status_code == 504
        assert elapsed < 1.0
        campaign = client.get(f"/campaigns/{response.json()['id']}").json()
    assert campaign["status"] == "failed"
    assert "DeadlineExceeded" in campaign["last_error"]
