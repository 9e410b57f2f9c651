"""The audit of any design through HTTP alone: every request its clients saw acknowledged must reach a final state that
the service itself reports. Never final is pending; unknown to the service (404) is lost. What HTTP cannot show — a
side effect run twice, a job stuck in a broker — is left to audits that can read the service's own state (offpath/
audit.py, for offpath's own designs)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from loadtests.client import status_url
from loadtests.contract import Contract, pointer

__all__ = ["HttpAudit", "audit_over_http"]

EXAMPLES = 5  # ids kept per kind of finding, for the report


@dataclass
class HttpAudit:
    """Where each acknowledged id stood when the audit ended (`settled_after_s`: when none was pending any more)."""

    acknowledged: int = 0
    completed: int = 0
    failed: int = 0
    pending: int = 0
    lost: int = 0
    unanswered: int = 0  # the status URL did not answer 200 or 404 (an error status, no answer)
    lost_ids: list[str] = field(default_factory=list)
    pending_ids: list[str] = field(default_factory=list)
    settled_after_s: float | None = None
    how: str = "HTTP: each acknowledged id's status URL, asked until final"

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.pending == 0 and self.unanswered == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _state(base_url: str, contract: Contract, request_id: str, timeout_s: float) -> tuple[str, str | None]:
    """('final-done' | 'final-failed' | 'pending' | 'lost' | 'unanswered', the state seen)."""
    check = contract.outcome.status
    assert check is not None
    url = base_url + status_url(contract, request_id)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                    timeout=timeout_s) as response:
            document = json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return ("lost" if error.code == 404 else "unanswered"), None
    except (OSError, ValueError):
        return "unanswered", None
    state = pointer(document, check.state)
    text = None if state is None else str(state)
    if text in check.done:
        return "final-done", text
    if text in check.failed:
        return "final-failed", text
    return "pending", text


def audit_over_http(base_url: str, contract: Contract, ids: Iterable[str], settle_timeout_s: float,
                    every_s: float = 1.0, request_timeout_s: float = 5.0) -> HttpAudit:
    """Ask each id's state until every one is final or lost, or `settle_timeout_s` has passed."""
    if contract.outcome.status is None or contract.outcome.status.url is None:
        raise ValueError("an audit through HTTP needs the contract's status url with {id}")
    todo = list(dict.fromkeys(ids))
    audit = HttpAudit(acknowledged=len(todo))
    started = time.monotonic()
    deadline = started + settle_timeout_s
    last: dict[str, str] = {}
    while todo:
        still: list[str] = []
        for request_id in todo:
            where, _ = _state(base_url, contract, request_id, request_timeout_s)
            last[request_id] = where
            if where in ("pending", "unanswered"):
                still.append(request_id)
        todo = still
        if not todo or time.monotonic() >= deadline:
            break
        time.sleep(every_s)
    if not todo:
        audit.settled_after_s = round(time.monotonic() - started, 2)
    for request_id, where in last.items():
        if where == "final-done":
            audit.completed += 1
        elif where == "final-failed":
            audit.failed += 1
        elif where == "lost":
            audit.lost += 1
            if len(audit.lost_ids) < EXAMPLES:
                audit.lost_ids.append(request_id)
        elif where == "pending":
            audit.pending += 1
            if len(audit.pending_ids) < EXAMPLES:
                audit.pending_ids.append(request_id)
        else:
            audit.unanswered += 1
    return audit
