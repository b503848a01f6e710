"""The SEvt history comparison (QCF, issue 10): photonab against the old way, qcf.py.

    python -m profiles.run sevt                              # 1M and 5M; the old way at 10k, 100k, 1M
    python -m profiles.run sevt --sizes 1M,5M --old-sizes 10k,100k,1M,5M  # the old way measured at 5M too
    python -m profiles.run sevt --quick                      # smoke run: 20k (old way 5k, 10k), every report
    python -m profiles.run sevt --distinct --sizes 1M --old-sizes 10k,100k   # every photon its own history

Methods, each measured in a fresh process (``python -m profiles.sevt case ...``) with the
pair opened (memory-mapped) and everything imported first:

  cython   photonab.qcf.compare_histories(pair): the compiled 128-bit history kernel
  numpy    the same with engine="numpy" (a stable lexsort of the uint64 words); identical table
  qcf.py   photonab.qcf_reference: a faithful re-implementation of Opticks' ana/qcf.py
           (|S96 label strings per photon, np.unique per side, the union, the
           per-union-row loop with np.where, float32 chi-square), labels included

cython and numpy run at --sizes and --old-sizes (so that all three are compared, table
and time, at the old sizes); qcf.py at --old-sizes only.

Every method is timed beside a read floor of the seq.npy bytes of A and B (the fastest of
a few reads with the compiled nogil loop cyext.read_floor, checked against one thread, as
profiles.timing does for the 2019 cases), profiled with cProfile (``cprofile/<method>-<size>``
.prof and .txt) and measured for memory (tracemalloc heap peak, peak RssAnon, file-backed
pages: profiles.memory). Before timing, each method's table is reduced to a digest of what
QCF defines (label, a, b, first index in A and B of every row; the max(a, b) sequence of
the row order; c2n; the bzero and azero labels): the run says whether they agree.

The old way is O(N log N) in 96-byte string compares plus the per-row loop, so it is
measured at --old-sizes only; its time and memory at --sizes are EXTRAPOLATED from a fit
t = c N^k over the two largest sizes measured (printed and stored as extrapolated, never as
measured; its exponent grows with N, so a fit over small sizes alone underestimates).

The pairs are unaligned synthetic SEvt pairs (``synthesize_sevt(aligned=False,
records=False)``: seq.npy, photon.npy, hit.npy, no record.npy), generated once per size
into the harness's cache. When ``python -m photonab compare A000 B000 --tables history``
works on SEvt folders, the whole command is timed too (else reported as pending).

Outputs (--out, default profiles/results/sevt-<date-time>/): results.json, summary.txt,
sevt.png (time and anonymous memory against photons), cprofile/. Targets (issue 10): the
5M history comparison in-process <= 0.1 s, the CLI <= 0.5 s, anonymous memory flat in N.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from photonab.atomic import atomic_path, write_text

from .machine import REPO, choice_list, cyext_build, describe, one_line, results_folder, run_json
from .pairs import cached_folder, default_cache, generator_digest, parse_count, parse_sizes, size_label

METHODS = ("cython", "numpy", "qcf.py")
OLD = "qcf.py"
KINDS = ("timing", "memory", "cprofile")
DEFAULT_SIZES, DEFAULT_OLD_SIZES = "1M,5M", "10k,100k,1M"
#: the old way's power law is fitted over its largest FIT_SIZES sizes: its exponent grows with N
#: (96-byte string sorts leave the caches), so a fit over small sizes underestimates large ones
FIT_SIZES = 2
QUICK_SIZES, QUICK_OLD_SIZES = "20k", "5k,10k"
SEED = 1
#: --distinct: the step counts of the random histories (first, last)
DISTINCT_STEPS = (17, 32)
#: bytes on disk per photon of one pair without records (photon 64, seq 32, hits ~ 10% x 64; both sides)
PAIR_BYTES_PER_PHOTON = 2 * 110
#: ... and what the records add (32 slots of 64 bytes, both sides): an aligned pair has them
RECORD_BYTES_PER_PHOTON = 2 * 32 * 64
#: targets of issue 10
TARGET_SIZE = 5_000_000
IN_PROCESS_LIMIT_S = 0.1
CLI_LIMIT_S = 0.5
FLAT_SLOPE, FLAT_NOISE_MB = 0.1, 8.0  # as profiles.targets: "independent of N"
CLI_REPEATS = 3
#: Opticks' own numbers for 5M photons (docs/sevt.md; issue 10)
OPTICKS_5M = "Opticks, 5M photons: qcf.py 1541 s, with an f2py kernel 641 s, C++ sseq_index about 2.9 s"


# ---------------------------------------------------------------- pairs


def _recipe(photons: int, distinct: bool = False, aligned: bool = False) -> dict:
    """What a cached pair depends on; ``aligned`` pairs have records (profiles.aligned)."""
    recipe = {"photons": photons, "seed": SEED, "layout": "sevt", "aligned": aligned, "records": aligned,
              "synth_sha256": generator_digest()}
    return recipe | ({"distinct": list(DISTINCT_STEPS)} if distinct else {})  # as JSON reads it back


def pair_root(photons: int, cache, distinct: bool = False, aligned: bool = False) -> Path:
    return Path(cache) / (f"sevt{'-aligned' if aligned else ''}-{size_label(photons)}"
                          f"{'-distinct' if distinct else ''}-seed{SEED}")


def distinct_histories(folder: Path, rng) -> None:
    """Replace every history of ``folder``/seq.npy by a random one of DISTINCT_STEPS steps
    (the era's TO first, then flags 1..15): nearly every photon its own 128-bit history, as
    the long histories of a real detector make many (the counter's and the sorts' worst case)."""
    from photonab import seqhis
    from photonab.flags import CURRENT_ERA
    path = folder / "seq.npy"
    seq = np.load(path)
    n, top = len(seq), seqhis.MAX_STEPS_128
    nib = rng.integers(1, 16, (n, top), dtype=np.uint64)
    nib[:, 0] = seqhis.flag_table(CURRENT_ERA).nibble["TO"]
    nib[np.arange(top)[None, :] >= rng.integers(*DISTINCT_STEPS, n, endpoint=True)[:, None]] = 0
    shifts = np.uint64(4) * np.arange(16, dtype=np.uint64)
    seq[:, 0, 0] = np.bitwise_or.reduce(nib[:, :16] << shifts, axis=1)
    seq[:, 0, 1] = np.bitwise_or.reduce(nib[:, 16:] << shifts, axis=1)
    np.save(path, seq)


def sevt_pair(photons: int, cache, *, regenerate: bool = False, progress: bool = True,
              distinct: bool = False, aligned: bool = False) -> tuple[Path, Path]:
    """The (A000, B000) folders of a cached SEvt pair, synthesized when missing or stale
    (profiles.pairs.cached_folder): unaligned without records, or ``aligned`` with them;
    with ``distinct``, its histories replaced by random ones (distinct_histories)."""
    from photonab.synth.sevt import event_folders, synthesize_sevt

    def make(root):
        synthesize_sevt(root, photons, seed=SEED, aligned=aligned, records=aligned, progress=progress)
        if distinct:
            rng = np.random.default_rng([SEED, photons])
            for folder in event_folders(root):
                distinct_histories(folder, rng)

    root = pair_root(photons, cache, distinct, aligned)
    need = (PAIR_BYTES_PER_PHOTON + (RECORD_BYTES_PER_PHOTON if aligned else 0)) * photons
    cached_folder(root, _recipe(photons, distinct, aligned), make, regenerate=regenerate, need_bytes=need)
    return event_folders(root)


# ---------------------------------------------------------------- one case (in its own process)


def table_digest(labels, a, b, first_a, first_b, c2n, bzero, azero) -> tuple[str, dict]:
    """Digest of what QCF defines, independent of the order of tied rows: every row's
    (label, a, b, first_a, first_b) sorted by label, the max(a, b) of the row order,
    c2n, and the bzero/azero label sets."""
    a, b, first_a, first_b = (list(map(int, x)) for x in (a, b, first_a, first_b))
    rows = sorted(zip(labels, a, b, first_a, first_b))
    data = {"rows": rows, "max_order": [max(x, y) for x, y in zip(a, b)], "c2n": int(c2n),
            "bzero": sorted(bzero), "azero": sorted(azero)}
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16], {"histories": len(rows), "c2n": int(c2n),
                                                             "bzero": len(bzero), "azero": len(azero)}


def _digest(method: str, result) -> tuple[str, dict]:
    if method == OLD:
        labels = result.labels()
        abo = result.abo
        info = table_digest(labels, abo[:, 2, 0], abo[:, 2, 1], abo[:, 1, 0], abo[:, 1, 1], result.c2n,
                            [labels[i] for i in result.bzero], [labels[i] for i in result.azero])
        return info[0], {**info[1], "c2sum": float(result.c2sum), "c2sum_float32": True}
    labels = result.labels
    info = table_digest(labels, result.a, result.b, result.first_a, result.first_b, result.c2n,
                        [labels[i] for i in result.bzero], [labels[i] for i in result.azero])
    return info[0], {**info[1], "c2sum": result.c2sum, "c2sum_float32": False}


def prepare(method: str, a_dir, b_dir, n_threads=None):
    """Open the pair, import everything, and return (pair, run): run() is what is measured."""
    import scipy.special  # noqa: F401
    import scipy.stats  # noqa: F401  (qcf.py's p-value)
    from photonab import qcf, qcf_reference
    from photonab.engines.compiled import import_cyext
    from photonab.sevt import SEvtPair

    import_cyext()
    pair = SEvtPair.open(a_dir, b_dir, need=("seq",))
    if method in ("cython", "numpy"):
        def run():
            return qcf.compare_histories(pair, n_threads, engine=method)
    elif method == OLD:
        def run():
            n = pair.n  # the old way: |S96 labels of both sides (ht.seqhis), then QCF
            return qcf_reference.qcf_of_seqhis(pair.a.seqhis[:n], pair.b.seqhis[:n], pair.era)
    else:
        raise SystemExit(f"unknown method {method!r}; methods are {', '.join(METHODS)}")
    return pair, run


def seq_arrays(pair):
    """The memory maps of seq.npy of A and B (the bytes a history comparison reads)."""
    arrays = []
    for event in (pair.a, pair.b):
        seq = event.seq
        if not seq.flags.c_contiguous:
            raise ValueError(f"{event.path}/seq.npy: the floor needs the whole C-contiguous array")
        arrays.append(seq)
    return arrays


def time_method(pair, run, method, *, repeats, min_seconds, max_seconds, n_threads=None) -> dict:
    """A warm-up, then rounds of (floor of the seq.npy bytes, the comparison), as profiles.timing."""
    import gc

    from .timing import checked_floor, floor_check, keep_going, read_floor, reference_read

    arrays = seq_arrays(pair)
    read_floor(arrays, n_threads)
    reference_s = reference_read(arrays)
    result = run()
    digest, info = _digest(method, result)
    floor_s, method_s = [], []
    retries = suspect_rounds = 0
    started = time.perf_counter()
    while keep_going(len(method_s), time.perf_counter() - started, repeats, min_seconds, max_seconds):
        del result
        gc.collect()
        floor, again, suspect = checked_floor(arrays, n_threads, reference_s)
        floor_s.append(floor)
        retries += again
        suspect_rounds += suspect
        t0 = time.perf_counter()
        result = run()
        method_s.append(time.perf_counter() - t0)
    reference_s = min(reference_s, reference_read(arrays))
    floor_bytes = sum(a.nbytes for a in arrays)
    import cyext
    return {"repeats": len(method_s), "engine_s": method_s, "floor_s": floor_s,
            "engine": {"min": min(method_s), "median": statistics.median(method_s)},
            "floor": {"min": min(floor_s), "median": statistics.median(floor_s)},
            "ratio": {"median": statistics.median(method_s) / statistics.median(floor_s),
                      "min": min(method_s) / min(floor_s)},
            "floor_bytes": floor_bytes, "floor_gbps": floor_bytes / min(floor_s) / 1e9,
            "floor_check": floor_check(floor_s, reference_s, retries, suspect_rounds, floor_bytes),
            "threads": cyext.effective_threads(n_threads), "tables_digest": digest, "table": info}


def case(args) -> dict:
    pair, run = prepare(args.method, args.a, args.b, args.threads)
    title = f"{args.kind} of {args.method}, SEvt history comparison of {pair.n} photons: {args.a} vs {args.b}"
    if args.kind == "timing":
        return time_method(pair, run, args.method, repeats=args.repeats, min_seconds=args.min_seconds,
                           max_seconds=args.max_seconds, n_threads=args.threads)
    from .timing import read_floor
    read_floor(seq_arrays(pair), args.threads)  # map the input pages in, not warming the method
    if args.kind == "memory":
        from .memory import measure
        return measure(run)
    if args.prefix is None:
        raise SystemExit("cprofile needs --prefix")
    args.prefix.parent.mkdir(parents=True, exist_ok=True)
    from .callprofile import profile
    out = profile(run, args.prefix, title)
    out.pop("selection", None)
    return out


def case_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m profiles.sevt case",
                                description="one measurement of one method in this process; JSON on stdout")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--a", required=True, type=Path)
    p.add_argument("--b", required=True, type=Path)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-seconds", type=float, default=0.0)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--prefix", type=Path)
    return p


# ---------------------------------------------------------------- the run


def _counts(text: str) -> list[int]:
    return parse_sizes(text, "1M,5M")


def _methods(text: str) -> list[str]:
    return choice_list(text, METHODS, "methods")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m profiles.run sevt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=_counts, default=None,
                   help=f"photons per event for cython and numpy (default {DEFAULT_SIZES}; --quick {QUICK_SIZES})")
    p.add_argument("--old-sizes", type=_counts, default=None,
                   help=f"photons per event at which the old way (qcf.py) is measured; its time at --sizes is "
                        f"extrapolated from the {FIT_SIZES} largest (default {DEFAULT_OLD_SIZES}; "
                        f"--quick {QUICK_OLD_SIZES})")
    p.add_argument("--methods", type=_methods, default=list(METHODS),
                   help="methods, comma-separated (default cython,numpy,qcf.py)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, one repeat, every report")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds after the warm-up (default 5; --quick 1)")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="keep timing a short case until this long (default 3; --quick 0)")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="stop timing a case after this long, once two rounds are done (default 60)")
    p.add_argument("--threads", type=int, default=None, help="threads of the compiled code (default all)")
    p.add_argument("--timing-only", action="store_true", help="only the timing (no memory, cProfile, figure)")
    p.add_argument("--no-cli", action="store_true",
                   help="do not time the whole command python -m photonab compare A B --tables history")
    p.add_argument("--out", type=Path, default=None, help="output folder (default profiles/results/sevt-<date-time>)")
    p.add_argument("--cache", type=Path, default=None,
                   help=f"folder of the synthetic pairs (default {default_cache()})")
    p.add_argument("--regenerate", action="store_true", help="synthesize the pairs again even if cached")
    p.add_argument("--distinct", action="store_true",
                   help="pairs whose every history is a random one of 17-32 steps (about 2N distinct histories)")
    return p


def _settle(args) -> None:
    if args.sizes is None:
        args.sizes = _counts(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if args.old_sizes is None:
        args.old_sizes = _counts(QUICK_OLD_SIZES if args.quick else DEFAULT_OLD_SIZES)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.min_seconds is None:
        args.min_seconds = 0.0 if args.quick else 3.0
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")


def _out_dir(out: Path | None) -> Path:
    return results_folder(out, "sevt-")


def plan(args) -> list[tuple[str, str, int]]:
    """(kind, method, photons) in size order, so each pair stays in the page cache."""
    kinds = ("timing",) if args.timing_only else KINDS
    steps = []
    for n in sorted(set(args.sizes) | set(args.old_sizes)):
        for method in args.methods:
            if method != OLD or n in args.old_sizes:  # photonab at every size: beside the old way too
                steps.extend((kind, method, n) for kind in kinds)
    return steps


def run_step(kind, method, photons, folders, args, out) -> dict:
    label = size_label(photons)
    cmd = [sys.executable, "-m", "profiles.sevt", "case", kind, "--method", method,
           "--a", str(folders[0]), "--b", str(folders[1])]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    if kind == "timing":
        cmd += ["--repeats", str(args.repeats), "--min-seconds", str(args.min_seconds),
                "--max-seconds", str(args.max_seconds)]
    if kind == "cprofile":
        cmd += ["--prefix", str(out / "cprofile" / f"{method.replace('.', '')}-{label}")]
    data = run_json(cmd)
    for key in ("prof", "text"):
        if key in data:
            data[key] = os.path.relpath(data[key], out)
    return data


def time_cli(folders, repeats: int = CLI_REPEATS) -> dict:
    """Wall time of ``python -m photonab compare A B --tables history`` (a warm-up, then the
    fastest and median of ``repeats``), or ``status: pending`` when it does not work yet."""
    cmd = [sys.executable, "-m", "photonab", "compare", str(folders[0]), str(folders[1]), "--tables", "history"]
    shown = shlex.join(["python", "-m", "photonab", "compare", "A000", "B000", "--tables", "history"])
    seconds = []
    for k in range(repeats + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        error = (proc.stderr.strip().splitlines() or [""])[-1]
        if not 0 <= proc.returncode < 64:  # 64: bad input (photonab.cli.EXIT_INPUT_ERROR); below: table bits
            return {"status": "pending", "command": shown, "rc": proc.returncode, "error": error[-300:]}
        if k:
            seconds.append(wall)
    return {"status": "measured", "command": shown, "rc": proc.returncode, "seconds": seconds,
            "min": min(seconds), "median": statistics.median(seconds)}


def fit_power(points: dict[int, float]) -> dict | None:
    """Least-squares fit log y = log c + k log N over >= 2 sizes: {"k", "c", "sizes"}."""
    pts = [(n, y) for n, y in sorted(points.items()) if y > 0]
    if len(pts) < 2:
        return None
    xs, ys = [math.log(n) for n, _ in pts], [math.log(y) for _, y in pts]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return {"k": k, "c": math.exp(my - k * mx), "sizes": [n for n, _ in pts]}


def extrapolate(results: dict, sizes: list[int], fit_sizes: int = FIT_SIZES) -> list[dict]:
    """The old way's time (median, min) and anonymous memory at ``sizes`` it was not measured at,
    from power laws fitted over the ``fit_sizes`` largest sizes it was measured at. Labelled
    extrapolated."""
    old = {c["photons"]: c for c in results["cases"] if c["method"] == OLD}
    fits = {}
    for key, pick in (("median_s", lambda c: c.get("timing") and c["timing"]["engine"]["median"]),
                      ("min_s", lambda c: c.get("timing") and c["timing"]["engine"]["min"]),
                      ("anon_peak_mb", lambda c: c.get("memory") and c["memory"]["anon_peak_mb"])):
        points = {n: v for n, c in old.items() if (v := pick(c))}
        fits[key] = fit_power({n: points[n] for n in sorted(points)[-fit_sizes:]})
    rows = []
    for n in sizes:
        if n in old and old[n].get("timing"):
            continue
        row = {"method": OLD, "photons": n, "size": size_label(n), "extrapolated": True, "fits": fits}
        for key, fit in fits.items():
            row[key] = fit["c"] * n ** fit["k"] if fit else None
        if fits["median_s"]:
            f = fits["median_s"]
            row["note"] = (f"extrapolated: t ~ N^{f['k']:.2f} fitted over "
                           f"{', '.join(size_label(m) for m in f['sizes'])}")
        else:
            row["note"] = "not extrapolated: the old way needs timings at two sizes"
        rows.append(row)
    return rows


def _slope(peaks: dict) -> float | None:
    if len(peaks) < 2:
        return None
    lo, hi = min(peaks), max(peaks)
    return math.log(max(peaks[hi], 1.0) / max(peaks[lo], 1.0)) / math.log(hi / lo)


def _target(text, size, measured, limit, status, note="") -> dict:
    return {"target": text, "size": size, "measured": measured, "limit": limit, "status": status, "note": note}


def evaluate_targets(results: dict) -> list[dict]:
    by = {(c["method"], c["photons"]): c for c in results["cases"]}
    cy_t = {n: c["timing"] for (m, n), c in by.items() if m == "cython" and c.get("timing")}
    cy_m = {n: c["memory"] for (m, n), c in by.items() if m == "cython" and c.get("memory")}
    out = []
    text = f"cython history comparison in-process <= {IN_PROCESS_LIMIT_S:g} s"
    if cy_t:
        n = TARGET_SIZE if TARGET_SIZE in cy_t else max(cy_t)
        t = cy_t[n]
        med = t["engine"]["median"]
        note = f"median of {t['repeats']} on {t['threads']} thread(s); min {t['engine']['min']:.3g} s"
        if n != TARGET_SIZE:
            note += f"; stated at {size_label(TARGET_SIZE)} photons"
        status = "met" if med <= IN_PROCESS_LIMIT_S else "MISSED"
        if (t.get("floor_check") or {}).get("suspect"):
            note += "; floor suspect (a stalled read)"
        out.append(_target(text, size_label(n), med, IN_PROCESS_LIMIT_S, status, note))
    else:
        out.append(_target(text, None, None, IN_PROCESS_LIMIT_S, "n/a", "cython not timed"))
    text = f"whole CLI compare --tables history <= {CLI_LIMIT_S:g} s"
    cli = results.get("cli") or {}
    measured = {n: c for n, c in cli.items() if c.get("status") == "measured"}
    if measured:
        key = max(measured, key=parse_count)
        c = measured[key]
        out.append(_target(text, key, c["median"], CLI_LIMIT_S, "met" if c["median"] <= CLI_LIMIT_S else "MISSED",
                           f"wall time of the whole process, median of {len(c['seconds'])}; min {c['min']:.3g} s"
                           + ("" if parse_count(key) == TARGET_SIZE else
                              f"; stated at {size_label(TARGET_SIZE)} photons")))
    else:
        why = next((c.get("error") for c in cli.values() if c.get("error")), "not run (--no-cli)")
        out.append(_target(text, None, None, CLI_LIMIT_S, "pending",
                           f"the CLI does not compare SEvt folders yet: {why}" if cli else why))
    text = (f"cython anonymous RSS flat in N (grows like N^k, k <= {FLAT_SLOPE:g}, or by <= {FLAT_NOISE_MB:g} MB)")
    if len(cy_m) >= 2:
        peaks = {n: m["anon_peak_mb"] for n, m in cy_m.items()}
        slope = _slope(peaks)
        growth = peaks[max(peaks)] - peaks[min(peaks)]
        hist = {n: (by[("cython", n)].get("timing") or {}).get("table", {}).get("histories") for n in peaks}
        note = ", ".join(f"{size_label(n)}: {peaks[n]:.1f} MB"
                         + (f" ({hist[n]} histories)" if hist[n] else "") for n in sorted(peaks))
        out.append(_target(text, f"{size_label(min(peaks))}..{size_label(max(peaks))}", slope, FLAT_SLOPE,
                           "met" if slope <= FLAT_SLOPE or growth <= FLAT_NOISE_MB else "MISSED", note))
    else:
        out.append(_target(text, None, None, FLAT_SLOPE, "n/a", "needs cython memory at two sizes"))
    return out


# ---------------------------------------------------------------- reports


def _num(value, fmt) -> str:
    return "-" if value is None else format(value, fmt)


COLUMNS = (("method", "<8"), ("size", ">5"), ("median s", ">10"), ("min s", ">10"), ("x floor", ">9"),
           ("x cython", ">10"), ("heap MB", ">8"), ("anon MB", ">8"), ("file MB", ">8"), ("histories", ">9"),
           ("", "<"))


def table(results: dict) -> str:
    cython = {c["photons"]: c["timing"]["engine"]["median"] for c in results["cases"]
              if c["method"] == "cython" and c.get("timing")}
    rows = []
    for c in results["cases"]:
        t, m = c.get("timing"), c.get("memory")
        med = t and t["engine"]["median"]
        suspect = "?" if t and t["floor_check"]["suspect"] else ""
        rows.append((c["photons"], METHODS.index(c["method"]), 0, [
            c["method"], c["size"], _num(med, ".4g"), _num(t and t["engine"]["min"], ".4g"),
            _num(t and t["ratio"]["median"], ".1f") + suspect,
            _num(med / cython[c["photons"]] if med and c["photons"] in cython else None, ".1f"),
            _num(m and m["heap_peak_mb"], ".1f"), _num(m and m["anon_peak_mb"], ".1f"),
            _num(m and m["file_touched_mb"], ".0f"), _num(t and t["table"]["histories"], "d"), "measured"]))
    for e in results.get("extrapolated", []):
        med = e.get("median_s")
        rows.append((e["photons"], METHODS.index(OLD), 1, [
            OLD, e["size"], "~" + _num(med, ".4g") if med else "-",
            "~" + _num(e.get("min_s"), ".4g") if e.get("min_s") else "-", "-",
            "~" + _num(med / cython[e["photons"]], ".0f") if med and e["photons"] in cython else "-",
            "-", "~" + _num(e.get("anon_peak_mb"), ".0f") if e.get("anon_peak_mb") else "-", "-", "-",
            "EXTRAPOLATED" if med else "not measured"]))
    header = " ".join(format(name, fmt) for name, fmt in COLUMNS).rstrip()
    lines = [header, "-" * len(header)]
    for *_, cells in sorted(rows, key=lambda r: r[:3]):
        lines.append(" ".join(format(cell, fmt) for cell, (_, fmt) in zip(cells, COLUMNS)).rstrip())
    return "\n".join(lines)


def render(results: dict) -> str:
    parts = ["SEvt history comparison (QCF table): photonab (cython, numpy) and the old way (qcf.py)",
             table(results),
             "x floor = median time / median read floor of the seq.npy bytes of A and B (same process); "
             "x cython = median / cython's median at that size; heap = tracemalloc peak, anon = peak anonymous "
             "RSS, file = file-backed pages touched (MB = 1e6 bytes, above the baseline with the pair open); "
             "histories = rows of the table (the union of A and B); '~' = extrapolated, not measured"]
    for e in results.get("extrapolated", [])[:1]:
        parts.append(f"{OLD} at {', '.join(x['size'] for x in results['extrapolated'])}: {e['note']} "
                     "(medians; the old way's loop over union rows grows with the distinct histories, which "
                     "grow with N in this toy)")
    floors = {}
    for c in results["cases"]:
        if c.get("timing"):
            floors.setdefault(c["size"], []).append(c["timing"])
    for size, ts in floors.items():
        sec = statistics.median(t["floor"]["median"] for t in ts)
        parts.append(f"read floor at {size}: {ts[0]['floor_bytes'] / 1e6:.0f} MB (seq.npy of A and B) in "
                     f"{sec:.4g} s = {ts[0]['floor_bytes'] / sec / 1e9:.1f} GB/s on {ts[0]['threads']} thread(s)")
    for size, digests in results.get("tables_agree", {}).items():
        if len(set(digests.values())) == 1:
            parts.append(f"tables at {size}: identical for {', '.join(digests)} (rows, counts, first indices, "
                         "order by max(a, b), c2n, dropouts)")
        else:
            parts.append(f"tables at {size}: DIFFER between methods: {digests}")
    for c in results["cases"]:
        prof = c.get("cprofile")
        if prof and prof.get("top"):
            top = prof["top"][0]
            parts.append(f"cProfile {c['method']} at {c['size']}: {prof['total_s']:.3g} s, top "
                         f"{top['function']} {top['tottime']:.3g} s ({prof['text']})")
    cli = results.get("cli") or {}
    for size, c in cli.items():
        if c["status"] == "measured":
            parts.append(f"whole CLI at {size}: {c['command']}: median {c['median']:.3g} s, min {c['min']:.3g} s "
                         f"(wall time of the process, exit {c['rc']})")
        else:
            parts.append(f"whole CLI at {size}: pending: {c['command']} exits {c['rc']}: {c['error']}")
    parts.append("targets (issue 10):" if results["targets"] else
                 "targets (issue 10): not judged (--distinct: they are stated for the synthesized histories)")
    for t in results["targets"]:
        measured = "-" if t["measured"] is None else f"{t['measured']:.3g}"
        at = f" at {t['size']}" if t["size"] else ""
        parts.append(f"  {t['status']:>7}  {t['target']}{at}: {measured}" + (f"  ({t['note']})" if t["note"] else ""))
    parts.append(f"for scale: {OPTICKS_5M}")
    for f in results.get("failed", []):
        parts.append(f"FAILED {f['kind']} of {f['method']} at {f['size']}: {f['error']}")
    parts.append("machine: " + one_line(results["machine"]))
    busy = [f"{c['method']} {c['size']} {c['timing']['other_processes_cores']:.2f}" for c in results["cases"]
            if c.get("timing") and (c["timing"].get("other_processes_cores") or 0) > 0.1]
    if busy:
        parts.append(f"note: other processes kept CPUs busy during timings (average cores: {', '.join(busy)}): "
                     "a shared machine; these times are noisy, measure on a quiet machine")
    return "\n".join(parts)


def figure(results: dict, path: Path) -> Path:
    """Left: seconds against photons (log-log) per method, the old way's fit dashed with its
    extrapolated points hollow, the floor, the 0.1 s target. Right: anonymous RSS peak."""
    from matplotlib.figure import Figure

    colours = {"cython": "tab:blue", "numpy": "tab:orange", OLD: "tab:red"}
    fig = Figure(figsize=(12, 5))
    ax, mx = fig.subplots(1, 2)
    for method in METHODS:
        cases = sorted((c for c in results["cases"] if c["method"] == method), key=lambda c: c["photons"])
        timed = [c for c in cases if c.get("timing")]
        if timed:
            n = [c["photons"] for c in timed]
            med = [c["timing"]["engine"]["median"] for c in timed]
            low = [m - c["timing"]["engine"]["min"] for m, c in zip(med, timed)]
            ax.errorbar(n, med, yerr=[low, [0] * len(low)], marker="o", capsize=3, color=colours[method],
                        label=f"{method} (measured)")
        mem = [c for c in cases if c.get("memory")]
        if mem:
            mx.plot([c["photons"] for c in mem], [max(c["memory"]["anon_peak_mb"], 0.01) for c in mem],
                    marker="o", color=colours[method], label=f"{method} (measured)")
    ext = [e for e in results.get("extrapolated", []) if e.get("median_s")]
    if ext:
        fit = ext[0]["fits"]["median_s"]
        lo, hi = min(fit["sizes"]), max(e["photons"] for e in ext)
        xs = [lo * (hi / lo) ** (i / 40) for i in range(41)]
        ax.plot(xs, [fit["c"] * x ** fit["k"] for x in xs], ":", color=colours[OLD])
        ax.plot([e["photons"] for e in ext], [e["median_s"] for e in ext], "o", mfc="none", color=colours[OLD],
                label=f"{OLD} EXTRAPOLATED (N^{fit['k']:.2f})")
        mfit = ext[0]["fits"].get("anon_peak_mb")
        if mfit:
            mx.plot([e["photons"] for e in ext], [e["anon_peak_mb"] for e in ext], "o", mfc="none",
                    color=colours[OLD], label=f"{OLD} EXTRAPOLATED")
    floor = {}
    for c in results["cases"]:
        if c.get("timing"):
            floor.setdefault(c["photons"], []).append(c["timing"]["floor"]["median"])
    if floor:
        n = sorted(floor)
        ax.plot(n, [statistics.median(floor[k]) for k in n], "k--", marker="s", label="read floor (seq.npy)")
    ax.axhline(IN_PROCESS_LIMIT_S, color="tab:green", linewidth=1, label=f"target {IN_PROCESS_LIMIT_S:g} s at 5M")
    for a in (ax, mx):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("photons per event")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    ax.set_ylabel("seconds (median; bar down to the min)")
    ax.set_title("SEvt history comparison (QCF table)")
    mx.set_ylabel("peak anonymous RSS above the baseline, MB")
    mx.set_title("memory of one comparison")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def save(results: dict, out: Path) -> Path:
    path = out / "results.json"
    write_text(path, json.dumps(results, indent=1))
    return path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "case":
        args = case_parser().parse_args(argv[1:])
        data = case(args)
        data["cyext_sha256"] = cyext_build()
        sys.stdout.write(json.dumps(data) + "\n")
        return 0
    args = build_parser().parse_args(argv)
    _settle(args)
    if not args.timing_only:
        from importlib.util import find_spec
        missing = [m for m in ("memory_profiler", "matplotlib") if find_spec(m) is None]
        if missing:
            raise SystemExit(f"missing {', '.join(missing)}: pip install '.[profile]' (or --timing-only)")
    cache = args.cache or default_cache()
    sizes = sorted(set(args.sizes) | set(args.old_sizes))
    try:
        folders = {n: sevt_pair(n, cache, regenerate=args.regenerate, distinct=args.distinct) for n in sizes}
    except OSError as exc:
        raise SystemExit(f"cannot prepare the synthetic SEvt pairs: {exc}") from None
    out = _out_dir(args.out)
    results = {"kind": "sevt", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "command": shlex.join(["python", "-m", "profiles.run", "sevt", *argv]), "machine": describe(),
               "settings": {"sizes": args.sizes, "old_sizes": args.old_sizes, "methods": args.methods,
                            "repeats": args.repeats, "min_seconds": args.min_seconds,
                            "max_seconds": args.max_seconds, "threads": args.threads, "cache": str(cache)},
               "pairs": [{"photons": n, "size": size_label(n), "a": str(a), "b": str(b), "recipe": _recipe(n, args.distinct)}
                         for n, (a, b) in folders.items()],
               "cases": [], "failed": []}
    steps = plan(args)
    for k, (kind, method, n) in enumerate(steps, 1):
        print(f"[{k}/{len(steps)}] {kind} {method} {size_label(n)}", file=sys.stderr, flush=True)
        try:
            data = run_step(kind, method, n, folders[n], args, out)
        except RuntimeError as exc:
            results["failed"].append({"kind": kind, "method": method, "size": size_label(n), "error": str(exc)})
            print(f"FAILED {kind} {method} {size_label(n)}: {exc}", file=sys.stderr)
        else:
            found = next((c for c in results["cases"] if c["method"] == method and c["photons"] == n), None)
            if found is None:
                found = {"method": method, "photons": n, "size": size_label(n)}
                results["cases"].append(found)
            found[kind] = data
        save(results, out)
    if not args.no_cli:
        results["cli"] = {}
        for n in args.sizes:
            print(f"whole CLI {size_label(n)}", file=sys.stderr, flush=True)
            results["cli"][size_label(n)] = time_cli(folders[n])
    agree = {}
    for c in sorted(results["cases"], key=lambda c: c["photons"]):
        if c.get("timing"):
            agree.setdefault(c["size"], {})[c["method"]] = c["timing"]["tables_digest"]
    results["tables_agree"] = agree
    results["extrapolated"] = extrapolate(results, args.sizes) if OLD in args.methods else []
    # issue 10's targets are for the synthesized histories: with --distinct nothing to judge
    results["targets"] = [] if args.distinct else evaluate_targets(results)
    written = [save(results, out)]
    if not args.timing_only:
        written.append(figure(results, out / "sevt.png"))
    text = render(results)
    written.append(out / "summary.txt")
    write_text(written[-1], text + "\n")
    print(text)
    print(f"written to {out}: " + ", ".join(os.path.relpath(p, out) for p in written)
          + ("" if args.timing_only else ", cprofile/"))
    differ = any(len(set(d.values())) > 1 for d in agree.values())
    return 4 if results["failed"] or differ else 0


if __name__ == "__main__":
    sys.exit(main())
