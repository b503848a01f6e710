"""Command line: ``python -m photonab [compare|run|chase|synth|demo] ...``.

With no arguments it runs the built-in demo: a 1M-photon synthetic A/B pair with
injected faults (generated once into a cache folder), compared with the default engine.
Exit codes: docs/verdict.md.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from . import interrupt
from .errors import EXIT_INPUT_CHANGED, ClusterError, InputChangedError, InputError

# The choices and defaults the parser shows, as constants: building it (and so --help)
# must not load numpy or the compiled kernels, where their originals live (issue 12,
# docs/kernels.md "Start-up and the whole process"). tests/test_cli.py checks that each
# equals its original.
#: --order choices (photonab.analysis.ORDERS)
ORDER_CHOICES = ("sum", "max", "a", "b")
#: the 2019 layout's tables (photonab.cuts.TABLES: cyext.RECORD_TABLES + ox)
TABLES = ("rpost", "rtime", "rpol", "ox")
#: the cut levels (photonab.cuts.LEVELS)
LEVELS = ("INFO", "WARNING", "ERROR", "FATAL")
#: the default ox cuts (photonab.cuts.OX_CUTS)
OX_CUTS = (0.10, 0.25, 0.50)
#: the engines of this process and all of them (photonab.engines.ENGINES, ALL_ENGINES)
ENGINES = ("cython", "numpy", "select")
ALL_ENGINES = ENGINES + ("dask",)
#: the SEvt --aligned tables (photonab.aligned.TABLES: cyext.ALIGNED_TABLES)
ALIGNED_TABLES = ("pos", "time", "mom", "pol", "wl", "photon")
#: hist --quantity choices (the keys of photonab.distributions.QUANTITIES)
QUANTITIES = ("x", "y", "z", "t", "r", "pol", "polx", "poly", "polz", "wl")

DEMO_PHOTONS = 1_000_000
#: exit code for bad input: above the return-code bits of the tables (1..31)
EXIT_INPUT_ERROR = 64
#: exit code for a distributed run the cluster could not finish (scheduler or workers lost)
EXIT_CLUSTER_ERROR = 70
#: exit code after Ctrl-C, as the shell reports a death by SIGINT
EXIT_INTERRUPTED = interrupt.STATUS

EXAMPLES = """examples:
  python -m photonab                                   # demo: 1M synthetic photons, all tables
  python -m photonab compare evt/box/torch/1 evt/box/torch/-1 --rows 20
  python -m photonab compare --base /data --pfx tboolean-box --det box --src torch --tag 1 --msli :1M
  python -m photonab chase A_DIR B_DIR --table rpost --history "TO BT BR BT SA"
  python -m photonab run --base /data --pfx tboolean-box --tags 1-10      # many events, combined tables
  python -m photonab compare A B --engine dask --scheduler tcp://head:8786
  python -m photonab synth /tmp/evts --photons 10M --seed 1
  python -m photonab compare A B --tables rpost,materials --order max --cmx 5 --skip "SC AB RE, TO BR .."
  python -m photonab compare A B --select "TO BT BT SA, TO BR SA"      # every table: only these histories
  python -m photonab chase A B --migrated "TO BR SA -> *" --limit 5     # migrated photons, A and B side by side
  python -m photonab hist A B --history "TO BT BT SA" --slot 2 --quantity x --png x.png"""

COLUMNS = """history table (docs/tables.md), rows ordered by a+b descending, then code:
  idx      row number          code   seqhis history code (hex), one 4-bit step per nibble
  label    the steps (TO torch, BT boundary transmit, BR reflect, SA surface absorb, ...)
  a, b     photons with this history in A and in B; a-b their difference
  c2       (a-b)^2/(a+b) where a+b > 30, else 0 and not counted; c2/ndf in the header
  a/b b/a  ratios with their errors (where both are > 0)        nstep  steps of the history
  level    ERROR for a dropout: more than 10 photons on one side, none on the other
