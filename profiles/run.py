"""Profile the three engines of photonab: time, floor, cProfile, memory, line_profiler.

Run from the repository root:

    python -m profiles.run                                # 100k and 1M photons, all engines
    python -m profiles.run --quick                        # smoke run, under a minute
    python -m profiles.run --sizes 10M --engines cython,numpy
    python -m profiles.run --compare                      # regression check against profiles/baseline.json
    python -m profiles.run --peers                        # ... and numba, polars, pandas beside the engines
    python -m profiles.run streaming --sizes 1M,10M       # beyond RAM: cold and warm page cache
    python -m profiles.run scaling --size 1M --workers 1,2  # local dask scaling
    python -m profiles.run sevt --sizes 1M,5M             # SEvt history comparison (QCF) vs the old way qcf.py
    python -m profiles.run process                        # whole processes: start-up, CLI vs floor process, threads
    python -m profiles.run distinct --photons 1M          # 1M distinct histories vs ~350: compare() by stage
    python -m profiles.run aligned --sizes 1M             # aligned SEvt tables vs a read floor of their files

For every size a synthetic A/B pair is generated once into the cache folder; for
every engine and size, each measurement runs in a fresh process (``profiles.case``):

  timing    warm-up, then rounds of the read floor (the same bytes of ph, rx, ox read once
            by a compiled nogil loop) and the full comparison: at least --repeats rounds and
            --min-seconds, at most --max-seconds (after two); min and median
  memory    tracemalloc heap peak, peak anonymous RSS, file-backed pages touched, and
            memory_profiler's sampled RSS peak (which counts the memory-mapped input)
  cprofile  a .prof file and a report sorted by internal time (like python -m cProfile -s time)
  lines     line_profiler report of the Python-level hot functions (numpy and select engines)

Outputs go to --out (default profiles/results/<date-time>/): results.json, summary.txt,
time.png, memory.png, cprofile/<engine>-<size>.{prof,txt}, lines/<engine>-<size>.txt.

Exit code: 0 done (and no regression), 1 a regression against --compare, 3 --compare
found no case in common, 4 a measurement failed.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from photonab.atomic import write_text
from photonab.engines import ENGINES

from . import regression, summary, targets
from .lineprofile import LINE_PROFILED
from .machine import REPO, choice_list, describe, results_folder, run_json
from .pairs import Pair, cached_pair, default_cache, parse_count, parse_sizes, size_label
from .peers import NAMES, missing

DEFAULT_SIZES = "100k,1M"
QUICK_SIZES = "20k"
SELECT_LIMIT = "1M"
BASELINE = REPO / "profiles" / "baseline.json"
REPORT_PACKAGES = {"memory_profiler": "memory", "line_profiler": "lines", "matplotlib": "the PNG pictures"}
EXIT_CASE_FAILED = 4


@dataclass(frozen=True)
class Step:
    kind: str  # timing, memory, cprofile, lines
    engine: str
    pair: Pair


def _counts(text: str) -> list[int]:
    return parse_sizes(text, "100k,1M")


def _limit(text: str) -> int:
    if text.strip() == "0":
        return 0
    try:
        return parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _engines(text: str) -> list[str]:
    return choice_list(text, ENGINES, "engines")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m profiles.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=_counts, default=None,
                   help=f"photon counts, comma-separated, k/M allowed "
                        f"(default {DEFAULT_SIZES}; --quick {QUICK_SIZES})")
    p.add_argument("--engines", type=_engines, default=list(ENGINES),
                   help="engines to measure, comma-separated (default cython,numpy,select)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK_SIZES} photons, one repeat, every report (under a minute)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats after the warm-up (default 5; --quick 1)")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="repeat a short case beyond --repeats until it has been timed this long "
                        "(default 3; --quick 0)")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="stop repeating a case after this many seconds, once two repeats are done (default 60)")
    p.add_argument("--select-limit", type=_limit, default=parse_count(SELECT_LIMIT), metavar="COUNT",
                   help=f"skip the select engine above this many photons, it is O(N x rows) "
                        f"(default {SELECT_LIMIT}; 0 = no limit)")
    p.add_argument("--threads", type=int, default=None, help="threads of the compiled code (default all)")
    p.add_argument("--timing-only", action="store_true", help="only the timing (for a fast regression check)")
    p.add_argument("--peers", action="store_true",
                   help="also time, beside the same floor, the rpost table by numba, polars and pandas and by "
                        "photonab asked for rpost only (cython-rpost), each checked against photonab's maxima "
                        "first; peers not installed are skipped with a note (pip install '.[peers]')")
    p.add_argument("--compare", type=Path, nargs="?", const=BASELINE, default=None, metavar="BASELINE",
                   help=f"check the time/floor ratios against a baseline results.json "
                        f"(without a value: {BASELINE.relative_to(REPO)})")
    p.add_argument("--threshold", type=float, default=regression.DEFAULT_THRESHOLD,
                   help=f"relative worsening of a ratio that is a regression "
                        f"(default {regression.DEFAULT_THRESHOLD})")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default profiles/results/<date-time>)")
    p.add_argument("--cache", type=Path, default=None,
                   help=f"folder of the synthetic pairs (default {default_cache()})")
    p.add_argument("--regenerate", action="store_true", help="synthesize the pairs again even if cached")
    return p


def _check_packages(timing_only: bool) -> None:
    if timing_only:
        return
    missing = [name for name in REPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        needed = ", ".join(f"{m} ({REPORT_PACKAGES[m]})" for m in missing)
        raise SystemExit(f"missing {needed}: install the profile extra, pip install '.[profile]' "
                         "(or run with --timing-only)")


def _out_dir(out: Path | None) -> Path:
    return results_folder(out, "")


def plan(pairs: list[Pair], engines: list[str], args) -> tuple[list[Step], list[dict]]:
    """The measurements to run, size by size (so each pair stays in the page cache), and
    the cases skipped with their reason."""
    steps, skipped = [], []
    kinds = ("timing",) if args.timing_only else ("timing", "memory", "cprofile", "lines")
    for pair in pairs:
        for engine in engines:
            if engine == "select" and args.select_limit and pair.photons > args.select_limit:
                skipped.append({"engine": engine, "size": pair.label, "photons": pair.photons,
                                "reason": f"above --select-limit {size_label(args.select_limit)}: it re-selects "
                                          "every per-photon array for every history row (O(N x rows)); "
                                          "raise the limit (or 0) to force it"})
                continue
            steps.extend(Step(kind, engine, pair) for kind in kinds
                         if kind != "lines" or engine in LINE_PROFILED)
        if getattr(args, "peers", False):
            for peer in NAMES:
                why = missing(peer)
                if why:
                    skipped.append({"engine": peer, "size": pair.label, "photons": pair.photons,
                                    "reason": f"peer not run: {why}"})
                else:
                    steps.append(Step("timing", peer, pair))
    return steps, skipped


def run_step(step: Step, args, out: Path) -> dict:
    """One measurement in a fresh ``python -m profiles.case`` process; its JSON."""
    cmd = [sys.executable, "-m", "profiles.case", step.kind, "--engine", step.engine,
           "--a", str(step.pair.a), "--b", str(step.pair.b)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    if step.kind == "timing":
        cmd += ["--repeats", str(args.repeats), "--min-seconds", str(args.min_seconds),
                "--max-seconds", str(args.max_seconds)]
    if step.kind in ("cprofile", "lines"):
        cmd += ["--prefix", str(out / step.kind / f"{step.engine}-{step.pair.label}")]
    data = run_json(cmd)
    return data


def _relative_paths(data: dict, out: Path) -> dict:
    """Report file paths relative to the output folder, so that it can be moved."""
    for key in ("prof", "text"):
        if key in data:
            data[key] = os.path.relpath(data[key], out)
    return data


def _case(results: dict, engine: str, pair: Pair) -> dict:
    for case in results["cases"]:
        if case["engine"] == engine and case["photons"] == pair.photons:
            return case
    case = {"engine": engine, "photons": pair.photons, "size": pair.label}
    results["cases"].append(case)
    return case


def _tables_agree(results: dict) -> dict:
    """size -> engine -> digest of its tables (every engine must give the same tables;
    the peers compute the rpost table only and are checked against photonab's instead)."""
    agree = {}
    for case in sorted(results["cases"], key=lambda c: c["photons"]):
        if case.get("timing") and case["engine"] not in NAMES:
            agree.setdefault(case["size"], {})[case["engine"]] = case["timing"]["tables_digest"]
    return agree


def save(results: dict, out: Path) -> Path:
    path = out / "results.json"
    write_text(path, json.dumps(results, indent=1))
    return path


def _settle(args) -> None:
    """Fill the defaults that depend on --quick."""
    if args.sizes is None:
        args.sizes = _counts(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.min_seconds is None:
        args.min_seconds = 0.0 if args.quick else 3.0
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")


def new_results(args, argv, pairs, skipped, cache) -> dict:
    return {
        "schema": regression.SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join([Path(sys.executable).name, "-m", "profiles.run", *argv]),
        "machine": describe(),
        "settings": {"sizes": args.sizes, "engines": args.engines, "peers": args.peers, "repeats": args.repeats,
                     "min_seconds": args.min_seconds, "max_seconds": args.max_seconds, "threads": args.threads,
                     "select_limit": args.select_limit, "timing_only": args.timing_only, "cache": str(cache)},
        "pairs": [{"photons": p.photons, "size": p.label, "a": str(p.a), "b": str(p.b), "recipe": p.recipe}
                  for p in pairs],
        "cases": [], "skipped": skipped, "failed": [],
    }


def measure(steps: list[Step], results: dict, args, out: Path) -> None:
    """Run every step under a progress bar, saving the results after each."""
    from tqdm import tqdm

    with tqdm(total=len(steps), unit="case", desc="profiles", dynamic_ncols=True) as bar:
        for step in steps:
            bar.set_postfix_str(f"{step.kind} {step.engine} {step.pair.label}")
            try:
                data = run_step(step, args, out)
                _case(results, step.engine, step.pair)[step.kind] = _relative_paths(data, out)
            except RuntimeError as exc:
                results["failed"].append({"kind": step.kind, "engine": step.engine, "size": step.pair.label,
                                          "error": str(exc)})
                tqdm.write(f"FAILED {step.kind} {step.engine} {step.pair.label}: {exc}", file=sys.stderr)
            save(results, out)  # a long run keeps what it measured so far
            bar.update()


def report(results: dict, args, out: Path, baseline: dict | None) -> int:
    """Targets, regression check, JSON, pictures, summary; returns the exit code."""
    results["tables_agree"] = _tables_agree(results)
    results["targets"] = targets.evaluate(results)
    extra = [targets.render(results["targets"])]
    code = EXIT_CASE_FAILED if results["failed"] else 0
    if baseline is not None:
        results["regression"], text = regression.report(results, baseline, str(args.compare), args.threshold)
        extra.append(text)
        code = regression.exit_code(results["regression"]) or code
    written = [save(results, out)]
    if not args.timing_only:
        from .figures import memory_plot, ratio_plot, time_plot
        written += [time_plot(results, out / "time.png"), ratio_plot(results, out / "ratio.png"),
                    memory_plot(results, out / "memory.png")]
    text = summary.render(results, extra)
    written.append(out / "summary.txt")
    write_text(written[-1], text + "\n")
    print(text)
    print(f"written to {out}: " + ", ".join(os.path.relpath(p, out) for p in written)
          + ("" if args.timing_only else ", cprofile/, lines/"))
    return code


#: other measurements reachable as ``python -m profiles.run NAME ...`` (NAME's own options)
SUBCOMMANDS = {
    "streaming": ("profiles.streaming", "beyond RAM: the cython engine over growing pairs, cold and warm page cache"),
    "scaling": ("profiles.scaling", "local dask scaling: 1 vs 2 (or more) worker processes"),
    "sevt": ("profiles.sevt", "SEvt history comparison (QCF): cython, numpy and the old way qcf.py, 1M and 5M"),
    "process": ("profiles.process", "whole processes: start-up, the CLI vs a floor process, 2 threads vs 1 quiet and loaded"),
    "distinct": ("profiles.distinct", "many distinct histories: compare() by stage, time and memory, vs a few hundred"),
    "aligned": ("profiles.aligned", "aligned SEvt tables (compare_aligned, 32 record slots) beside a read floor of their files"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib
        module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
        return module.main(argv[1:])
    args = build_parser().parse_args(argv)
    _settle(args)
    _check_packages(args.timing_only)
    baseline = regression.load(args.compare) if args.compare else None
    cache = args.cache or default_cache()
    try:
        pairs = [cached_pair(n, cache, regenerate=args.regenerate) for n in args.sizes]
    except OSError as exc:
        raise SystemExit(f"cannot prepare the synthetic pairs: {exc}") from None
    out = _out_dir(args.out)
    steps, skipped = plan(pairs, args.engines, args)
    for s in skipped:
        print(f"note: skipping {s['engine']} at {s['size']}: {s['reason']}", file=sys.stderr)
    results = new_results(args, argv, pairs, skipped, cache)
    measure(steps, results, args, out)
    return report(results, args, out, baseline)


if __name__ == "__main__":
    sys.exit(main())
