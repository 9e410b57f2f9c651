"""How often a sequential run reaches a wrong verdict: simulated A/A comparisons of P99 (both sides drawn from one
lognormal, 1-second interval histograms in memory), each looking after 2, 3 and 4 interleaved repetitions and
stopping at its first decided look — `better` or `worse` is wrong, `equivalent` right.

Three ways to look, on the same simulated values and the same bootstrap replicates: corrected (every look at
1 − 0.05/3, analysis/stats/verdict_settings.py's Sequential), naive (every look at 95%: peeking without correcting),
and a single look at 95% after 2 repetitions (no sequential option). Prints each rate, then
`sequential_false_decisions: R` (the corrected rate) last. tests/test_sequential.py runs the corrected half on 300
trials.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.stats.bootstrap import new_rng  # noqa: E402
from analysis.stats.compare import compare_logs  # noqa: E402
from analysis.stats.equivalence import BETTER, WORSE, decided  # noqa: E402
from analysis.stats.histogram import Intervals, index_for  # noqa: E402
from analysis.stats.verdict_settings import Sequential  # noqa: E402
from foundation.format import CREATE  # noqa: E402

FIRST, MOST = 2, 4


def repetition(rng: np.random.Generator, rate_per_s: int, seconds: int, sigma: float) -> Intervals:
    """One repetition's interval log: `seconds` 1-second histograms of `rate_per_s` lognormal values (median 20 ms)."""
    rows, indexes, counts = [], [], []
    for second in range(seconds):
        values = np.clip(rng.lognormal(np.log(20_000), sigma, rate_per_s), 1, 3_600_000_000).astype(np.int64)
        index, count = np.unique(index_for(values), return_counts=True)
        rows.append(np.full(len(index), second, dtype=np.int64))
        indexes.append(index)
        counts.append(count.astype(np.int64))
    return Intervals(np.arange(seconds, dtype=float), np.ones(seconds), np.concatenate(rows),
                     np.concatenate(indexes).astype(np.int64), np.concatenate(counts))


def verdict(a: list[Intervals], b: list[Intervals], seed: int, confidence: float) -> str:
    rows = compare_logs(a, b, "steady", CREATE, new_rng(seed), confidence=confidence, metrics=("p99_us",))
    return rows[0].verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=25, help="values a second (default 25)")
    parser.add_argument("--seconds", type=int, default=20, help="1-second intervals a repetition (default 20)")
    parser.add_argument("--sigma", type=float, default=0.3, help="the lognormal's sigma (default 0.3)")
    parser.add_argument("--seed", type=int, default=20261206)
    args = parser.parse_args()
    level = Sequential(max_repetitions=MOST, budget_s=1).level(FIRST)
    rng = np.random.default_rng(args.seed)
    wrong = {"corrected": 0, "naive": 0, "single": 0}
    started = time.monotonic()
    for trial in range(args.trials):
        a = [repetition(rng, args.rate, args.seconds, args.sigma) for _ in range(MOST)]
        b = [repetition(rng, args.rate, args.seconds, args.sigma) for _ in range(MOST)]
        open_ = {"corrected": True, "naive": True}
        for repetitions in range(FIRST, MOST + 1):
            seed = trial * 10 + repetitions
            for way, confidence in (("corrected", level), ("naive", 0.95)):
                if not open_[way]:
                    continue
                found = verdict(a[:repetitions], b[:repetitions], seed, confidence)
                if way == "naive" and repetitions == FIRST:
                    wrong["single"] += found in (BETTER, WORSE)
                if decided(found):
                    wrong[way] += found in (BETTER, WORSE)
                    open_[way] = False
    took = time.monotonic() - started
    print(f"{args.trials} A/A trials, {args.rate}/s x {args.seconds} s a repetition, looks after {FIRST}..{MOST} "
          f"repetitions ({took:.0f} s)")
    print(f"  corrected, {MOST - FIRST + 1} looks at {level:.2%}: {wrong['corrected']} wrong "
          f"({wrong['corrected'] / args.trials:.1%})")
    print(f"  naive, {MOST - FIRST + 1} looks at 95%: {wrong['naive']} wrong ({wrong['naive'] / args.trials:.1%})")
    print(f"  one look at 95%: {wrong['single']} wrong ({wrong['single'] / args.trials:.1%})")
    print(f"sequential_false_decisions: {wrong['corrected'] / args.trials:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
