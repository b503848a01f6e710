"""Repeats of one full comparison, each beside the read floor of the same bytes.

The floor reads ph, rx and ox of both events (the arrays a comparison reads) once, in
the compiled nogil loop ``cyext.read_floor`` on the same threads. It is checked against
the same bytes read by one thread: a floor far slower than that timed an OpenMP stall
(a thread that lost its core), so it is measured again, and flagged if it stays slow. Each round times the
floor (the fastest of a few reads) and then the comparison, in one process, so their
ratio holds on a shared machine where the absolute seconds of different days do not.
"""
from __future__ import annotations

import gc
import hashlib
import json
import statistics
import time

import numpy as np

#: the per-photon arrays every engine reads (select also re-selects ps and rs)
FLOOR_ARRAYS = ("ph", "rx", "ox")
FLOOR_READS = 3  # floor reads per round at least, the fastest kept
FLOOR_MIN_SECONDS = 0.05  # ... and more reads until they took this long (tiny pairs read in a few ms)
MAX_FLOOR_READS = 100
#: a floor reading the bytes at less than this fraction of the one-thread reference rate
#: (the same bytes read by one thread, no OpenMP) timed a stall, not the bytes: it is
#: measured again, and flagged when it stays that slow (never used silently)
FLOOR_SUSPECT = 0.5
FLOOR_RETRIES = 3
REFERENCE_READS = 3
MAX_ROUNDS = 200


def floor_arrays(pair) -> list[np.ndarray]:
    """The memory maps of ph, rx and ox of A and B (what the floor reads, photon by photon)."""
    arrays = []
    for event in (pair.a, pair.b):
        for name in FLOOR_ARRAYS:
            arr = getattr(event, name)
            if not arr.flags.c_contiguous:
                raise ValueError(f"{event.path}/{name}.npy: the floor needs whole, C-contiguous arrays "
                                 "(no --msli step)")
            arrays.append(arr)
    return arrays


def read_floor(arrays, n_threads=None) -> float:
    """Seconds to read every byte of ``arrays`` once with ``cyext.read_floor``."""
    import cyext
    t0 = time.perf_counter()
    cyext.read_floor(arrays, n_threads)
    return time.perf_counter() - t0


def best_floor(arrays, n_threads=None, reads: int = FLOOR_READS, min_seconds: float = FLOOR_MIN_SECONDS) -> float:
    """The fastest of at least ``reads`` floor reads, and of more until ``min_seconds`` were
    spent: one OpenMP thread losing its core to another process can stall a short parallel
    loop by a whole scheduler slice, and the floor is meant as the cost of the bytes, not
    of such a stall."""
    best, spent, k = float("inf"), 0.0, 0
    while k < reads or (spent < min_seconds and k < MAX_FLOOR_READS):
        t = read_floor(arrays, n_threads)
        best, spent, k = min(best, t), spent + t, k + 1
    return best


def reference_read(arrays) -> float:
    """The same bytes read by one thread (no OpenMP region to stall): the rate the floor
    is checked against."""
    return best_floor(arrays, 1, reads=REFERENCE_READS)


def checked_floor(arrays, n_threads, reference_s: float) -> tuple[float, int, bool]:
    """One round's floor, measured again (up to FLOOR_RETRIES times) while it reads at
    less than FLOOR_SUSPECT of the one-thread reference rate; returns (seconds, retries,
    still suspect)."""
    floor = best_floor(arrays, n_threads)
    retries = 0
    while floor * FLOOR_SUSPECT > reference_s and retries < FLOOR_RETRIES:
        floor = min(floor, best_floor(arrays, n_threads, reads=2 * FLOOR_READS, min_seconds=4 * FLOOR_MIN_SECONDS))
        retries += 1
    return floor, retries, floor * FLOOR_SUSPECT > reference_s


