"""The slow work both designs do: summarise a document. A little CPU (tokenising, scoring sentences, a fingerprint) and
a call to a slow summary provider, simulated by a real wait drawn from a seeded lognormal, with a small chance that the
provider fails. The draws are seeded by the document and the attempt, so both designs see the same dice for the same
document."""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

# The provider's latency: lognormal by its median and 99th percentile; its failures, per attempt.
PROVIDER_MEDIAN_MS = 60.0
PROVIDER_P99_MS = 300.0
PROVIDER_FAILURE = 0.01
# The fingerprint's cost: about 3 ms of CPU on a 2 GHz core.
FINGERPRINT_ITERATIONS = 2500
MAX_TEXT_CHARS = 20_000
_Z99 = 2.3263  # the standard normal's 99th percentile


class InvalidDocument(ValueError):
    """The request body is not a document this service takes; the message says which field and why."""


class ProviderError(RuntimeError):
    """The summary provider failed this attempt; another attempt may succeed."""


@dataclass(frozen=True)
class Document:
    document_id: str
    title: str
    text: str
    max_words: int

    @classmethod
    def parse(cls, data: Any) -> Document:
        if not isinstance(data, dict):
            raise InvalidDocument("the body must be a JSON object")
        document_id, title, text, max_words = (data.get(k) for k in ("document_id", "title", "text", "max_words"))
        if not isinstance(document_id, str) or not 1 <= len(document_id) <= 100:
            raise InvalidDocument("document_id: a string of 1 to 100 characters")
        if not isinstance(title, str) or len(title) > 200:
            raise InvalidDocument("title: a string of at most 200 characters")
        if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT_CHARS:
            raise InvalidDocument(f"text: a string of 1 to {MAX_TEXT_CHARS} characters")
        if isinstance(max_words, bool) or not isinstance(max_words, int) or not 10 <= max_words <= 500:
            raise InvalidDocument("max_words: a whole number from 10 to 500")
        return cls(document_id, title, text, max_words)

    def to_dict(self) -> dict[str, Any]:
        return {"document_id": self.document_id, "title": self.title, "text": self.text, "max_words": self.max_words}


def summarize(document: Document, attempt: int = 0) -> dict[str, Any]:
    """The summary of `document`; ProviderError when the provider fails this attempt."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", document.text) if s.strip()]
    words = re.findall(r"[a-z']+", document.text.lower())
    frequency = Counter(words)
    ranked = sorted(sentences, key=lambda s: -sum(frequency[w] for w in re.findall(r"[a-z']+", s.lower())))
    fingerprint = hashlib.pbkdf2_hmac("sha256", document.text.encode(), document.document_id.encode(),
                                      FINGERPRINT_ITERATIONS).hex()
    _call_provider(document, attempt)
    summary_words: list[str] = []
    for sentence in ranked:
        summary_words += sentence.split()
        if len(summary_words) >= document.max_words:
            break
    return {"document_id": document.document_id, "summary": " ".join(summary_words[:document.max_words]),
            "words": len(words), "fingerprint": fingerprint[:16]}


def _call_provider(document: Document, attempt: int) -> None:
    rng = random.Random(f"{document.document_id}:{attempt}")
    sigma = math.log(PROVIDER_P99_MS / PROVIDER_MEDIAN_MS) / _Z99
    time.sleep(PROVIDER_MEDIAN_MS * math.exp(sigma * rng.gauss(0.0, 1.0)) / 1000)
    if rng.random() < PROVIDER_FAILURE:
        raise ProviderError(f"the summary provider failed for {document.document_id} (attempt {attempt + 1})")
