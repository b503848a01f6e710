"""The command line for SEvt folders (docs/sevt.md section 5): ``compare``, ``run``, ``chase``
and ``synth --layout sevt``. :mod:`photonab.cli` routes here when the folders are SEvt
folders (the layout is told from the files present) and keeps the 2019 paths as they were.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from .errors import InputError

# The parser's choices and defaults from photonab.qcf (C2CUT, RULES), as constants: building
# the parser must not load numpy (issue 12; tests/test_cli.py checks they equal the originals).
C2CUT = 30
RULES = ("qcf", "sseq_index")
#: options that only mean something for SEvt pairs (dest, option), refused on the 2019 layout
SEVT_ONLY = (("aligned", "--aligned"), ("index", "--index"), ("c2cut", "--c2cut"), ("rule", "--rule"),
             ("aligned_cut", "--aligned-cut"))


def _aligned_cut(text: str):
    from .aligned import TABLES
    name, sep, values = text.partition("=")
    name = {"rpost": "pos", "rtime": "time", "rpol": "pol", "ox": "photon"}.get(name.strip(), name.strip())
    if not sep or name not in TABLES:
        raise argparse.ArgumentTypeError(f"{text!r}: expected TABLE=W,E,F with TABLE one of {', '.join(TABLES)}, "
                                         "e.g. pos=0.01,0.05,0.1")
    try:
        cuts = tuple(float(x) for x in values.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the cuts are three numbers, e.g. pos=0.01,0.05,0.1") from None
    if len(cuts) != 3 or not 0 <= cuts[0] <= cuts[1] <= cuts[2] or cuts[2] == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the cuts are three increasing finite numbers >= 0")
    return name, cuts


def _c2cut(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: --c2cut is a finite number >= 0")
    return value


def sevt_parent(compare: bool = True) -> argparse.ArgumentParser:
    """Options of SEvt pairs (compare, run, chase)."""
    from .flags import ERAS
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("SEvt folders (Opticks since 2022: RUN/A000 RUN/B000; docs/sevt.md)")
    g.add_argument("--flags", choices=list(ERAS), default=None, metavar="ERA",
                   help=f"flag table to decode the histories with ({', '.join(ERAS)}; default: detected "
                        "from the data, and printed)")
    g.add_argument("--index", type=int, default=None, metavar="N",
                   help="with one RUN folder: compare RUN/A00N with RUN/B00N")
    g.add_argument("--aligned", action="store_true",
                   help="A and B ran with aligned random streams: add the photon-by-photon deviation tables "
                        "(docs/aligned.md)")
    if compare:
        g.add_argument("--c2cut", type=_c2cut, default=C2CUT, metavar="C",
                       help=f"QCF rows enter the chi-square when a+b > C (default {C2CUT})")
        g.add_argument("--rule", choices=RULES, default="qcf",
                       help="chi-square rule: qcf (ana/qcf.py, default) or sseq_index (dropouts excluded)")
        g.add_argument("--aligned-cut", type=_aligned_cut, action="append", default=None, metavar="TABLE=W,E,F",
                       help="with --aligned: cuts of one table in its unit, e.g. pos=0.01,0.05,0.1 (repeatable; "
                            "defaults in docs/aligned.md)")
    return p


def synth_options(s: argparse.ArgumentParser) -> None:
    """``synth --layout sevt`` options (added to the synth parser)."""
    from .flags import CURRENT_ERA
    g = s.add_argument_group("SEvt layout (--layout sevt)")
    g.add_argument("--layout", choices=("2019", "sevt"), default="2019",
                   help="2019 (ox/rx/ph, default) or sevt (OUT/ALL0_synth/A000, B000, ...)")
    al = g.add_mutually_exclusive_group()
    al.add_argument("--aligned", dest="aligned", action="store_true", default=True,
                    help="B uses A's random numbers: photon by photon comparable (default)")
    al.add_argument("--unaligned", dest="aligned", action="store_false",
                    help="B draws its own random numbers: only the statistics agree (the QCF case)")
    g.add_argument("--era", default=CURRENT_ERA, help=f"flag table of the histories (default {CURRENT_ERA})")
    g.add_argument("--events", type=int, default=1, metavar="K", help="event pairs A000..A{K-1} (default 1)")
    g.add_argument("--dropouts", type=int, default=15, help="photons per side turned into a one-side history "
                                                           "(default 15)")
    g.add_argument("--no-records", action="store_true", help="leave record.npy out (64 x maxrec bytes a photon)")


# ---------------------------------------------------------------- routing


def is_run_folder(path) -> bool:
    p = Path(path)
    return p.is_dir() and any(c.is_dir() and c.name[:1] in "AB" and c.name[1:].isdigit() and len(c.name) >= 4
                              for c in p.iterdir())


def wants_sevt(args, pair_args=("a_dir", "b_dir")) -> bool:
    """Do the command's folders name SEvt events (or a run folder of them)?"""
    from .sevt import detect_layout
    a, b = (getattr(args, n, None) for n in pair_args)
    if a and not b:
        return getattr(args, "index", None) is not None or is_run_folder(a)
    if a and b:
        la, lb = _layout_or_none(detect_layout, a), _layout_or_none(detect_layout, b)
        return "sevt" in (la, lb)
    return False


