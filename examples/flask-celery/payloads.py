"""The bodies offpath sends to both designs: `payloads:document` in experiment.toml. offpath calls it with a seeded
random.Random and the body's number, so every run sends the same documents in the same order."""

from __future__ import annotations

import random
from typing import Any

_WORDS = ("queue", "latency", "request", "worker", "summary", "provider", "customer", "invoice", "shipment", "report",
          "quarter", "revenue", "growth", "risk", "team", "release", "incident", "budget", "forecast", "contract",
          "the", "a", "of", "and", "to", "in", "for", "with", "on", "by")


def document(rng: random.Random, number: int) -> dict[str, Any]:
    """A document of 3 to 30 sentences, each of 6 to 20 words."""
    sentences = []
    for _ in range(rng.randint(3, 30)):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 20))]
        sentences.append(" ".join(words).capitalize() + ".")
    return {"document_id": f"doc-{number}-{rng.getrandbits(32):08x}", "title": f"Document {number}",
            "text": " ".join(sentences), "max_words": rng.choice((25, 50, 100))}
