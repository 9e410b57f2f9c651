"""The audit through HTTP alone, on offpath's own queued service as any design would be audited: every acknowledged id
reaches a final state the service reports; an id the service does not know is lost."""

from __future__ import annotations

from loadtests.contract import campaign_contract
from offpath.http_audit import audit_over_http
from tests.conftest import valid_body


def test_every_acknowledged_id_is_followed_to_its_final_state_and_an_unknown_one_is_lost(launch, profiles):
    service = launch("queued", profiles["quick"], workers=2)
    with service.client() as client:
        ids = [client.post("/campaigns", json=valid_body(name=f"audit {n}")).json()["id"] for n in range(8)]
    audit = audit_over_http(service.url, campaign_contract(), [*ids, "never-acknowledged"], settle_timeout_s=30,
                            every_s=0.2)
    assert (audit.acknowledged, audit.completed, audit.lost, audit.pending) == (9, 8, 1, 0)
    assert audit.lost_ids == ["never-acknowledged"] and not audit.ok


def test_work_that_never_finishes_is_pending_when_the_audit_gives_up(launch, profiles):
    service = launch("queued", profiles["quick"], workers=0)  # nobody works: acknowledged, never final
    with service.client() as client:
        ids = [client.post("/campaigns", json=valid_body(name=f"stuck {n}")).json()["id"] for n in range(3)]
    audit = audit_over_http(service.url, campaign_contract(), ids, settle_timeout_s=1.0, every_s=0.2)
    assert (audit.pending, audit.completed, audit.settled_after_s) == (3, 0, None)
