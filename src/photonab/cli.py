"""Command line: ``python -m photonab [compare|synth|chase] ...``.

With no arguments it runs the built-in demo: a 1M-photon synthetic A/B pair with
injected faults (generated once into a cache folder), compared with the default engine.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import interrupt
from .cuts import LEVELS, OX_CUTS, TABLES
from .errors import EXIT_INPUT_CHANGED, InputChangedError, InputError
from .events import EventPair, parse_msli, tag_folders

DEMO_PHOTONS = 1_000_000
EPILOG = """examples:
  python -m photonab                                   # demo: 1M synthetic photons, all tables
  python -m photonab compare evt/box/torch/1 evt/box/torch/-1 --rows 20
  python -m photonab compare --base /data --pfx tboolean-box --det box --src torch --tag 1 --msli :1M
  python -m photonab chase A_DIR B_DIR --table rpost --history "TO BT BR BT SA"
  python -m photonab run --base /data --pfx tboolean-box --tags 1-10      # many events, combined tables
  python -m photonab compare A B --engine dask --scheduler tcp://head:8786
  python -m photonab synth /tmp/evts --photons 10M --seed 1
exit code of compare: one bit per failing deviation table (rpost 1, rtime 2, rpol 4, ox 8);
64 for bad input or arguments (the message names the file and what is wrong); 74 when an input
changed while being read; 130 when interrupted (Ctrl-C)"""

#: exit code for bad input: above the return-code bits of the tables
EXIT_INPUT_ERROR = 64


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own 2 would read as "rtime failed"
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT_ERROR, f"{self.prog}: error: {message}\n")


def default_cache() -> Path:
    base = os.environ.get("PHOTONAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "photonab")
    return Path(base)


def _count(text: str) -> int:
    """'1M' -> 1000000 for --photons and friends."""
    s = parse_msli(":" + text)
    if s.stop is None or s.start is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count like 1000, 100k or 1M")
    return s.stop


def _cuts(text: str):
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers like 0.1,0.25,0.5") from None
    if len(values) != 3 or not 0 <= values[0] <= values[1] <= values[2]:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three increasing non-negative numbers")
    return values


def _add_pair_arguments(p: argparse.ArgumentParser):
    p.add_argument("a_dir", nargs="?", help="event A folder (tag N, e.g. .../evt/box/torch/1)")
    p.add_argument("b_dir", nargs="?", help="event B folder (tag -N)")
    g = p.add_argument_group("event folders by tag, as the original tools: {base}/{pfx}/evt/{det}/{src}/{tag} and -{tag}")
    g.add_argument("--base", help="base folder (default $OPTICKS_EVENT_BASE)")
    g.add_argument("--pfx", default="", help="prefix folder, e.g. tboolean-box")
    g.add_argument("--det", default="box", help="detector (default box)")
    g.add_argument("--src", default="torch", help="source (default torch)")
    g.add_argument("--tag", default="1", help="tag of A; B is -tag (default 1)")
    p.add_argument("--msli", default="", help="photon slice start:stop[:step], k/M allowed: 0:100k, :1M, ::10")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all, honours OMP_NUM_THREADS)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _open_pair(args) -> EventPair:
    if args.a_dir or args.b_dir:
        if not (args.a_dir and args.b_dir):
            raise InputError("give both A_DIR and B_DIR, or neither and use --base/--pfx/--det/--src/--tag")
        return EventPair.open(args.a_dir, args.b_dir, args.msli)
    base = _event_base(args)
    if base is None:
        raise InputError("no events given: pass A_DIR B_DIR, or --base (or $OPTICKS_EVENT_BASE) with --tag")
    return EventPair.from_tag(base, args.pfx, args.det, args.src, args.tag, args.msli)


def _event_base(args):
    return args.base or os.environ.get("OPTICKS_EVENT_BASE")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="photonab", description="Compare two optical-photon simulation events (A: GPU, B: Geant4) photon by "
        "photon: history table with chi-square, and rpost/rtime/rpol/ox deviation tables with levels.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")

    c = sub.add_parser("compare", help="compare event A with event B", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_pair_arguments(c)
    _add_report_arguments(c)

    d = sub.add_parser("demo", help="the built-in default: synthetic 1M-photon pair with faults, compared")
    d.add_argument("--photons", type=_count, default=DEMO_PHOTONS, help="photons (default 1M)")
    d.add_argument("--cache", type=Path, default=None, help=f"cache folder (default {default_cache()})")
    d.add_argument("--threads", type=int, default=None, help="threads (default: all)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_report_arguments(d)

    s = sub.add_parser("synth", help="write a synthetic A/B pair (toy torch + box physics) in the 2019 layout")
    s.add_argument("out", type=Path, help="output folder; events go to OUT/evt/box/torch/1 and -1")
    s.add_argument("--photons", type=_count, default=DEMO_PHOTONS, help="photons per event (1M, 10M, ...)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--misaligned", type=float, default=0.005, help="fraction of photons B re-draws (default 0.005)")
    s.add_argument("--fault", action="append", default=None, metavar="LABEL:KIND=AMOUNT",
                   help="inject a fault into B, e.g. 'TO BT BR BT SA:pos=0.05' (kinds pos mm, time ns, pol); "
                        "repeatable; default: the demo's faults")
    s.add_argument("--no-faults", action="store_true", help="inject no faults")
    s.add_argument("--nan", type=int, default=0, help="photons of B with a NaN in ox")
    s.add_argument("--maxrec", type=int, default=10)
    s.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("run", help="compare a run of event pairs into combined tables, one summary line per event",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("pairs", nargs="*", metavar="A_DIR B_DIR", help="event folders, A then B, for each event")
    g = r.add_argument_group("event folders by tag: {base}/{pfx}/evt/{det}/{src}/{tag} and -{tag}")
    g.add_argument("--base", help="base folder (default $OPTICKS_EVENT_BASE)")
    g.add_argument("--pfx", default="")
    g.add_argument("--det", default="box")
    g.add_argument("--src", default="torch")
    g.add_argument("--tags", default=None, help="tags of A, e.g. 1-10 or 1,3,5")
    r.add_argument("--msli", default="", help="photon slice of every event")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--no-progress", action="store_true")
    _add_report_arguments(r)

    h = sub.add_parser("chase", help="list the photons behind a bad row, with their A and B records")
    _add_pair_arguments(h)
    h.add_argument("--table", choices=TABLES, default="rpost")
    h.add_argument("--history", default=None, help="history label, e.g. 'TO BT BR BT SA' (default: all)")
    h.add_argument("--level", default="WARNING", choices=LEVELS[1:] + ("any",),
                   help="only photons beyond this cut (default WARNING)")
    h.add_argument("--limit", type=_count, default=20, help="photons to list (default 20)")
    h.add_argument("--records", type=int, default=3, help="photons whose records are printed (default 3)")
    h.add_argument("--ox-cuts", type=_cuts, default=OX_CUTS)
    return parser


def _add_report_arguments(p: argparse.ArgumentParser):
    from .engines import ENGINES
    p.add_argument("--engine", choices=ENGINES + ("dask",), default="cython", help="engine (default cython)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="with --engine dask: a running scheduler, e.g. tcp://head:8786 (default: a local cluster)")
    p.add_argument("--tables", default=",".join(TABLES), help=f"tables to compute (default {','.join(TABLES)})")
    p.add_argument("--rows", type=int, default=10, help="deviation rows to show (default 10; -1 = all)")
    p.add_argument("--hist-rows", type=int, default=20, help="history rows to show (default 20; -1 = all)")
    p.add_argument("--skip", default="", help="hide rows whose label has any of these steps, e.g. 'SC AB RE'")
    p.add_argument("--ox-cuts", type=_cuts, default=OX_CUTS, help="ox cuts warn,err,fatal (default 0.1,0.25,0.5)")
    p.add_argument("--json", type=Path, default=None, help="also write every number as JSON here")
    p.add_argument("--plot", type=Path, default=None, help="also draw the tables as a PNG here (needs matplotlib)")
    p.add_argument("--chase", type=int, default=0, metavar="K",
                   help="for each failing table, list the K most deviant photons of its worst row")
    p.add_argument("--allow-changing-input", action="store_true",
                   help="an input changing during the run gives the tables with a loud warning, not exit 74")


def _make_engine(args):
    from .engines import get_engine
    options = {"n_threads": args.threads}
    if args.engine == "dask":
        options["scheduler"] = args.scheduler
    elif args.scheduler:
        raise InputError("--scheduler goes with --engine dask")
    return get_engine(args.engine, **options)


def _tables(args) -> tuple[str, ...]:
    return tuple(t.strip() for t in args.tables.split(",") if t.strip())


def _run_compare(args, pair: EventPair) -> int:
    from .comparison import compare
    result = compare(pair, _make_engine(args), tables=_tables(args), ox_cuts=args.ox_cuts,
                     progress=not args.no_progress, allow_changing_input=args.allow_changing_input)
    return _report(args, result)


def _run_run(args) -> int:
    from .runs import compare_run, parse_tags
    if args.chase:
        raise InputError("--chase works on one event: run `photonab chase A B ...` on the event of a bad row "
                         "(the combined tables show it as event:photon)")
    if args.pairs:
        if len(args.pairs) % 2:
            raise InputError("give event folders in pairs: A1 B1 A2 B2 ...")
        pairs = list(zip(args.pairs[::2], args.pairs[1::2]))
    else:
        base = _event_base(args)
        if base is None or args.tags is None:
            raise InputError("give A_DIR B_DIR pairs, or --base (or $OPTICKS_EVENT_BASE) with --tags")
        pairs = [tag_folders(base, args.pfx, args.det, args.src, t) for t in parse_tags(args.tags)]
    result = compare_run(pairs, _make_engine(args), tables=_tables(args), ox_cuts=args.ox_cuts, msli=args.msli,
                         progress=not args.no_progress, allow_changing_input=args.allow_changing_input)
    return _report(args, result)


def _report(args, result) -> int:
    """Print the tables of a comparison or a run, and write what was asked for."""
    rows = None if args.rows < 0 else args.rows
    hist_rows = None if args.hist_rows < 0 else args.hist_rows
    skip = args.skip
    print(result.render(rows=rows, history_rows=hist_rows, skip=skip))
    if args.chase:
        for name, table in result.tables.items():
            worst = table.worst_rows("ERROR")
            if len(worst):
                print()
                print(result.chase(name, row=int(worst[0]), limit=args.chase, n_threads=args.threads).render())
    if args.json:
        result.to_json(args.json, rows=rows, history_rows=hist_rows, skip=skip)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        from .plots import plot_comparison
        plot_comparison(result, args.plot, skip=skip)
        print(f"wrote {args.plot}", file=sys.stderr)
    return result.rc


@interrupt.program  # Ctrl-C: one line, status 130, within a second
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:
        argv = ["demo"]
    args = parser.parse_args(argv)
    try:
        if args.command == "compare":
            return _run_compare(args, _open_pair(args))
        if args.command == "run":
            return _run_run(args)
        if args.command == "demo":
            from .demo import ensure_demo_pair  # generated once, under a lock (docs/reliability.md)
            a_dir, b_dir = ensure_demo_pair(args.cache or default_cache(), args.photons, not args.no_progress)
            rc = _run_compare(args, EventPair.open(a_dir, b_dir))
            # the demo's faults are injected on purpose: report them, but the demo itself worked
            print(f"(demo: faults were injected on purpose; `compare` on these folders exits with rc {rc})")
            return 0
        if args.command == "synth":
            from .synth import DEFAULT_FAULTS, synthesize
            faults = () if args.no_faults else (args.fault if args.fault is not None else DEFAULT_FAULTS)
            a_dir, b_dir = synthesize(args.out, args.photons, seed=args.seed, misaligned=args.misaligned,
                                      faults=faults, nan=args.nan, maxrec=args.maxrec,
                                      progress=not args.no_progress)
            print(f"A: {a_dir}\nB: {b_dir}")
            return 0
        if args.command == "chase":
            from .comparison import chase
            from .cuts import Cuts
            pair = _open_pair(args)
            cuts = Cuts.for_domains(pair.domains, ox=args.ox_cuts)
            level = None if args.level == "any" else args.level
            found = chase(pair, cuts, args.table, args.history, limit=args.limit, level=level,
                          n_threads=args.threads)
            print(found.render(records=args.records))
            return 0
        parser.print_help()
        return EXIT_INPUT_ERROR
    except InputChangedError as exc:  # before InputError, its base (docs/reliability.md)
        print(f"photonab: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_CHANGED
    except InputError as exc:
        print(f"photonab: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        interrupt.announce()  # one line, once (docs/reliability.md)
        return interrupt.STATUS
