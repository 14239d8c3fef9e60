"""Throughput and peak resident memory of a run, sampled cheaply once per chunk."""

from __future__ import annotations

import os
import resource
import time

import psutil


def lifetime_peak_rss_mb() -> float:
    """This process's peak RSS over its life so far, in MB: the kernel's high-water mark of this process image
    (``VmHWM``) where there is one. Not ``ru_maxrss`` first: on Linux it carries the parent's RSS at the fork into
    a spawned child, so a dask worker would report its client's size however little it held itself."""
    now = psutil.Process(os.getpid()).memory_info().rss / 1e6  # the mark lags the resident count by a few pages
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return max(now, int(line.split()[1]) * 1024 / 1e6)
    except OSError:
        pass
    return max(now, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6)


class EpochMeter:
    """Rows, wall time and the peak of RSS samples over one epoch."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self.start = time.perf_counter()
        self.rows = 0
        self.peak_rss_mb = self.sample()

    def sample(self) -> float:
        rss = self._process.memory_info().rss / 1e6
        if rss > getattr(self, "peak_rss_mb", 0.0):
            self.peak_rss_mb = rss
        return rss

    def add(self, rows: int) -> float:
        """Count rows done; return the current RSS in MB."""
        self.rows += rows
        return self.sample()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    @property
    def rows_per_s(self) -> float:
        return self.rows / max(self.seconds, 1e-9)
