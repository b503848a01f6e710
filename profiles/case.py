"""One measurement of one engine on one pair, in a fresh process; prints its JSON on stdout.

    python -m profiles.case timing   --engine cython --a A_DIR --b B_DIR [--repeats 5]
    python -m profiles.case memory   --engine numpy  --a A_DIR --b B_DIR
    python -m profiles.case cprofile --engine select --a A_DIR --b B_DIR --prefix OUT/select-1M
    python -m profiles.case lines    --engine select --a A_DIR --b B_DIR --prefix OUT/lines-select-1M

``profiles.run`` starts one such process per measurement, so that no measurement sees
the memory, caches or imports left by another. The inputs are opened (memory-mapped)
and the engine is imported before anything is measured.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KINDS = ("timing", "memory", "cprofile", "lines")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m profiles.case", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--engine", required=True)
    p.add_argument("--a", required=True, type=Path, help="event A folder")
    p.add_argument("--b", required=True, type=Path, help="event B folder")
    p.add_argument("--threads", type=int, default=None, help="threads of the compiled code (default all)")
    p.add_argument("--repeats", type=int, default=5, help="timing: rounds after the warm-up")
    p.add_argument("--min-seconds", type=float, default=0.0,
                   help="timing: keep timing rounds beyond --repeats until this long")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="timing: stop the rounds after this long (at least two rounds)")
    p.add_argument("--prefix", type=Path, help="cprofile, lines: path prefix of the report files")
    return p


def _prepare(args):
    """Open the pair and import everything a comparison needs, so that neither is measured."""
    import scipy.special  # noqa: F401  (the history table's p-value)
    from photonab import EventPair
    from photonab.comparison import compare
    from photonab.engines import get_engine

    get_engine(args.engine, n_threads=args.threads)  # imports the engine (and cyext)
    pair = EventPair.open(args.a, args.b)

    def run():
        return compare(pair, args.engine, n_threads=args.threads, progress=False)

    return pair, run


def _touch_inputs(pair, n_threads):
    """Map the input pages in (as a warm-up would) without warming the engine itself."""
    from .timing import floor_arrays, read_floor
    read_floor(floor_arrays(pair), n_threads)


def _measure_peer(args) -> dict:
    """Timing of a peer (profiles.peers): its rpost table beside the same floor."""
    from photonab import EventPair

    from .peers import checked_run
    from .timing import time_comparison
    if args.kind != "timing":
        raise SystemExit(f"peer {args.engine}: only timing is measured")
    pair = EventPair.open(args.a, args.b)
    run = checked_run(args.engine, pair, args.threads)  # checks its maxima against photonab's
    out = time_comparison(pair, args.engine, repeats=args.repeats, min_seconds=args.min_seconds,
                          max_seconds=args.max_seconds, n_threads=args.threads, run=run)
    out["peer_check"] = "rpost maxima and photons per history equal photonab's"
    return out


def measure(args) -> dict:
    from .peers import NAMES
    if args.engine in NAMES:
        return _measure_peer(args)
    pair, run = _prepare(args)
    title = f"{args.kind} of the {args.engine} engine, {pair.n} photons: {args.a} vs {args.b}"
    if args.kind == "timing":
        from .timing import time_comparison
        return time_comparison(pair, args.engine, repeats=args.repeats, min_seconds=args.min_seconds,
                               max_seconds=args.max_seconds, n_threads=args.threads)
    if args.kind == "memory":
        from .memory import measure as measure_memory
        return measure_memory(run)
    if args.prefix is None:
        raise SystemExit(f"{args.kind} needs --prefix")
    args.prefix.parent.mkdir(parents=True, exist_ok=True)
    _touch_inputs(pair, args.threads)
    if args.kind == "cprofile":
        from .callprofile import profile
        return profile(run, args.prefix, title)
    from .lineprofile import profile
    return profile(run, args.engine, args.prefix.parent / f"{args.prefix.name}.txt", title)


def main(argv=None) -> int:
    from .machine import cyext_build
    args = build_parser().parse_args(argv)
    out = measure(args)
    out["cyext_sha256"] = cyext_build()  # the build measured (someone may reinstall during a run)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
