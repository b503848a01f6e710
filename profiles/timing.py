"""Repeats of one full comparison, each beside the read floor of the same bytes.

The floor reads ph, rx and ox of both events (the arrays a comparison reads) once, in
the compiled nogil loop ``cyext.read_floor`` on the same threads. Each round times the
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
FLOOR_READS = 3  # floor reads per round, the fastest kept
MAX_ROUNDS = 200


def floor_words(pair) -> list[np.ndarray]:
    """Flat uint64 views of the memory maps of ph, rx and ox of A and B."""
    words = []
    for event in (pair.a, pair.b):
        for name in FLOOR_ARRAYS:
            arr = getattr(event, name)
            if not arr.flags.c_contiguous:
                raise ValueError(f"{event.path}/{name}.npy: the floor needs whole, C-contiguous arrays "
                                 "(no --msli step)")
            words.append(arr.reshape(-1).view(np.uint64))
    return words


def read_floor(words, n_threads=None) -> float:
    """Seconds to read every word once with ``cyext.read_floor``."""
    import cyext
    t0 = time.perf_counter()
    for w in words:
        cyext.read_floor(w, n_threads)
    return time.perf_counter() - t0


def best_floor(words, n_threads=None, reads: int = FLOOR_READS) -> float:
    """The fastest of ``reads`` floor reads: one OpenMP thread losing its core to another
    process can stall a short parallel loop by a whole scheduler slice, and the floor is
    meant as the cost of the bytes, not of such a stall."""
    return min(read_floor(words, n_threads) for _ in range(reads))


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


def time_comparison(pair, engine: str, *, repeats: int, min_seconds: float, max_seconds: float,
                    n_threads=None) -> dict:
    """A warm-up, then rounds of (floor, comparison) as :func:`keep_going` says."""
    from photonab.comparison import compare

    words = floor_words(pair)
    read_floor(words, n_threads)  # warm-up: page cache, memory maps, imports, allocator
    result = compare(pair, engine, n_threads=n_threads, progress=False)
    digest, rc = table_digest(result), result.rc
    floor_s, engine_s, stages = [], [], []
    started = time.perf_counter()
    while keep_going(len(engine_s), time.perf_counter() - started, repeats, min_seconds, max_seconds):
        del result
        gc.collect()
        floor_s.append(best_floor(words, n_threads))
        t0 = time.perf_counter()
        result = compare(pair, engine, n_threads=n_threads, progress=False)
        engine_s.append(time.perf_counter() - t0)
        stages.append(result.seconds)
    floor_bytes = sum(w.nbytes for w in words)
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
        "threads": _threads(n_threads),
        "tables_digest": digest,
        "rc": rc,
    }


def _threads(n_threads) -> int:
    import cyext
    return cyext.effective_threads(n_threads)