def table_digest(result) -> str:
    """Hash of every number of the tables (not the engine name or its seconds): equal
    digests mean the engines produced the same tables."""
    data = result.to_dict()
    for key in ("engine", "seconds"):
        data.pop(key, None)
    text = json.dumps(data, sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _spread(values) -> dict:
    return {"min": min(values), "median": statistics.median(values)}


def keep_going(rounds: int, elapsed: float, repeats: int, min_seconds: float, max_seconds: float) -> bool:
    """Whether to time another round: at least ``repeats`` rounds and ``min_seconds``
    (short cases get more rounds, so their median means something), but not beyond
    ``max_seconds`` once two rounds are done (one, if only one was asked for)."""
    if rounds >= MAX_ROUNDS:
        return False
    if rounds >= min(2, repeats) and elapsed > max_seconds:
        return False
    return rounds < repeats or elapsed < min_seconds


def floor_check(floor_s, reference_s, retries, suspect_rounds, floor_bytes) -> dict:
    """The floor against the one-thread reference, for the results and the summary."""
    rate = floor_bytes / min(floor_s) / 1e9
    reference = floor_bytes / reference_s / 1e9
    median_suspect = statistics.median(floor_s) * FLOOR_SUSPECT > reference_s
    return {"reference_s": reference_s, "reference_gbps": reference, "floor_gbps": rate,
            "retries": retries, "suspect_rounds": suspect_rounds,
            # the ratios are not to be trusted when the median or the best floor stalled
            "suspect": bool(median_suspect or min(floor_s) * FLOOR_SUSPECT > reference_s),
            "rule": f"floor flagged when it reads below {FLOOR_SUSPECT:g}x the one-thread rate of the same bytes "
                    f"after {FLOOR_RETRIES} re-measurements"}


def time_comparison(pair, engine: str, *, repeats: int, min_seconds: float, max_seconds: float,
                    n_threads=None, run=None) -> dict:
    """A warm-up, then rounds of (floor, comparison) as :func:`keep_going` says.

    ``run`` (a callable returning an object with ``seconds``, ``rc`` and ``to_dict``, or
    None for ``photonab.compare`` with ``engine``) is what is timed: the peers use it.
    """
    from photonab.comparison import compare

    if run is None:
        def run():
            return compare(pair, engine, n_threads=n_threads, progress=False)

    arrays = floor_arrays(pair)
    read_floor(arrays, n_threads)  # warm-up: page cache, memory maps, imports, allocator
    reference_s = reference_read(arrays)
    result = run()
    digest, rc = table_digest(result), result.rc
    floor_s, engine_s, stages = [], [], []
    retries = suspect_rounds = 0
    started = time.perf_counter()
    while keep_going(len(engine_s), time.perf_counter() - started, repeats, min_seconds, max_seconds):
        del result
        gc.collect()
        floor, again, suspect = checked_floor(arrays, n_threads, reference_s)
        floor_s.append(floor)
        retries += again
        suspect_rounds += suspect
        t0 = time.perf_counter()
        result = run()
        engine_s.append(time.perf_counter() - t0)
        stages.append(result.seconds)
    reference_s = min(reference_s, reference_read(arrays))
    floor_bytes = sum(a.nbytes for a in arrays)
    by_median = statistics.median(engine_s) / statistics.median(floor_s)
    by_min = min(engine_s) / min(floor_s)
    return {
        "repeats": len(engine_s),
        "engine_s": engine_s,
        "floor_s": floor_s,
        "engine": _spread(engine_s),
        "floor": _spread(floor_s),
        # engine time / floor time, of the medians and of the minima
        "ratio": {"median": by_median, "min": by_min},
        "stages_median_s": {s: statistics.median(r[s] for r in stages) for s in stages[0]},
        "floor_reads_per_round": FLOOR_READS,
        "floor_bytes": floor_bytes,
        "floor_gbps": floor_bytes / min(floor_s) / 1e9,
        "floor_check": floor_check(floor_s, reference_s, retries, suspect_rounds, floor_bytes),
        "threads": _threads(n_threads),
        "tables_digest": digest,
        "rc": rc,
    }


def _threads(n_threads) -> int:
    import cyext
    return cyext.effective_threads(n_threads)
