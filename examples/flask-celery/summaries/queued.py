"""The queued design: the request validates the document, records the task in Redis, enqueues it on Celery and answers
202 with its id; `GET /v1/tasks/<id>` says where it stands.

    gunicorn --workers 4 --bind 127.0.0.1:8000 summaries.queued:app

The record and the message are two writes (Redis, then Celery's broker): a crash between them leaves a record that
stays PENDING with no message to run it. Celery cannot join the app's Redis transaction; the README says so.
"""

from __future__ import annotations

import json
import uuid

from flask import Flask, jsonify, request

from summaries import store
from summaries.tasks import summarize_task
from summaries.work import Document, InvalidDocument

app = Flask(__name__)


@app.post("/v1/summaries")
def create_summary():  # type: ignore[no-untyped-def]
    try:
        document = Document.parse(request.get_json(silent=True))
    except InvalidDocument as exc:
        return jsonify(error=str(exc)), 422
    task_id = uuid.uuid4().hex
    store.create_task(task_id, document.to_dict())
    summarize_task.apply_async(args=[task_id], task_id=task_id)
    return jsonify(task_id=task_id), 202


@app.get("/v1/tasks/<task_id>")
def task_status(task_id: str):  # type: ignore[no-untyped-def]
    record = store.load_task(task_id)
    if record is None:
        return jsonify(error=f"no task {task_id}"), 404
    answer: dict[str, object] = {key: record.get(key) for key in ("state", "queued_at", "started_at", "finished_at")}
    if "result" in record:
        answer["result"] = json.loads(record["result"])
    if "error" in record:
        answer["error"] = record["error"]
    return jsonify(answer)


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    store.connection().ping()
    return "ok"
