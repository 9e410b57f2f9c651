"""The inline design: the request summarises the document and answers 200 with the summary.

    gunicorn --workers 4 --bind 127.0.0.1:8000 summaries.inline:app
"""

from __future__ import annotations

import time

from flask import Flask, jsonify, request

from summaries import store
from summaries.work import Document, InvalidDocument, ProviderError, summarize

# A provider failure is retried inside the request, quickly: someone is waiting for the answer.
ATTEMPTS = 3
BACKOFF_S = 0.1

app = Flask(__name__)


@app.post("/v1/summaries")
def create_summary():  # type: ignore[no-untyped-def]
    try:
        document = Document.parse(request.get_json(silent=True))
    except InvalidDocument as exc:
        return jsonify(error=str(exc)), 422
    for attempt in range(ATTEMPTS):
        try:
            summary = summarize(document, attempt)
            break
        except ProviderError as exc:
            if attempt == ATTEMPTS - 1:
                return jsonify(error=str(exc)), 502
            time.sleep(BACKOFF_S * 2**attempt)
    store.save_summary(summary)
    return jsonify(summary), 200


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    store.connection().ping()
    return "ok"
