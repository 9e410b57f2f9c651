"""The client follows any design's contract: what it records, and the one line it says when the service answers
outside the contract. Fast: the service is a script of answers (the real services are driven in test_polling.py and
the examples' end-to-end test)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from foundation.format import COMPLETION, FAILED_SEEN, OUTCOME_SEEN, QUEUE_WAIT, REQUEST, RUN_TIME, STATUS
from loadtests.client import ContractMismatch, Following, acknowledged_id, run_request
from loadtests.contract import Contract, campaign_contract, pointer, timestamp_s

pytestmark = pytest.mark.fast


@dataclass
class Answer:
    status_code: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        if self.body is None:
            raise ValueError("no body")
        return self.body

    @property
    def text(self) -> str:
        return json.dumps(self.body) if self.body is not None else ""


class Service:
    """Answers in order; records what was asked."""

    def __init__(self, *answers: Answer):
        self.answers = list(answers)
        self.asked: list[tuple[str, str, str]] = []

    def send(self, method: str, path: str, log_key: str, body: bytes | None, intended: float,
             pause_s: float | None) -> Answer:
        self.asked.append((method, path, log_key))
        return self.answers.pop(0)


def recorder() -> tuple[dict[str, list[float]], Any]:
    values: dict[str, list[float]] = {}
    return values, lambda name, value: values.setdefault(name, []).append(value)


ORDERS = Contract.model_validate({
    "request": {"method": "POST", "path": "/orders"},
    "outcome": {"finished": [200], "acknowledged": [202], "id": {"pointer": "/order_id"},
                "status": {"url": "/orders/{id}", "state": "/state", "done": ["SUCCESS"], "failed": ["FAILURE"]},
                "timestamps": {"accepted": "/queued_at", "started": "/started_at", "completed": "/done_at"}}})
FAST = Following(interval_s=0.001, mode="interval", timeout_s=5, service_timestamps=True)


def follow(contract: Contract, service: Service, following: Following = FAST) -> tuple[str, dict[str, list[float]]]:
    values, record = recorder()
    return run_request(contract, service.send, lambda s: True, record, b"{}", 0.0, following), values


def test_a_finished_answer_is_its_own_outcome():
    ended, values = follow(ORDERS, Service(Answer(200, {"order_id": "7"})))
    assert ended == "finished" and len(values[OUTCOME_SEEN]) == 1


def test_an_acknowledged_request_is_followed_to_its_final_state_with_the_service_timings():
    service = Service(Answer(202, {"order_id": "a/b"}), Answer(200, {"state": "PENDING"}),
                      Answer(200, {"state": "SUCCESS", "queued_at": "2026-12-06T10:00:00Z",
                                   "started_at": "2026-12-06T10:00:01.5Z", "done_at": 1796551203.0}))
    ended, values = follow(ORDERS, service)
    assert ended == "completed"
    assert service.asked == [("POST", "/orders", REQUEST), ("GET", "/orders/a%2Fb", STATUS),
                             ("GET", "/orders/a%2Fb", STATUS)]
    assert values[QUEUE_WAIT] == [1_500_000] and values[RUN_TIME] == [1_500_000] and values[COMPLETION] == [3_000_000]
    assert len(values[OUTCOME_SEEN]) == 1 and FAILED_SEEN not in values


def test_a_failed_final_state_is_recorded_apart():
    ended, values = follow(ORDERS, Service(Answer(202, {"order_id": "1"}), Answer(200, {"state": "FAILURE"})))
    assert ended == "failed" and FAILED_SEEN in values and OUTCOME_SEEN not in values


def test_no_service_timings_when_the_harness_takes_its_own_census():
    service = Service(Answer(202, {"order_id": "1"}), Answer(200, {"state": "SUCCESS", "queued_at": 1, "done_at": 2}))
    _, values = follow(ORDERS, service, Following(interval_s=0.001, timeout_s=5, service_timestamps=False))
    assert COMPLETION not in values


def test_not_following_ends_at_the_acknowledgement():
    ended, values = follow(ORDERS, Service(Answer(202, {"order_id": "1"})), Following(interval_s=0))
    assert ended == "accepted" and values == {}


@pytest.mark.parametrize(("answers", "says"), [
    ([Answer(201, {"ok": True})], "POST /orders answered 201, which its contract declares neither way (finished "
                                  "[200], acknowledged [202]): '{\"ok\": true}'"),
    ([Answer(202, {"id": "1"})], "POST /orders acknowledged with 202 but has no id at its body pointer '/order_id'"),
    ([Answer(202, {"order_id": "1"}), Answer(404, {"detail": "Not Found"})],
     "the status URL /orders/1 answered 404 for an id POST /orders had just acknowledged"),
    ([Answer(202, {"order_id": "1"}), Answer(200, {"status": "SUCCESS"})],
     "the status answer of /orders/1 has nothing at the state pointer '/state'"),
])
def test_an_answer_outside_the_contract_is_one_line_quoting_it(answers, says):
    with pytest.raises(ContractMismatch) as caught:
        follow(ORDERS, Service(*answers))
    assert str(caught.value).startswith(says) and "\n" not in str(caught.value)


def test_a_state_outside_the_declared_ones_breaks_the_contract_at_once():
    contract = campaign_contract()
    service = Service(Answer(202, {"id": "c1"}, {"Location": "/campaigns/c1"}), Answer(200, {"status": "done"}))
    with pytest.raises(ContractMismatch, match="shows the state 'done'"):
        follow(contract, service)


def test_an_error_status_is_an_error_not_a_mismatch():
    ended, _ = follow(ORDERS, Service(Answer(503, {"detail": "busy"})))
    assert ended == "error"


def test_the_acknowledged_id_is_read_where_the_contract_says():
    assert acknowledged_id(ORDERS, Answer(202, {"order_id": 42})) == "42"
    assert acknowledged_id(campaign_contract(), Answer(202, {}, {"Location": "/campaigns/c9"})) == "c9"
    assert acknowledged_id(campaign_contract(), Answer(201, {"id": "c8"})) == "c8"  # the finished kind: its body


def test_json_pointers_and_timestamps():
    document = {"a": {"b/c": [10, {"d": 2}]}}
    assert pointer(document, "/a/b~1c/1/d") == 2 and pointer(document, "/a/x") is None
    assert timestamp_s("1.5") == 1.5 and timestamp_s("2026-12-06T10:00:00+00:00") == 1796551200.0
    assert timestamp_s(True) is None and timestamp_s("soon") is None