deviation tables rpost [mm], rtime [ns], rpol, ox, over the aligned photons (same
history in A and B), one row per history, ordered by nitem descending, then code:
  nitem              aligned photons with this history
  nwarn nerr nfatal  ndisc: photons beyond the warning, error, fatal cut
  fwarn ferr ffatal  fdisc: the same as fractions of nitem
  nnan               (ox) photons with a NaN in a compared value: beyond every cut
  mx mn avg          max, min, mean of the per-photon deviation (max |A-B| over slots)
  level              the worst cut any photon of the row went beyond: INFO WARNING ERROR FATAL
  worst              the most deviant photon (sliced index; event:photon in a run)
  slot               (rpost rtime rpol) the record slot of the row's max, the lowest on ties:
                     0 the source, 1 the first step, ...; '-' when none (--json: mx_slot per slot)"""

VERDICT = """exit code (docs/verdict.md): 0 when no table fails; else one bit per table at ERROR or FATAL:
  rpost 1, rtime 2, rpol 4, ox 8, history 16 (c2/ndf above --c2max, a dropout, or no photon aligned)
  (the original tool's bits were rpost 0x1, rpol 0x2, ox 0x4: a ported script must not read rc & 2 as rpol)
  64 bad input or arguments (the message names the file and what is wrong, e.g. --msli leaving no photon)
  70 the dask cluster could not finish (scheduler or workers lost, workers frozen past --timeout)
  74 an input changed while it was read (truncated, replaced, modified; docs/reliability.md)
  130 interrupted (Ctrl-C)"""

EPILOG = "\n\n".join([EXAMPLES, COLUMNS, VERDICT])


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own 2 would read as "rtime failed"
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT_ERROR, f"{self.prog}: error: {message}\n")


def default_cache() -> Path:
    base = os.environ.get("PHOTONAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "photonab")
    return Path(base)


# ---------------------------------------------------------------- option types


def count(text: str) -> int:
    """argparse type: a count >= 0 with k/M/G suffixes (the parser of --msli too)."""
    from .counts import parse_count
    try:
        return parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_count(text: str) -> int:
    value = count(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0")
    return value


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of threads") from None
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"{text!r}: threads are a positive number, or -1 for all")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be more than 0")
    return value


def _three(what: str, example: str, positive: bool = False):
    def parse(text: str):
        try:
            values = tuple(float(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers like {example}") from None
        low_ok = values and (values[0] > 0 if positive else values[0] >= 0)
        if len(values) != 3 or not low_ok or not values[0] <= values[1] <= values[2] or values[2] == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r}: expected three increasing "
                                             f"{'positive' if positive else 'non-negative'} numbers like {example}")
        return values
    parse.__name__ = what
    return parse


_cuts = _three("ox cuts", "0.1,0.25,0.5")
_c2max = _three("c2max", "1.5,2.0,2.5", positive=True)


# ---------------------------------------------------------------- parsers


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def _location_parent() -> argparse.ArgumentParser:
    p = _parent()
    g = p.add_argument_group("event folders by tag, as the original tools: {base}/{pfx}/evt/{det}/{src}/{tag} "
                             "and -{tag}")
    g.add_argument("--base", help="base folder (default $OPTICKS_EVENT_BASE)")
    g.add_argument("--pfx", default="", help="prefix folder, e.g. tboolean-box (default none)")
    g.add_argument("--det", default="box", help="detector (default box)")
    g.add_argument("--src", default="torch", help="source (default torch)")
    return p


def _threads_parent() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--threads", type=_threads, default=None, metavar="N",
                   help="threads of the compiled kernels (default: all usable cores; honours OMP_NUM_THREADS)")
    return p


def _progress_parent() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return p


def _msli_parent(what: str) -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--msli", default="", metavar="START:STOP[:STEP]",
                   help=f"photon slice of {what}, k/M allowed: 0:100k, :1M, ::10 (default all photons)")
    return p


def _pair_parent() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("a_dir", nargs="?", help="event A folder (tag N, e.g. .../evt/box/torch/1)")
    p.add_argument("b_dir", nargs="?", help="event B folder (tag -N)")
    p.add_argument("--tag", default="1", help="with --base: tag of A; B is -tag (default 1)")
    return p


def _report_parent() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--engine", choices=ALL_ENGINES, default="cython", help="engine (default cython)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="with --engine dask: a running scheduler, e.g. tcp://head:8786 (default: a local cluster)")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="with --engine dask: give up (exit 70) when no task finishes for this long "
                        "(default 300)")
    p.add_argument("--tables", default=",".join(TABLES), help=f"tables to compute (default {','.join(TABLES)}; "
                   "add materials for the material-history table)")
    p.add_argument("--rows", type=int, default=10, help="deviation rows to show (default 10; -1 = all)")
    p.add_argument("--hist-rows", type=int, default=20, help="history rows to show (default 20; -1 = all)")
    p.add_argument("--skip", default="", help="hide rows; items separated by ',': one step (SC), several steps "
                   "not starting with a source flag (SC AB RE: rows passing through any), material names or "
                   "mat:M (material table), else a history pattern ('TO BR ..', '.6ccd'); docs/analysis.md. "
                   "The header and footer still count the ERROR/FATAL rows hidden")
    p.add_argument("--order", choices=ORDER_CHOICES, default="sum",
                   help="row order of the history and material tables: sum (a+b, default), max (max(a,b)), a, b "
                        "(descending; ties by the other count, then code)")
    p.add_argument("--cmx", type=float, default=None, metavar="C",
                   help="show only history rows with c2 >= C (--json keeps every row; hidden failing rows are counted)")
    p.add_argument("--select", default=None, metavar="PATTERN",
                   help="restrict every table (history, materials, deviations, migration) to the histories "
                        "matching PATTERN, e.g. 'TO BT BT SA, TO BR ..' (docs/analysis.md)")
    p.add_argument("--migration-rows", type=int, default=10, metavar="N",
                   help="migration pairs (A history -> B history) to show (default 10; -1 = all; --json has all)")
    p.add_argument("--ox-cuts", type=_cuts, default=OX_CUTS, metavar="W,E,F",
                   help="ox cuts warn,err,fatal (default 0.1,0.25,0.5)")
    p.add_argument("--c2max", type=_c2max, default=None, metavar="W,E,F",
                   help="history table levels on c2/ndf: warning,error,fatal (default 1.5,2.0,2.5)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write every row of every table as JSON here (whatever --rows/--skip show; docs/json.md)")
    p.add_argument("--plot", type=Path, default=None, metavar="PATH",
                   help="also draw the tables here (.png when PATH has no suffix; .pdf, .svg, ...; needs matplotlib)")
    p.add_argument("--chase", type=int, default=0, metavar="K",
                   help="for each failing table, list the K most deviant photons of its worst row")
    p.add_argument("--allow-changing-input", action="store_true",
                   help="an input changing during the run gives the tables with a loud warning, not exit 74")
    return p


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    location, threads, progress = _location_parent(), _threads_parent(), _progress_parent()
    pair, report = _pair_parent(), _report_parent()
    from .cli_sevt import sevt_parent, synth_options  # SEvt folders (docs/sevt.md section 5)
    parser = _Parser(
        prog="photonab", description="Compare two optical-photon simulation events (A: GPU, B: Geant4) photon by "
        "photon: history table with chi-square, and rpost/rtime/rpol/ox deviation tables with levels.",
        epilog=EPILOG, formatter_class=fmt)
    parser.set_defaults(func=None)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    c = sub.add_parser("compare", help="compare event A with event B", epilog=EPILOG, formatter_class=fmt,
                       parents=[pair, location, _msli_parent("both events"), threads, progress, report,
                                sevt_parent()])
    c.set_defaults(func=cmd_compare)

    d = sub.add_parser("demo", help="the built-in default: synthetic 1M-photon pair with faults, compared",
                       epilog=EPILOG, formatter_class=fmt, parents=[threads, progress, report])
    d.add_argument("--photons", type=positive_count, default=DEMO_PHOTONS, help="photons (default 1M)")
    d.add_argument("--cache", type=Path, default=None, help=f"cache folder (default {default_cache()})")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("synth", help="write a synthetic A/B pair (toy torch + box physics) in the 2019 layout",
                       parents=[progress])
    s.add_argument("out", type=Path, help="output folder; events go to OUT/evt/box/torch/1 and -1")
    s.add_argument("--photons", type=positive_count, default=DEMO_PHOTONS,
                   help="photons per event, k/M allowed (default 1M)")
    s.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same pair (default 0)")
    s.add_argument("--misaligned", type=float, default=None,
                   help="fraction of photons B re-draws (default 0.005; --layout sevt: 0.002, aligned only)")
    s.add_argument("--fault", action="append", default=None, metavar="LABEL:KIND=AMOUNT",
                   help="inject a fault into B, e.g. 'TO BT BR BT SA:pos=0.05' (kinds pos mm, time ns, pol); "
                        "repeatable; default: the demo's faults")
    s.add_argument("--no-faults", action="store_true", help="inject no faults")
    s.add_argument("--nan", type=int, default=0, help="photons of B with a NaN in ox (default 0)")
    s.add_argument("--maxrec", type=int, default=None,
                   help="record slots per photon, 1..16 (default 10; --layout sevt: 1..32, default 32)")
    synth_options(s)
    s.set_defaults(func=cmd_synth)

    r = sub.add_parser("run", help="compare a run of event pairs into combined tables, one summary line per event",
                       epilog=EPILOG, formatter_class=fmt,
                       parents=[location, _msli_parent("every event"), threads, progress, report, sevt_parent()])
    r.add_argument("pairs", nargs="*", metavar="A_DIR B_DIR",
                   help="event folders, A then B, for each event; or one SEvt RUN folder (A000 B000 A001 ...)")
    r.add_argument("--tags", default=None, help="with --base: tags of A, e.g. 1-10 or 1,3,5")
    r.set_defaults(func=cmd_run)

    h = sub.add_parser("chase", help="list the photons behind a bad row, with their A and B records",
                       epilog=COLUMNS, formatter_class=fmt,
                       parents=[pair, location, _msli_parent("both events"), threads, progress,
                                sevt_parent(compare=False)])
    h.add_argument("--table", choices=TABLES + tuple(t for t in ALIGNED_TABLES if t not in TABLES), default="rpost",
                   help="the deviation table whose deviations rank the photons (default rpost; SEvt with "
                        "--aligned: pos, time, mom, pol, wl, photon, rpost = pos)")
    h.add_argument("--history", default=None, metavar="PATTERN",
                   help="history label or pattern, e.g. 'TO BT BR BT SA', 'TO BT ..', '.6ccd' (default: all histories)")
    h.add_argument("--migrated", default=None, metavar="'A-PATTERN -> B-PATTERN'",
                   help="list migrated photons (history differs in A and B) of the matching pairs, A and B "
                        "records side by side ('*' = any history); with --limit")
    h.add_argument("--level", default="WARNING", choices=LEVELS[1:] + ("any",),
                   help="only photons beyond this cut (default WARNING; any = every aligned photon)")
    h.add_argument("--limit", type=count, default=20, help="photons to list, k/M allowed (default 20)")
    h.add_argument("--records", type=int, default=3, help="photons whose records are printed (default 3)")
    h.add_argument("--ox-cuts", type=_cuts, default=OX_CUTS, metavar="W,E,F",
                   help="ox cuts warn,err,fatal (default 0.1,0.25,0.5)")
    h.add_argument("--engine", choices=ENGINES, default="cython", help="engine that finds the photons (default cython)")
    h.set_defaults(func=cmd_chase)
    _hist_parser(sub, pair, location, threads, progress)
    return parser


# ---------------------------------------------------------------- commands


def _event_base(args):
    return args.base or os.environ.get("OPTICKS_EVENT_BASE")


def _open_pair(args):
    """The photonab.events.EventPair the options name."""
    from .events import EventPair
    if args.a_dir or args.b_dir:
        if not (args.a_dir and args.b_dir):
            raise InputError("give both A_DIR and B_DIR, or neither and use --base/--pfx/--det/--src/--tag")
        return EventPair.open(args.a_dir, args.b_dir, args.msli)
    base = _event_base(args)
    if base is None:
        raise InputError("no events given: pass A_DIR B_DIR, or --base (or $OPTICKS_EVENT_BASE) with --tag")
    return EventPair.from_tag(base, args.pfx, args.det, args.src, args.tag, args.msli)


def _tables(args) -> tuple[str, ...]:
    return tuple(t.strip() for t in args.tables.split(",") if t.strip())


def _preflight(args) -> None:
    """Everything about the options that can be checked before any work."""
    from .comparison import check_tables
    check_tables(_tables(args))
    if args.engine != "dask":
        for option, value in (("--scheduler", args.scheduler), ("--timeout", args.timeout)):
            if value is not None:
                raise InputError(f"{option} goes with --engine dask")
    if args.json is not None:
        from .render.json import check_writable
        check_writable(args.json)
    if args.plot is not None:
        from .render.plots import check_plot_path
        args.plot = check_plot_path(args.plot)
    if args.chase < 0:
        raise InputError(f"--chase {args.chase}: give a number of photons >= 0")
    _preflight_analysis(args)


@contextlib.contextmanager
def _engine(args):
    """The engine of the options, closed (a dask cluster stopped) when the command ends."""
    from .engines import get_engine
    options = {"n_threads": args.threads}
    if args.engine == "dask":
        import logging
        # a failure is said in one line (exit 64 or 70); dask's own log lines would bury it
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        options["scheduler"] = args.scheduler
        if args.timeout is not None:
            options["stall_timeout"] = args.timeout
    eng = get_engine(args.engine, **options)
    try:
        yield eng
    finally:
        close = getattr(eng, "close", None)
        if close is not None:
            close()


def _c2max_of(args):
    from .tables import C2MAX
    return args.c2max or C2MAX


def _run_compare(args, pair) -> int:
    from .comparison import compare
    args.view = _view(args, pair.a.path)
    with _engine(args) as eng:
        result = compare(pair, eng, tables=_tables(args), ox_cuts=args.ox_cuts, c2max=_c2max_of(args),
                         progress=not args.no_progress, allow_changing_input=args.allow_changing_input,
                         select=args.select)
    return _report(args, result)


def cmd_compare(args) -> int:
    from . import cli_sevt
    if cli_sevt.wants_sevt(args):
        return cli_sevt.cmd_compare(args)
    cli_sevt.refuse_sevt_options(args)
    _preflight(args)
    return _run_compare(args, _open_pair(args))


def cmd_run(args) -> int:
    from . import cli_sevt
    from .events import tag_folders
    from .runs import compare_run, parse_tags
    if args.pairs and cli_sevt.wants_sevt(argparse.Namespace(a_dir=args.pairs[0], b_dir=(args.pairs[1:] or [None])[0],
                                                             index=None)):
        return cli_sevt.cmd_run(args)
    cli_sevt.refuse_sevt_options(args)
    _preflight(args)
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
    args.view = _view(args, pairs[0][0])
    with _engine(args) as eng:
        result = compare_run(pairs, eng, tables=_tables(args), ox_cuts=args.ox_cuts, c2max=_c2max_of(args),
                             msli=args.msli, progress=not args.no_progress,
                             allow_changing_input=args.allow_changing_input, select=args.select)
    return _report(args, result)


def _report(args, result) -> int:
    """Print the tables of a comparison or a run, and write what was asked for."""
    rows = None if args.rows < 0 else args.rows
    hist_rows = None if args.hist_rows < 0 else args.hist_rows
    view = getattr(args, "view", None)
    view = args.skip if view is None else view
    print(result.render(rows=rows, history_rows=hist_rows, skip=view))
    if args.chase:
        for name, table in result.tables.items():
            worst = table.worst_rows("ERROR")
            if len(worst):
                print()
                print(result.chase(name, row=int(worst[0]), limit=args.chase).render())
    if args.json:
        result.to_json(args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        from .render.plots import plot_comparison
        written = plot_comparison(result, args.plot, skip=view)
        print(f"wrote {written}", file=sys.stderr)
    return result.rc


def cmd_demo(args) -> int:
    _preflight(args)
    from .demo import ensure_demo_pair  # generated once, under a lock (docs/reliability.md)
    from .events import EventPair
    a_dir, b_dir = ensure_demo_pair(args.cache or default_cache(), args.photons, not args.no_progress)
    rc = _run_compare(args, EventPair.open(a_dir, b_dir))
    # the demo's faults are injected on purpose: report them, but the demo itself worked
    print(f"(demo: faults were injected on purpose; `compare` on these folders exits with rc {rc})")
    return 0


def cmd_synth(args) -> int:
    if args.layout == "sevt":
        from .cli_sevt import cmd_synth as synth_sevt
        return synth_sevt(args)
    for option, value in (("--unaligned", not args.aligned), ("--events", args.events != 1),
                          ("--no-records", args.no_records)):
        if value:
            raise InputError(f"{option} goes with --layout sevt")
    args.maxrec = 10 if args.maxrec is None else args.maxrec
    args.misaligned = 0.005 if args.misaligned is None else args.misaligned
    from .synth import DEFAULT_FAULTS, synthesize
    faults = () if args.no_faults else (args.fault if args.fault is not None else DEFAULT_FAULTS)
    a_dir, b_dir = synthesize(args.out, args.photons, seed=args.seed, misaligned=args.misaligned,
                              faults=faults, nan=args.nan, maxrec=args.maxrec, progress=not args.no_progress)
    print(f"A: {a_dir}\nB: {b_dir}")
    return 0


def cmd_chase(args) -> int:
    from .chase import chase, chase_pattern
    from .comparison import check_photons
    from .cuts import Cuts
    from . import cli_sevt
    if cli_sevt.wants_sevt(args):
        return cli_sevt.cmd_chase(args)
    cli_sevt.refuse_sevt_options(args)
    if args.table not in TABLES:
        raise InputError(f"--table {args.table}: the 2019 layout's tables are {', '.join(TABLES)}")
    if args.migrated is not None:
        return _chase_migrated(args)
    if args.history is not None:
        from .patterns import parse_pattern
        parse_pattern(args.history)  # a bad pattern fails before the events are read
    pair = _open_pair(args)
    check_photons(pair)
    cuts = Cuts.for_domains(pair.domains, ox=args.ox_cuts)
    level = None if args.level == "any" else args.level
    code = None if args.history is None else _exact_code(args.history)
    if args.history is not None and code is None:
        found = chase_pattern(pair, cuts, args.table, args.history, limit=args.limit, level=level,
                              engine=args.engine, n_threads=args.threads)
    else:
        found = chase(pair, cuts, args.table, code, limit=args.limit, level=level, engine=args.engine,
                      n_threads=args.threads)
    print(found.render(records=args.records))
    return 0


# ---------------------------------------------------------------- analysis (docs/analysis.md, section 5)


def _view(args, a_folder):
    """The text view of the options: --skip (material names from A's folder), --order,
    --cmx, --migration-rows."""
    from .analysis import View, parse_skip
    names = None
    if args.skip.strip() and Path(a_folder).is_dir():  # names are only read to tell --skip items apart
        from .materials import find_material_names
        names = find_material_names(a_folder)
    rows = None if args.migration_rows < 0 else args.migration_rows
    return View(parse_skip(args.skip, material_names=names), args.order, args.cmx, rows)


def _preflight_analysis(args) -> None:
    """The analysis options checked before any work: --select, --skip, --cmx."""
    from .analysis import View
    from .patterns import parse_pattern
    if args.select is not None:
        try:
            parse_pattern(args.select)
        except InputError as exc:
            raise InputError(f"--select: {exc}") from None
    View(order=args.order, cmx=args.cmx)  # --skip is read with A's material names (_view), before any pass


def _exact_code(text: str) -> int | None:
    """The code of a chase --history that names exactly one history (a label or a hex
    code without wildcards), else None (a pattern of several histories)."""
    from .patterns import parse_pattern
    alts = parse_pattern(text).alternatives
    if len(alts) == 1 and not alts[0].continuation and not alts[0].any_mask:
        return int(alts[0].value)
    return None


def _chase_migrated(args) -> int:
    from .comparison import check_photons
    from .migration import chase_migrated
    from .patterns import parse_migration
    from .render.text import render_migrated
    if args.history is not None:
        raise InputError("give --history or --migrated, not both")
    parse_migration(args.migrated)  # before the events are read
    pair = _open_pair(args)
    check_photons(pair)
    found = chase_migrated(pair, args.migrated, args.limit, n_threads=args.threads)
    print(render_migrated(found, records=args.records > 0))
    return 0


def _hist_parser(sub, pair, location, threads, progress):
    h = sub.add_parser("hist", help="distribution of one quantity at one record slot, A against B, "
                       "with a chi-square per histogram (also for photons that are not aligned)",
                       parents=[pair, location, _msli_parent("both events"), threads, progress])
    h.add_argument("--history", required=True, metavar="PATTERN",
                   help="history pattern of the photons, e.g. 'TO BT BT SA' or 'TO [BT] ..' (A by A's, B by B's)")
    h.add_argument("--slot", type=int, default=None, metavar="K",
                   help="record slot: 0 = the source, 1 = the first step, ... (default: the slot marked [..])")
    h.add_argument("--quantity", required=True, metavar="|".join(QUANTITIES),
                   help="x y z t (positions mm, time ns), r (sqrt(x^2+y^2)), pol (3 components), polx..polz, wl")
    h.add_argument("--png", type=Path, default=None, metavar="PATH", help="draw A and B here (PNG; needs matplotlib)")
    h.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the bins here as strict JSON")
    h.set_defaults(func=cmd_hist)


def cmd_hist(args) -> int:
    from .comparison import check_photons
    from .distributions import check_plot_path, plot_distribution, slot_distribution
    from .patterns import parse_pattern
    from .render.json import check_writable, distribution_dict, write_json
    from .render.text import render_distribution
    if args.quantity not in QUANTITIES:
        raise InputError(f"--quantity {args.quantity!r}: quantities are {'|'.join(QUANTITIES)}")
    parse_pattern(args.history)
    if args.png is not None:
        check_plot_path(args.png)
    if args.json is not None:
        check_writable(args.json)
    pair = _open_pair(args)
    check_photons(pair)
    dist = slot_distribution(pair, args.history, args.slot, args.quantity, n_threads=args.threads)
    print(render_distribution(dist))
    if args.json is not None:
        write_json(distribution_dict(dist, pair), args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.png is not None:
        print(f"wrote {plot_distribution(dist, args.png)}", file=sys.stderr)
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


@interrupt.program  # Ctrl-C: one line, status 130, within a second
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:
        argv = ["demo"]
    args = parser.parse_args(argv)
    if args.func is None:
        parser.print_help()
        return EXIT_INPUT_ERROR
    try:
        return args.func(args)
    except InputChangedError as exc:  # before InputError, its base (docs/reliability.md)
        print(f"photonab: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INPUT_CHANGED
    except InputError as exc:
        print(f"photonab: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except ClusterError as exc:
        print(f"photonab: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_CLUSTER_ERROR
    except KeyboardInterrupt:
        interrupt.announce()  # one line, once (docs/reliability.md)
        return EXIT_INTERRUPTED
