"""Memory of one comparison, measured honestly (in a fresh process, inputs already open).

The RSS of a run over memory-mapped inputs counts every input page it touched, so the
RSS that memory_profiler samples makes a one-pass engine look as big as its input.
Beside it this module reports, as increases over the baseline taken just before the run:

- heap: the tracemalloc peak (Python objects and numpy's array data, which numpy
  reports to tracemalloc);
- anon: the peak anonymous RSS (``RssAnon``), sampled from ``/proc/self/status`` by a
  background thread every few milliseconds and bounded below by the kernel's own
  high-water mark (``VmHWM`` reset before the run, minus the file-backed pages);
- file: the file-backed pages touched (``RssFile``): the input read through the maps.
"""
from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

MB = 1e6
_STATUS = Path("/proc/self/status")
_FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")


def read_status() -> dict[str, int]:
    """The memory fields of ``/proc/self/status`` in bytes (empty where unavailable)."""
    values = {}
    try:
        text = _STATUS.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in _FIELDS:
            values[name] = int(rest.split()[0]) * 1024  # kB
    return values


def reset_high_water_mark() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False when not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class StatusSampler(threading.Thread):
    """Samples RssAnon and RssFile every ``interval`` seconds and keeps their peaks."""

    def __init__(self, interval: float = 0.002):
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self.samples = 0
        self._stop_event = threading.Event()

    def sample(self):
        status = read_status()
        for name in self.peak:
            self.peak[name] = max(self.peak[name], status.get(name, 0))
        self.samples += 1

    def run(self):
        while not self._stop_event.is_set():
            self.sample()
            time.sleep(self.interval)

    def stop(self) -> dict[str, int]:
        self._stop_event.set()
        self.join()
        self.sample()  # the end state, in case the peak fell between two samples
        return self.peak


def measure(run, *, sample_interval: float = 0.002, mprof_interval: float = 0.01) -> dict:
    """Run ``run()`` once and return its memory numbers (MB = 1e6 bytes).

    memory_profiler samples the RSS from a forked monitor process; tracemalloc and the
    status sampler are started inside the measured call, after that fork.
    """
    from memory_profiler import memory_usage

    base = read_status()
    inside = {}

    def traced():
        hwm_reset = reset_high_water_mark()
        sampler = StatusSampler(sample_interval)
        tracemalloc.start()
        sampler.start()
        t0 = time.perf_counter()
        try:
            run()
        finally:
            seconds = time.perf_counter() - t0
            _, heap_peak = tracemalloc.get_traced_memory()
            overhead = tracemalloc.get_tracemalloc_memory()
            tracemalloc.stop()
            peak = sampler.stop()
            inside.update(heap_peak=heap_peak, tracemalloc_overhead=overhead, peak=peak, end=read_status(),
                          hwm_reset=hwm_reset, samples=sampler.samples, seconds=seconds)

    rss_peak_mib = memory_usage((traced, (), {}), interval=mprof_interval, max_usage=True,
                                include_children=False, max_iterations=1)
    end = inside["end"]
    anon_sampled = inside["peak"]["RssAnon"]
    # at the moment of the high-water mark the file-backed part was at most its final
    # value, unless the kernel reclaimed file pages during the run (an input bigger than
    # RAM): then that bound says nothing and the sampled RssAnon stands alone
    file_shrank = inside["peak"]["RssFile"] > end.get("RssFile", 0)
    anon_from_hwm = (end.get("VmHWM", 0) - end.get("RssFile", 0) - end.get("RssShmem", 0)
                     if inside["hwm_reset"] and not file_shrank else 0)
    anon_peak = max(anon_sampled, anon_from_hwm)
    file_peak = max(inside["peak"]["RssFile"], end.get("RssFile", 0))
    return {
        "seconds": inside["seconds"],
        "heap_peak_mb": inside["heap_peak"] / MB,
        "anon_peak_mb": (anon_peak - base.get("RssAnon", 0)) / MB,
        "anon_peak_sampled_mb": (anon_sampled - base.get("RssAnon", 0)) / MB,
        "anon_peak_hwm_mb": (anon_from_hwm - base.get("RssAnon", 0)) / MB if inside["hwm_reset"] else None,
        "file_touched_mb": (file_peak - base.get("RssFile", 0)) / MB,
        "rss_peak_mprof_mb": rss_peak_mib * 2**20 / MB,  # memory_profiler reports MiB
        "baseline_mb": {"rss": base.get("VmRSS", 0) / MB, "anon": base.get("RssAnon", 0) / MB,
                        "file": base.get("RssFile", 0) / MB},
        "tracemalloc_overhead_mb": inside["tracemalloc_overhead"] / MB,
        "anon_samples": inside["samples"],
        "hwm_reset": inside["hwm_reset"],
    }
