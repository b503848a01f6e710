"""The aligned SEvt comparison (issue 12): compare_aligned beside a read floor of its bytes.

    python -m profiles.run aligned                          # 1M photons with records, cython
    python -m profiles.run aligned --sizes 1M,2M --engines cython,numpy --rounds 3 --repeats 4

Pairs: ``synthesize_sevt(aligned=True, records=True)`` of each --sizes photons (32 record
slots: about 4.2 GB of record.npy, photon.npy and seq.npy for A and B at 1M), made once
into the profiles cache (``profiles.sevt.sevt_pair(aligned=True)``: ``sevt-aligned-<size>-seed1``).

Every round runs, per engine and size, a fresh process (``python -m profiles.aligned
worker ...``): it opens the pair, imports everything and touches the pages (one floor and
one comparison, not timed), then --repeats times reads the six files with
``cyext.read_floor`` (the harness's floor: photon by photon, the rows 16 ahead prefetched)
and runs ``photonab.aligned.compare_aligned(pair, engine=...)`` (all tables). The summary
gives the medians (minima) of both and of their ratio per repeat, over every round; the
engines' aggregates must be the same bits (a digest per table), or the run fails.
Outputs (--out, default profiles/results/aligned-<date-time>/): results.json,
summary.txt. A benchmark, not a timed test: exit 4 only when a measurement failed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

from photonab.atomic import write_text

from .machine import describe, one_line, results_folder, run_json
from .pairs import default_cache, parse_sizes, size_label
from .sevt import sevt_pair

ENGINES = ("cython", "numpy")
EXIT_CASE_FAILED = 4
#: the arrays a comparison of all aligned tables reads, per event
FILES = ("record.npy", "photon.npy", "seq.npy")


def _digest(result) -> dict[str, str]:
    """sha256 of each table's aggregate arrays: the same bits from every engine."""
    out = {}
    for name, agg in result.aggregates.items():
        h = hashlib.sha256()
        for field in ("nitem", "ndisc", "nnan", "max", "min", "sum", "argmax"):
            h.update(getattr(agg, field).tobytes())
        out[name] = h.hexdigest()[:16]
    return out


def worker(a: Path, b: Path, engine: str, repeats: int, n_threads) -> dict:
    import gc

    import numpy as np

    import cyext
    from photonab import aligned
    from photonab.sevt import SEvtPair
    pair = SEvtPair.open(a, b)
    arrays = [np.load(Path(d) / f, mmap_mode="r") for d in (a, b) for f in FILES]
    cyext.read_floor(arrays, n_threads)
    result = aligned.compare_aligned(pair, engine=engine, n_threads=n_threads)  # warm-up
    floors, times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        cyext.read_floor(arrays, n_threads)
        floors.append(time.perf_counter() - t0)
        del result
        gc.collect()
        t0 = time.perf_counter()
        result = aligned.compare_aligned(pair, engine=engine, n_threads=n_threads)
        times.append(time.perf_counter() - t0)
    return {"engine": engine, "photons": pair.n, "bytes": int(sum(x.nbytes for x in arrays)),
            "floor": floors, "compare": times, "digest": _digest(result)}


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values)}


def summarize(results: dict) -> str:
    lines = ["Aligned SEvt comparison (compare_aligned, all tables) beside a read floor of its files",
             one_line(results["machine"]), f"command: {results['command']}", "",
             f"{'engine':8} {'size':>6} {'GB read':>8} {'compare s':>18} {'floor s':>18} {'x floor':>14}"]
    for m in results["measurements"]:
        c, f, r = m["compare"], m["floor"], m["ratio"]
        lines.append(f"{m['engine']:8} {size_label(m['photons']):>6} {m['bytes'] / 1e9:8.2f} "
                     f"{c['median']:9.3f} ({c['min']:.3f}) {f['median']:9.3f} ({f['min']:.3f}) "
                     f"{r['median']:6.2f} ({r['min']:.2f})")
    lines += ["", "medians (minima) over every round and repeat; x floor = compare / floor of the same repeat",
              "tables: " + ("the same bits from every engine" if results["tables_agree"] else "DIFFER between engines")]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m profiles.run aligned", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1M", help="photons per event, comma-separated (default 1M)")
    p.add_argument("--engines", default="cython", help=f"comma-separated from {', '.join(ENGINES)} (default cython)")
    p.add_argument("--rounds", type=int, default=3, help="fresh processes per engine and size (default 3)")
    p.add_argument("--repeats", type=int, default=4, help="timed comparisons per process (default 4)")
    p.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
    p.add_argument("--cache", type=Path, default=None, help="where the pairs are kept (default: the profiles cache)")
    p.add_argument("--out", type=Path, default=None, help="results folder")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "worker":
        a, b, engine, repeats, threads = argv[1:6]
        print(json.dumps(worker(Path(a), Path(b), engine, int(repeats), None if threads == "all" else int(threads))))
        return 0
    args = build_parser().parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise SystemExit(f"--engines: {', '.join(unknown) or 'none given'}; choose from {', '.join(ENGINES)}")
    if args.rounds < 1 or args.repeats < 1:
        raise SystemExit("--rounds and --repeats must be >= 1")
    sizes = parse_sizes(args.sizes)
    cache = args.cache or default_cache()
    out = results_folder(args.out, "aligned-")
    results = {"command": shlex.join(["python", "-m", "profiles.run", "aligned", *argv]), "machine": describe(),
               "measurements": [], "failed": []}
    threads = "all" if args.threads is None else str(args.threads)
    for photons in sizes:
        a, b = sevt_pair(photons, cache, aligned=True)
        runs = {e: [] for e in engines}
        for r in range(args.rounds):
            for engine in engines:  # interleaved: a slow spell of the machine hits every engine
                print(f"[round {r + 1}/{args.rounds}] {engine} {size_label(photons)}", flush=True)
                try:
                    runs[engine].append(run_json([sys.executable, "-m", "profiles.aligned", "worker", str(a), str(b),
                                                  engine, str(args.repeats), threads]))
                except RuntimeError as exc:
                    results["failed"].append({"engine": engine, "photons": photons, "error": str(exc)})
        for engine, done in runs.items():
            if not done:
                continue
            floors = [x for d in done for x in d["floor"]]
            times = [x for d in done for x in d["compare"]]
            results["measurements"].append({
                "engine": engine, "photons": photons, "bytes": done[0]["bytes"], "compare": _stats(times),
                "floor": _stats(floors), "ratio": _stats([t / f for t, f in zip(times, floors)]),
                "digest": done[0]["digest"], "digests_agree": all(d["digest"] == done[0]["digest"] for d in done)})
    by_size: dict = {}
    for m in results["measurements"]:
        by_size.setdefault(m["photons"], []).append(m["digest"])
    results["tables_agree"] = all(m["digests_agree"] for m in results["measurements"]) and all(
        all(d == ds[0] for d in ds) for ds in by_size.values())
    text = summarize(results)
    write_text(out / "results.json", json.dumps(results, indent=1))
    write_text(out / "summary.txt", text + "\n")
    print(text)
    print(f"written to {out}: results.json, summary.txt")
    return EXIT_CASE_FAILED if results["failed"] or not results["tables_agree"] else 0


if __name__ == "__main__":
    sys.exit(main())
