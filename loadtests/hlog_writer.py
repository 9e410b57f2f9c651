"""Writing HdrHistogram interval logs (`.hlog`) the standard way, one 1-second interval per line, over the results
format's range (foundation/format.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TextIO

from hdrh.histogram import HdrHistogram

from foundation.format import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def clamp_us(value_us: float) -> int:
    return min(max(int(value_us), LOWEST_US), HIGHEST_US)


class IntervalLog:
    """An open `.hlog`: the StartTime header at creation, then one line per interval written."""

    def __init__(self, path: Path, start_time_s: float):
        self.path = path
        self.start_time_s = start_time_s
        self._file: TextIO = open(path, "w")
        # We write the log ourselves, in the format HdrHistogram's Java and Python readers expect:
        # hdrhistogram 0.10.8's HistogramLogWriter raises in output_start_time (iso_format),
        # treats a 0.0 interval start as "absent", and floors the max column to whole seconds.
        iso = dt.datetime.fromtimestamp(start_time_s, tz=dt.UTC).isoformat()
        self._file.write("#[Histogram log format version 1.2]\n")
        self._file.write(f"#[StartTime: {start_time_s:.3f} (seconds since epoch), {iso}]\n")
        self._file.write(f"#[BaseTime: {start_time_s:.3f} (seconds since epoch)]\n")
        self._file.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')

    def write(self, histogram: HdrHistogram, interval_start_s: float, interval_end_s: float) -> None:
        """Interval times are absolute epoch seconds; the log stores them relative to StartTime."""
        start = interval_start_s - self.start_time_s
        length = interval_end_s - interval_start_s
        max_s = histogram.get_max_value() / 1_000_000 if histogram.get_total_count() else 0.0
        payload = histogram.encode().decode("ascii")
        self._file.write(f"{start:.3f},{length:.3f},{max_s:.6f},{payload}\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