def _layout_or_none(detect, path):
    try:
        return detect(path)
    except InputError:
        return None


def refuse_sevt_options(args) -> None:
    """SEvt-only options on the 2019 layout are an error, not silently ignored."""
    for dest, option in SEVT_ONLY:
        value = getattr(args, dest, None)
        if value not in (None, False) and not (dest == "c2cut" and value == C2CUT) and not (dest == "rule" and value == "qcf"):
            raise InputError(f"{option} is for SEvt folders (photon/seq/record.npy); these are 2019-layout events")


def open_sevt(args, need=("seq",)):
    """The SEvtPair of the command's folders: A B, or RUN --index N."""
    from .sevt import event_dirs, open_pair, run_indices
    a, b = args.a_dir, args.b_dir
    if a and not b:
        if args.index is None:
            raise InputError(f"{a}: a run folder: give --index N to compare {a}/A00N with {a}/B00N, or use "
                             f"`photonab run {a}` for every event")
        indices = run_indices(a)
        if args.index not in indices:
            raise InputError(f"--index {args.index}: {a} has no A{args.index:03d}/B{args.index:03d} pair; its events "
                             f"are {', '.join(map(str, indices))}")
        a, b = event_dirs(a, args.index)
    elif args.index is not None:
        raise InputError("--index goes with one RUN folder (compare RUN --index N), not with A_DIR B_DIR")
    pair = open_pair(a, b, args.msli, args.flags, need)
    if getattr(pair, "layout", None) != "sevt":
        raise InputError(f"{a}: not an SEvt folder")
    return pair


def _tables_of(args) -> tuple[tuple[str, ...], bool]:
    """(aligned tables, asked explicitly) from --tables: the default means every aligned table."""
    from .cuts import TABLES as TABLES_2019
    from .sevt_compare import aligned_tables_of
    names = [t.strip() for t in args.tables.split(",") if t.strip()]
    if not names:
        raise InputError("--tables: no table asked for; SEvt tables are history and, with --aligned, "
                         "pos,time,mom,pol,wl,photon")
    default = names == list(TABLES_2019)
    tables = aligned_tables_of(names)
    if default:
        from .aligned import TABLES
        tables = TABLES
    return tables, not default


def _preflight(args):
    from .sevt_compare import DASK_ALIGNED_MESSAGE, ENGINES
    if args.engine not in ENGINES:
        raise InputError(f"--engine {args.engine}: SEvt pairs are compared with {' or '.join(ENGINES)} "
                         "(the select engine reads the 2019 layout only)")
    if args.engine != "dask":
        for option, value in (("--scheduler", args.scheduler), ("--timeout", args.timeout)):
            if value is not None:
                raise InputError(f"{option} goes with --engine dask")
    elif args.aligned:
        raise InputError(DASK_ALIGNED_MESSAGE)
    tables, explicit = _tables_of(args)
    if explicit and tables and not args.aligned:
        raise InputError(f"--tables {args.tables}: {', '.join(tables)} are aligned tables: add --aligned "
                         "(only when A and B ran with aligned random streams; docs/aligned.md)")
    if args.aligned_cut and not args.aligned:
        raise InputError("--aligned-cut goes with --aligned")
    if args.chase < 0:
        raise InputError(f"--chase {args.chase}: give a number of photons >= 0")
    if args.chase and not args.aligned:
        raise InputError("--chase on SEvt pairs goes with --aligned (photon-by-photon deviations)")
    if args.json is not None:
        from .render.json import check_writable
        check_writable(args.json)
    if args.plot is not None:
        from .render.plots import check_plot_path
        args.plot = check_plot_path(args.plot)
    return tables


def _c2max(args):
    from .tables import C2MAX
    return args.c2max or C2MAX


