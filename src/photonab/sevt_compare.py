"""Compare SEvt pairs end to end: the QCF history table with a verdict, hits, metadata and,
with ``aligned=True``, the aligned deviation tables (docs/sevt.md section 5).

``compare_sevt(pair)`` returns an :class:`SEvtComparison`; ``compare_sevt_run(run)`` an
:class:`SEvtRun` over the ``A{i:03d}``/``B{i:03d}`` pairs of a run folder. The history
level and its rc bit follow the same rules as the 2019 history table (the functions are
shared with :mod:`photonab.tables`): c2max levels on c2per with ndf = c2n (a table with
c2n < 1 cannot fail on chi-square alone), a dropout (bzero/azero) is at least ERROR, and
with ``--aligned`` a pair of which no photon is aligned is FATAL. Text in
:mod:`photonab.render.qcf` and :mod:`photonab.render.aligned`, JSON in :mod:`photonab.render.json`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cuts import LEVELS
from .errors import InputError
from .qcf import C2CUT, HistoryCounts128, QCFTable, compare_hits, count_cython, count_numpy, is_dask
from .tables import C2MAX, FAILING, RC_BIT, c2_level_index, check_c2max, history_level_index, history_reasons

#: engines with an SEvt path (the QCF counts; dask: the counts only, engines/sevt_dask.py)
ENGINES = ("cython", "numpy", "dask")
#: engines with the aligned SEvt aggregates
ALIGNED_ENGINES = ("cython", "numpy")
DASK_ALIGNED_MESSAGE = ("--aligned with --engine dask: the aligned SEvt tables have no dask path yet; the dask "
                        "engine counts the QCF histories only (use --engine cython or numpy with --aligned)")
#: the 2019 table names accepted for their SEvt analogues (docs/aligned.md section 3)
TABLE_ALIASES = {"rpost": "pos", "rtime": "time", "rpol": "pol", "ox": "photon"}


def aligned_tables_of(names) -> tuple[str, ...]:
    """The aligned tables named in ``names`` ("history" and 2019 aliases allowed), kernel order."""
    from .aligned import TABLES
    out = []
    for name in names:
        name = TABLE_ALIASES.get(name, name)
        if name == "history":
            continue
        if name not in TABLES:
            raise InputError(f"unknown table {name!r} for an SEvt pair; tables are history (QCF) and, with "
                             f"--aligned, {', '.join(TABLES)} (2019 names rpost, rtime, rpol, ox also accepted)")
        out.append(name)
    return tuple(t for t in TABLES if t in out)


def format_msli(s: slice) -> str:
    if s.start is None and s.stop is None and s.step in (None, 1):
        return ""
    parts = ["" if v is None else str(v) for v in (s.start, s.stop)]
    return ":".join(parts + ([str(s.step)] if s.step not in (None, 1) else []))


def check_sevt_photons(pair) -> None:
    """Nothing compared is not a pass: a pair with no photon (after --msli) is an input error."""
    if pair.n:
        return
    for ev in (pair.a, pair.b):
        if ev.n:
            continue
        msli = format_msli(ev.msli)
        if msli:
            raise InputError(f"{ev.path}: nothing to compare: --msli {msli} leaves 0 of the {ev.n_total} photons")
        raise InputError(f"{ev.path / 'seq.npy'}: nothing to compare: the event has no photons")


def tqdm_progress(total, desc):
    from .comparison import tqdm_progress as bar
    return bar(total, desc)


def _progress(progress):
    if progress is True:
        return tqdm_progress
    return progress or None


def count_pair(pair, engine: str = "cython", n_threads=None, progress=None) -> HistoryCounts128:
    """The 128-bit history counts of an SEvtPair with ``engine`` ("cython", "numpy", "dask" or a
    DaskEngine object)."""
    sa, sb = pair.seqhis()  # missing seq.npy: the InputError here, before any cluster
    if is_dask(engine):
        from .engines.sevt_dask import count_dask
        return count_dask(pair, None if engine == "dask" else engine, progress, n_threads=n_threads)
    if engine == "cython":
        return count_cython(sa, sb, n_threads, progress=progress)
    if engine == "numpy":
        return count_numpy(sa, sb)
    raise InputError(f"engine {engine!r} has no SEvt path; SEvt pairs are compared with "
                     f"{' or '.join(ENGINES)}")


def qcf_table(pair, counts: HistoryCounts128, c2cut=C2CUT, rule: str = "qcf") -> QCFTable:
    """The QCFTable of ``pair`` from its counts (as qcf.compare_histories builds it)."""
    return QCFTable(counts, pair.era, c2cut, rule, hits=compare_hits(pair), layout=pair.layout,
                    era_source=pair.era_source, era_evidence=pair.era_evidence, meta_diff=pair.meta_diff,
                    notes=pair.notes, n_a=pair.n, n_b=pair.n, rows_a=pair.a.file_rows, rows_b=pair.b.file_rows,
                    paths=(str(pair.a.path), str(pair.b.path)))


class _Verdict:
    """The history verdict of a QCF table (shared by one comparison and a run)."""

    qcf: QCFTable
    c2max: tuple

    @property
    def none_aligned(self) -> bool:
        return False

    @property
    def c2_level_index(self) -> int:
        return c2_level_index(self.qcf.c2per, self.qcf.c2n, self.c2max)

    @property
    def ndropout(self) -> int:
        return len(self.qcf.bzero) + len(self.qcf.azero)

    @property
    def history_level(self) -> str:
        return LEVELS[history_level_index(self.c2_level_index, self.ndropout, self.none_aligned)]

    @property
    def history_rc(self) -> int:
        return RC_BIT["history"] if self.history_level in FAILING else 0

    @property
    def reasons(self) -> list[str]:
        return history_reasons(self.qcf.c2per, self.c2_level_index, self.c2max, self.ndropout,
                               self.none_aligned, c2_name="c2per (c2sum/c2n)")


@dataclass
class SEvtComparison(_Verdict):
    """The result of comparing SEvt event A with event B."""

    pair: object
    qcf: QCFTable
    counts: HistoryCounts128
    c2max: tuple
    engine: str
    aligned: object = None  # photonab.aligned.AlignedResult with --aligned
    seconds: dict = field(default_factory=dict)

    layout = "sevt"

    @property
    def none_aligned(self) -> bool:
        return self.aligned is not None and self.aligned.n_aligned == 0 and self.pair.n > 0

    @property
    def rc(self) -> int:
        return self.history_rc | (self.aligned.rc if self.aligned is not None else 0)

    @property
    def levels(self) -> dict:
        out = {"history": self.history_level}
        if self.aligned is not None:
            out.update({t: tab.level for t, tab in self.aligned.tables.items()})
        return out

    @property
    def msli(self) -> str:
        return format_msli(self.pair.a.msli)

    def render(self, rows: int | None = 10, history_rows: int | None = 20, skip=()) -> str:
        from .render.qcf import render_sevt_comparison
        return render_sevt_comparison(self, rows=rows, history_rows=history_rows, skip=skip)

    def __str__(self):
        return self.render()

    def __repr__(self):
        return (f"<SEvtComparison {self.engine} n={self.pair.n} histories={len(self.qcf)} "
                f"c2per={self.qcf.c2per:.3f} history:{self.history_level} rc={self.rc}>")

    def to_dict(self) -> dict:
        from .render.json import plain, sevt_comparison_dict
        return plain(sevt_comparison_dict(self))

    def to_json(self, path=None) -> str | None:
        """Strict JSON text of :meth:`to_dict`; with ``path`` written there instead, the
        rows streamed in bounded memory, and None returned (docs/json.md)."""
        from .render.json import sevt_comparison_dict, write_json
        return write_json(sevt_comparison_dict(self), path)


def compare_sevt(pair, engine: str = "cython", *, c2cut=C2CUT, rule: str = "qcf", c2max=C2MAX,
                 aligned: bool = False, tables=None, cuts=None, n_threads=None, progress=False,
                 chase: int = 5) -> SEvtComparison:
    """Compare an :class:`photonab.sevt.SEvtPair`: the QCF table (with its verdict) and, with
    ``aligned``, the aligned tables ``tables`` (None = all) with ``cuts`` ({table: (w, e, f)})."""
    c2max = check_c2max(c2max)
    check_sevt_photons(pair)
    if not is_dask(engine) and engine not in ENGINES:
        raise InputError(f"engine {engine!r} has no SEvt path; SEvt pairs are compared with "
                         f"{' or '.join(ENGINES)}")
    if aligned and is_dask(engine):
        raise InputError(DASK_ALIGNED_MESSAGE)
    bar = _progress(progress)
    seconds = {}
    t0 = time.perf_counter()
    counts = count_pair(pair, engine, n_threads, bar)
    table = qcf_table(pair, counts, c2cut, rule)
    seconds["histories"] = time.perf_counter() - t0
    result = None
    if aligned:
        from .aligned import compare_aligned
        t0 = time.perf_counter()
        result = compare_aligned(pair, tables, cuts, n_threads, engine, bar, chase=chase, counts=counts)
        seconds["aligned"] = time.perf_counter() - t0
    name = "dask" if is_dask(engine) else engine
    return SEvtComparison(pair, table, counts, c2max, name, result, seconds)


# ---------------------------------------------------------------- runs


def combine_counts(counts: list[HistoryCounts128], offsets: list[int]) -> HistoryCounts128:
    """Counts of several events summed per history; first indices count photons over the events
    in order (event k's photon i is ``offsets[k] + i``), the smallest kept."""
    lo = np.concatenate([c.lo for c in counts])
    hi = np.concatenate([c.hi for c in counts])
    a = np.concatenate([c.a for c in counts])
    b = np.concatenate([c.b for c in counts])
    fa = np.concatenate([np.where(c.first_a >= 0, c.first_a + o, -1) for c, o in zip(counts, offsets)])
    fb = np.concatenate([np.where(c.first_b >= 0, c.first_b + o, -1) for c, o in zip(counts, offsets)])
    order = np.lexsort((lo, hi))
    slo, shi = lo[order], hi[order]
    new = np.ones(len(order), bool)
    if len(order):
        new[1:] = (slo[1:] != slo[:-1]) | (shi[1:] != shi[:-1])
    group = np.cumsum(new) - 1
    g = int(new.sum())
    big = np.iinfo(np.int64).max
    out = {}
    for name, v, f in (("a", a, fa), ("b", b, fb)):
        cnt = np.zeros(g, np.int64)
        np.add.at(cnt, group, v[order])
        first = np.full(g, big, np.int64)
        ff = f[order]
        keep = ff >= 0
        np.minimum.at(first, group[keep], ff[keep])
        out[name] = (cnt, np.where(first == big, -1, first))
    return HistoryCounts128(slo[new], shi[new], out["a"][0], out["b"][0], out["a"][1], out["b"][1])


@dataclass
class SEvtRun(_Verdict):
    """A run of SEvt pairs: each event's comparison and the combined QCF table of the summed counts."""

    events: list
    indices: list
    qcf: QCFTable
    counts: HistoryCounts128
    offsets: list
    c2max: tuple
    engine: str
    run: Path | None = None

    layout = "sevt"

    @property
    def rc(self) -> int:
        rc = self.history_rc
        for e in self.events:
            rc |= e.rc
        return rc

    @property
    def levels(self) -> dict:
        return {"history": self.history_level}

    def event_lines(self) -> list[dict]:
        out = []
        for i, e in zip(self.indices, self.events):
            t = e.qcf
            h = t.hits
            out.append({"event": i, "a": str(e.pair.a.path), "b": str(e.pair.b.path), "photons": e.pair.n,
                        "histories": len(t), "c2sum": t.c2sum, "c2n": t.c2n, "c2per": t.c2per,
                        "pvalue": t.pvalue, "bzero": len(t.bzero), "azero": len(t.azero),
                        "hits_a": None if h is None else h.a, "hits_b": None if h is None else h.b,
                        "level": e.history_level, "rc": e.rc, "flags": t.era})
        return out

    def render(self, rows: int | None = 10, history_rows: int | None = 20, skip=()) -> str:
        from .render.qcf import render_sevt_run
        return render_sevt_run(self, history_rows=history_rows, skip=skip)

    def to_dict(self) -> dict:
        from .render.json import plain, sevt_run_dict
        return plain(sevt_run_dict(self))

    def to_json(self, path=None) -> str | None:
        """Strict JSON text of :meth:`to_dict`; with ``path`` written there instead, the
        rows streamed in bounded memory, and None returned (docs/json.md)."""
        from .render.json import sevt_run_dict, write_json
        return write_json(sevt_run_dict(self), path)

    def __repr__(self):
        return (f"<SEvtRun {len(self.events)} events, histories={len(self.qcf)} c2per={self.qcf.c2per:.3f} "
                f"history:{self.history_level} rc={self.rc}>")


def compare_sevt_run(pairs, indices=None, engine: str = "cython", *, c2cut=C2CUT, rule: str = "qcf",
                     c2max=C2MAX, n_threads=None, progress=False, run=None) -> SEvtRun:
    """Compare SEvtPairs one after the other; the combined table sums their counts per history.

    Every event is decoded with the flag table of the first (a different era is an error)."""
    c2max = check_c2max(c2max)
    pairs = list(pairs)
    if not pairs:
        raise InputError("a run needs at least one SEvt event pair")
    indices = list(range(len(pairs))) if indices is None else list(indices)
    era = pairs[0].era
    for p in pairs[1:]:
        if p.era != era:
            raise InputError(f"{p.a.path}: decoded with the {p.era} flags but {pairs[0].a.path} with {era}; "
                             "the events of a run must share an era (--flags ERA)")
    events, offsets, total = [], [], 0
    cluster = None
    if engine == "dask":  # one local cluster for every event of the run
        from .engines.distributed import DaskEngine
        for p in pairs:
            check_sevt_photons(p)
            p.seqhis()
        engine = cluster = DaskEngine(n_threads=n_threads)
    try:
        for p in pairs:
            events.append(compare_sevt(p, engine, c2cut=c2cut, rule=rule, c2max=c2max, n_threads=n_threads,
                                       progress=progress))
            offsets.append(total)
            total += p.n
    finally:
        if cluster is not None:
            cluster.close()
    engine = "dask" if is_dask(engine) else engine
    counts = combine_counts([e.counts for e in events], offsets)
    first = events[0].qcf
    hits = [e.qcf.hits for e in events]
    combined_hits = None
    if any(h is not None for h in hits):
        from .qcf import HitComparison
        combined_hits = HitComparison(sum(h.a for h in hits if h), sum(h.b for h in hits if h),
                                      all(h is not None and h.present_a for h in hits),
                                      all(h is not None and h.present_b for h in hits))
    notes = []
    if len(events) > 1:
        notes = [f"combined table of {len(events)} events (indices {', '.join(map(str, indices))}): first_a/"
                 f"first_b count photons over the events in index order, event starts "
                 f"{', '.join(f'{i}@{o}' for i, o in zip(indices, offsets))}"]
    table = QCFTable(counts, era, first.c2cut, rule, hits=combined_hits, layout="sevt",
                     era_source=pairs[0].era_source, era_evidence=pairs[0].era_evidence, notes=notes,
                     n_a=total, n_b=total, paths=(f"{run}/A*", f"{run}/B*") if run is not None else ("A*", "B*"))
    return SEvtRun(events, indices, table, counts, offsets, c2max, engine, None if run is None else Path(run))
