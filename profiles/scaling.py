"""Local scaling of the dask engine: 1 vs 2 (or more) worker processes on one machine.

    python -m profiles.scaling --size 1M --workers 1,2

Times the full comparison with the dask engine on local clusters of each size (one
thread per worker), beside the cython engine in this process, and checks that every
run's tables equal the cython engine's.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from photonab import EventPair, compare
from photonab.engines.compiled import CythonEngine
from photonab.engines.distributed import DaskEngine, usable_cores

from photonab.atomic import write_text

from .pairs import cached_pair, default_cache, parse_count


def measure_scaling(a, b, workers=(1, 2), *, msli=None, repeat: int = 5, chunk: int = 1 << 20,
                    n_threads: int = 1, log=print) -> dict:
    """Seconds of a full comparison of A and B (histories + all four tables) with the dask
    engine on local clusters of ``workers`` worker processes (one thread each,
    ``n_threads`` kernel threads per task), and with the cython engine in this process
    on ``n_threads`` and on ``max(workers) * n_threads`` threads for reference.

    Every setting runs once to warm up (worker start, imports, page cache), then
    ``repeat`` times; ``min`` is the number to quote on a shared machine. Every run's
    tables are checked against the cython engine's.
    """

    pair = EventPair.open(a, b, msli)
    reference = compare(pair, CythonEngine(n_threads=n_threads))

    def timed(engine) -> dict:
        compare(pair, engine)  # warm-up
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = compare(pair, engine)
            runs.append({"total": time.perf_counter() - t0, **result.seconds})
            if not result.same_tables(reference):
                raise RuntimeError(f"{engine!r} gave a different table from the cython engine")
        best = {k: min(r[k] for r in runs) for k in runs[0]}
        return {"min": best["total"], "min_phase": best, "runs": [r["total"] for r in runs]}

    import distributed
    out = {"photons": pair.n, "chunk": chunk, "n_threads": n_threads, "repeat": repeat, "cores": usable_cores(),
           "versions": {"python": platform.python_version(), "numpy": np.__version__,
                        "distributed": distributed.__version__},
           "cython": {}, "dask": {}}
    for threads in sorted({n_threads, max(workers) * n_threads}):
        out["cython"][threads] = timed(CythonEngine(n_threads=threads))
        log(f"cython, {threads} thread(s): {out['cython'][threads]['min']:.3f} s")
    for w in workers:
        with DaskEngine(n_threads=n_threads, n_workers=w, chunk=chunk) as engine:
            out["dask"][w] = timed(engine)
            out["dask"][w]["tasks"] = len(engine.chunks(pair.n))
        speedup = out["dask"][workers[0]]["min"] / out["dask"][w]["min"]
        log(f"dask, {w} worker(s), {out['dask'][w]['tasks']} tasks per phase: {out['dask'][w]['min']:.3f} s "
            f"(x{speedup:.2f} vs {workers[0]} worker(s))")
    return out


def main(argv=None) -> int:
    """``python -m profiles.scaling --size 1M --workers 1,2``."""
    p = argparse.ArgumentParser(prog="python -m profiles.scaling", description=measure_scaling.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", nargs="?", help="event A folder (default: the harness's synthetic pair of --size)")
    p.add_argument("b", nargs="?")
    p.add_argument("--size", type=parse_count, default=1_000_000, help="synthetic pair size (default 1M)")
    p.add_argument("--cache", type=Path, default=None, help="pair cache (default the harness's)")
    p.add_argument("--workers", default="1,2", help="local cluster sizes (default 1,2)")
    p.add_argument("--msli", default=None)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--chunk", type=int, default=1 << 20)
    p.add_argument("--threads", type=int, default=1, help="kernel threads per task (default 1)")
    p.add_argument("--json", default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    if args.a is None:
        pair = cached_pair(args.size, args.cache or default_cache())
        args.a, args.b = pair.a, pair.b
    out = measure_scaling(args.a, args.b, tuple(int(w) for w in args.workers.split(",")), msli=args.msli,
                          repeat=args.repeat, chunk=args.chunk, n_threads=args.threads)
    if args.json:
        write_text(args.json, json.dumps(out, indent=1))
    return 0




if __name__ == "__main__":
    sys.exit(main())