def _report(args, result) -> int:
    rows = None if args.rows < 0 else args.rows
    hist_rows = None if args.hist_rows < 0 else args.hist_rows
    print(result.render(rows=rows, history_rows=hist_rows, skip=args.skip))
    al = getattr(result, "aligned", None)
    if al is not None and al.check.warn:
        print(f"photonab: warning: --aligned, but A and B do not look aligned (alignment score "
              f"{al.check.score:.2f}, 0 = chance, 1 = aligned): see the alignment lines", file=sys.stderr)
    if args.json:
        result.to_json(args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        from .render.plots import plot_qcf
        written = plot_qcf(result, args.plot, skip=args.skip)
        print(f"wrote {written}", file=sys.stderr)
    return result.rc


def cmd_compare(args) -> int:
    from .sevt_compare import compare_sevt
    tables = _preflight(args)
    need = ("seq",)
    pair = open_sevt(args, need)
    cuts = dict(args.aligned_cut or [])
    with _engine_of(args) as engine:
        result = compare_sevt(pair, engine, c2cut=args.c2cut, rule=args.rule, c2max=_c2max(args),
                              aligned=args.aligned, tables=tables, cuts=cuts, n_threads=args.threads,
                              progress=not args.no_progress, chase=args.chase)
    return _report(args, result)


@contextlib.contextmanager
def _engine_of(args):
    """The engine name, or for --engine dask the DaskEngine of the options (local cluster or
    --scheduler, --timeout), closed when the command ends (as for the 2019 layout)."""
    if args.engine != "dask":
        yield args.engine
        return
    from .cli import _engine
    with _engine(args) as engine:
        yield engine


def cmd_run(args) -> int:
    from .sevt import SEvtPair, event_dirs, run_indices
    from .sevt_compare import compare_sevt_run
    _preflight(args)
    if args.aligned:
        raise InputError("--aligned works on one event of a run: `photonab compare RUN --index N --aligned`")
    run = None
    if len(args.pairs) == 1:
        run = Path(args.pairs[0])
        indices = run_indices(run)
        if args.index is not None:
            if args.index not in indices:
                raise InputError(f"--index {args.index}: {run} has no A{args.index:03d}/B{args.index:03d} pair; "
                                 f"its events are {', '.join(map(str, indices))}")
            indices = [args.index]
        folders = [event_dirs(run, i) for i in indices]
    else:
        if len(args.pairs) % 2:
            raise InputError("give one RUN folder, or event folders in pairs: A1 B1 A2 B2 ...")
        folders = list(zip(args.pairs[::2], args.pairs[1::2]))
        indices = list(range(len(folders)))
    from .sevt import open_pair
    pairs = []
    for a, b in folders:
        pair = open_pair(a, b, args.msli, args.flags, ("seq",))
        if not isinstance(pair, SEvtPair):
            raise InputError(f"{a}: a 2019-layout event in a run of SEvt events")
        pairs.append(pair)
    with _engine_of(args) as engine:
        result = compare_sevt_run(pairs, indices, engine, c2cut=args.c2cut, rule=args.rule, c2max=_c2max(args),
                                  n_threads=args.threads, progress=not args.no_progress, run=run)
    return _report(args, result)


def cmd_chase(args) -> int:
    from . import seqhis
    from .aligned import DEFAULT_CUTS, NOT_ALIGNED_MESSAGE, TABLES, chase_photons
    from .render.aligned import render_photons
    from .sevt_compare import TABLE_ALIASES, check_sevt_photons
    if not args.aligned:
        raise InputError(f"chase on SEvt pairs needs --aligned: {NOT_ALIGNED_MESSAGE}")
    if args.engine not in ("cython", "numpy"):
        raise InputError(f"--engine {args.engine}: chase on SEvt pairs runs in numpy")
    table = TABLE_ALIASES.get(args.table, args.table)
    if table not in TABLES:
        raise InputError(f"--table {args.table}: aligned SEvt tables are {', '.join(TABLES)}")
    need = ("seq", "photon") if table == "photon" else ("seq", "record")
    pair = open_sevt(args, need)
    check_sevt_photons(pair)
    history = args.history
    if history is not None:
        lo, hi = seqhis.code2(history, pair.era)
        sa = pair.a.seqhis[:pair.n]
        present = bool(((sa[:, 0] == lo) & (sa[:, 1] == hi)).any())
        if not present:
            raise InputError(f"--history {history!r}: no photon of {pair.a.path / 'seq.npy'} has this history "
                             f"(flags {pair.era})")
    cuts = dict(getattr(args, "aligned_cut", None) or [])
    values = cuts.get(table, DEFAULT_CUTS[table])
    min_dev = 0.0 if args.level == "any" else float(values[("WARNING", "ERROR", "FATAL").index(args.level)])
    found = chase_photons(pair, table, history, n=args.limit, min_dev=min_dev)
    level = "any deviation" if args.level == "any" else f"{args.level} ({min_dev:g})"
    print(f"layout sevt  flags {pair.era} ({pair.era_source})  photons {pair.n}  at or beyond {level}")
    print(render_photons(found, records=args.records))
    return 0


def cmd_synth(args) -> int:
    from .synth.sevt import synthesize_sevt
    for option, given in (("--fault", args.fault is not None), ("--no-faults", args.no_faults),
                          ("--nan", args.nan != 0)):
        if given:
            raise InputError(f"{option} is for the 2019 layout; SEvt pairs get dropouts (--dropouts) instead")
    kw = {}
    if args.maxrec is not None:
        kw["maxrec"] = args.maxrec
    if args.misaligned is not None:
        kw["misaligned"] = args.misaligned
    folders = synthesize_sevt(args.out, args.photons, seed=args.seed, aligned=args.aligned, era=args.era,
                              dropouts=args.dropouts, events=args.events, records=not args.no_records,
                              progress=not args.no_progress, **kw)
    for a, b in folders:
        print(f"A: {a}\nB: {b}")
    return 0
