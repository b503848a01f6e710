"""The QCF history comparison of an SEvt pair (unaligned A vs B), as Opticks' ``ana/qcf.py``.

Rows are the union of the histories of A and B (two-word seqhis, up to 32 steps),
ordered by max(a, b) descending; ties in the byte order of QCF's label strings, first
to last (a stable order; QCF's own sort leaves ties unspecified). Per row: the counts,
the first photon index in A and in B (-1 when absent) and the chi-square term. The
summary follows QCF: ``c2`` only on rows with ``a + b > c2cut`` (strictly), rows with one
side 0 included, ``ndf = c2n``, ``c2per = c2sum / c2n``, p-value of chi2(c2sum, c2n);
dropouts ``bzero`` (a > 10, b == 0) and ``azero`` (b > 10, a == 0). We compute in float64
(QCF uses float32) and keep QCF's float32 values beside ours; ``rule="sseq_index"``
follows the C++ ``sseq_index_ab`` instead (dropouts left out of the chi-square).
Definitions and the differences: docs/sevt.md, section 3.

The counting runs in the compiled kernel (cyext.History128Counter) or, with
``engine="numpy"``, in plain numpy (a stable lexsort of the uint64 words): both give the same
table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from .stats import chi2_cdf, chi2_sf

from . import seqhis
from .errors import InputError

#: rows enter the chi-square when a + b > C2CUT (QCF's C2CUT environment default)
C2CUT = 30
#: a dropout row has more than this many photons on one side and none on the other
DROPOUT_MIN = 10
RULES = ("qcf", "sseq_index")
ENGINES = ("cython", "numpy")


# ---------------------------------------------------------------- counting


@dataclass(frozen=True)
class HistoryCounts128:
    """Per distinct two-word history (sorted by (hi, lo)): counts and first photon index in A and B."""

    lo: np.ndarray       # uint64 (G,) slots 0-15
    hi: np.ndarray       # uint64 (G,) slots 16-31
    a: np.ndarray        # int64 (G,)
    b: np.ndarray        # int64 (G,)
    first_a: np.ndarray  # int64 (G,), -1 when a == 0
    first_b: np.ndarray  # int64 (G,), -1 when b == 0

    def __len__(self):
        return len(self.lo)

    def equals(self, other: "HistoryCounts128") -> bool:
        return all(np.array_equal(getattr(self, f), getattr(other, f))
                   for f in ("lo", "hi", "a", "b", "first_a", "first_b"))


def _check_words(seqhis_a, seqhis_b):
    sa, sb = np.asarray(seqhis_a), np.asarray(seqhis_b)
    for side, s in (("A", sa), ("B", sb)):
        if s.ndim != 2 or s.shape[1] != 2 or s.dtype != np.uint64:
            raise InputError(f"{side} histories must be (N, 2) uint64 words (seq.npy[:, 0]), "
                             f"got {s.shape} {s.dtype}")
    if len(sa) != len(sb):
        raise InputError(f"A and B histories differ in length: {len(sa)} and {len(sb)}")
    return sa, sb


def count_cython(seqhis_a, seqhis_b, n_threads=None, chunk: int = 1 << 20, progress=None) -> HistoryCounts128:
    """Counts with the compiled kernel, streamed in chunks of ``chunk`` photons."""
    from .engines.compiled import import_cyext
    cyext = import_cyext()
    sa, sb = _check_words(seqhis_a, seqhis_b)
    counter = cyext.History128Counter()
    n = len(sa)
    bar = progress(n, "histories") if progress is not None else None
    try:
        if bar is not None:
            bar.__enter__()
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            counter.add(sa, sb, start, stop, n_threads)
            if bar is not None:
                bar.update(stop - start)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    lo, hi, counts, first = counter.result()
    return HistoryCounts128(lo, hi, counts[:, 0], counts[:, 1], first[:, 0], first[:, 1])


def _unique_words(lo: np.ndarray, hi: np.ndarray):
    """Distinct (lo, hi) of one side sorted by (hi, lo), with counts and the first index of each.

    One stable np.lexsort over the plain uint64 words (np.unique over 16-byte structured
    keys compares them field by field in Python-level dtype code: 30x slower at 5M)."""
    order = np.lexsort((lo, hi))  # stable: within a history, photons stay in index order
    slo, shi = lo[order], hi[order]
    new = np.ones(len(order), bool)
    if len(order):
        new[1:] = (slo[1:] != slo[:-1]) | (shi[1:] != shi[:-1])
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(order))).astype(np.int64)
    return slo[starts], shi[starts], counts, order[starts].astype(np.int64)


def count_numpy(seqhis_a, seqhis_b) -> HistoryCounts128:
    """The same counts in plain numpy: a stable lexsort of the uint64 words per side, then the union."""
    sa, sb = _check_words(seqhis_a, seqhis_b)
    sides = [_unique_words(np.ascontiguousarray(s[:, 0]), np.ascontiguousarray(s[:, 1])) for s in (sa, sb)]
    lo = np.concatenate([sides[0][0], sides[1][0]])
    hi = np.concatenate([sides[0][1], sides[1][1]])
    order = np.lexsort((lo, hi))
    slo, shi = lo[order], hi[order]
    new = np.ones(len(order), bool)
    if len(order):
        new[1:] = (slo[1:] != slo[:-1]) | (shi[1:] != shi[:-1])
    group = np.cumsum(new) - 1  # union row of each (side, history) entry, in sorted order
    g = int(new.sum())
    cnt = np.zeros((2, g), np.int64)
    first = np.full((2, g), -1, np.int64)
    na = len(sides[0][0])
    for side, (_, _, k, x) in enumerate(sides):
        mine = (order < na) if side == 0 else (order >= na)
        pos = order[mine] - (0 if side == 0 else na)
        cnt[side, group[mine]] = k[pos]
        first[side, group[mine]] = x[pos]
    return HistoryCounts128(slo[new], shi[new], cnt[0], cnt[1], first[0], first[1])


# ---------------------------------------------------------------- hits


@dataclass(frozen=True)
class HitComparison:
    """A vs B hit counts (``len(hit.npy)``) with Poisson errors, as Opticks' SABHit.

    SABHit adds the relative errors linearly (``*_err_linear``); the quadrature sum
    (``*_err_quadrature``) is the usual estimate for uncorrelated counts. A side
    without hit.npy counts 0 (``present_*`` False), as in SABHit.
    """

    a: int
    b: int
    present_a: bool = True
    present_b: bool = True

    @property
    def a_err(self) -> float:
        return math.sqrt(self.a)

    @property
    def b_err(self) -> float:
        return math.sqrt(self.b)

    def _rel(self):
        return (self.a_err / self.a if self.a else 0.0), (self.b_err / self.b if self.b else 0.0)

    @property
    def ab(self) -> float:
        return self.a / self.b if self.b else 0.0

    @property
    def ba(self) -> float:
        return self.b / self.a if self.a else 0.0

    @property
    def ab_err_linear(self) -> float:
        ra, rb = self._rel()
        return (ra + rb) * self.ab

    @property
    def ba_err_linear(self) -> float:
        ra, rb = self._rel()
        return (ra + rb) * self.ba

    @property
    def ab_err_quadrature(self) -> float:
        return math.hypot(*self._rel()) * self.ab

    @property
    def ba_err_quadrature(self) -> float:
        return math.hypot(*self._rel()) * self.ba


def compare_hits(pair) -> HitComparison | None:
    """Hits of an SEvtPair (None when neither side has hit.npy)."""
    ha, hb = pair.a.n_hits, pair.b.n_hits
    if ha is None and hb is None:
        return None
    return HitComparison(ha or 0, hb or 0, ha is not None, hb is not None)


# ---------------------------------------------------------------- the table


def label_order_keys(lo, hi, era) -> tuple[np.ndarray, np.ndarray]:
    """Two uint64 keys whose lexicographic order is the byte order of QCF's label strings.

    Each slot's nibble is replaced by the rank of its 3-byte token (seqhis.label_sort_rank)
    and the slots are packed first slot most significant: (key0, key1) = slots 0-15, 16-31.
    """
    rank = seqhis.label_sort_rank(era).astype(np.uint8)
    v = np.arange(256)
    lut = ((rank[v & 0xF].astype(np.uint16) << 4) | rank[v >> 4]).astype(np.uint8)
    keys = []
    for w in (lo, hi):
        b = np.ascontiguousarray(w, dtype="<u8").view(np.uint8).reshape(-1, 8)
        keys.append(np.ascontiguousarray(lut[b[:, ::-1]]).view("<u8").ravel())
    return keys[0], keys[1]


def row_order(mx: np.ndarray, k0: np.ndarray, k1: np.ndarray) -> np.ndarray:
    """QCF's row order: ``np.lexsort((k1, k0, -mx))`` (max(a, b) descending, then the
    label order), by cyext.lexorder's radix sort when the kernels are built: the same
    order, several times faster with a million histories (docs/kernels.md, "Sorting codes")."""
    from ._cyext import load
    try:
        cyext = load()
    except InputError:  # a source tree without its build: numpy's sort, the same order
        return np.lexsort((k1, k0, -mx))
    top = int(mx.max(initial=0))
    return cyext.lexorder((k1, k0, np.subtract(top, mx, dtype=np.int64).view(np.uint64)))


class QCFTable:
    """The QCF table of one SEvt pair: rows ordered, chi-square summary, dropouts, hits.

    Row arrays (same order): ``lo``, ``hi``, ``a``, ``b``, ``first_a``, ``first_b``,
    ``c2`` (float64), ``counted`` (row in the chi-square), ``c2_float32`` (QCF's term).
    Summary: ``c2sum``, ``c2n``, ``c2per``, ``pvalue`` (float64, ours), and ``qcf_float32``
    = QCF's own (c2sum, c2per, pvalue) in float32. ``bzero``/``azero`` are row indices.
    ``first_*`` index the compared photons; ``rows_a``/``rows_b`` map them to file rows.
    """

    def __init__(self, counts: HistoryCounts128, era: str, c2cut: float = C2CUT, rule: str = "qcf", *,
                 hits: HitComparison | None = None, layout: str = "sevt", era_source: str = "given",
                 era_evidence: str = "", meta_diff=(), notes=(), n_a: int | None = None,
                 n_b: int | None = None, rows_a=None, rows_b=None, paths=(None, None)):
        if rule not in RULES:
            raise InputError(f"unknown chi-square rule {rule!r}; choose one of {', '.join(RULES)}")
        try:
            c2cut = float(c2cut)
        except (TypeError, ValueError):
            raise InputError(f"c2cut {c2cut!r} must be a number") from None
        if not math.isfinite(c2cut) or c2cut < 0:
            raise InputError(f"c2cut {c2cut} must be a finite number >= 0")
        c2cut = int(c2cut) if c2cut.is_integer() else c2cut  # QCF's C2CUT is an int
        self.era = seqhis.flag_table(era).era
        self.era_source, self.era_evidence = era_source, era_evidence
        self.c2cut, self.rule, self.layout = c2cut, rule, layout
        self.hits, self.meta_diff, self.notes = hits, list(meta_diff), list(notes)
        self.paths = paths
        a, b = counts.a.astype(np.int64), counts.b.astype(np.int64)
        mx = np.maximum(a, b)
        order = row_order(mx, *label_order_keys(counts.lo, counts.hi, self.era))
        self.lo, self.hi = counts.lo[order], counts.hi[order]
        self.a, self.b = a[order], b[order]
        self.first_a, self.first_b = counts.first_a[order], counts.first_b[order]
        self.n_a = int(self.a.sum()) if n_a is None else int(n_a)
        self.n_b = int(self.b.sum()) if n_b is None else int(n_b)
        self.rows_a, self.rows_b = rows_a, rows_b
        total = self.a + self.b
        if rule == "qcf":
            self.counted = total > c2cut
        else:  # sseq_index_ab: dropout rows stay out of the chi-square
            self.counted = (self.a > 0) & (self.b > 0) & (total > c2cut)
        diff = (self.a - self.b).astype(np.float64)
        self.c2 = np.where(self.counted, diff * diff / np.where(total > 0, total, 1), 0.0)
        self.c2n = int(self.counted.sum())
        self.c2sum = math.fsum(self.c2[self.counted])  # exactly rounded: any row order (the others are 0)
        self.c2per = self.c2sum / self.c2n if self.c2n else math.nan
        self.pvalue = chi2_sf(self.c2sum, self.c2n) if self.c2n else 1.0
        self._qcf_float32()
        self.bzero = np.flatnonzero((self.a > DROPOUT_MIN) & (self.b == 0))
        self.azero = np.flatnonzero((self.b > DROPOUT_MIN) & (self.a == 0))
        self._labels = None

    def _qcf_float32(self):
        """QCF's own numbers (ana/nbase.py chi2 in float32, over QCF's rule), in this row order."""
        a32, b32 = self.a.astype(np.float32), self.b.astype(np.float32)
        msk = a32 + b32 > self.c2cut
        c2 = np.zeros_like(a32)
        c2[msk] = np.power(a32 - b32, 2)[msk] / (a32 + b32)[msk]
        n = int(msk.sum())
        s = c2.sum()  # float32 pairwise sum, as QCF; its last bits depend on the order of tied rows
        self.c2_float32 = c2
        with np.errstate(divide="ignore", invalid="ignore"):
            per = s / np.float32(n) if n else np.float32("nan")
        # QCF: 1 - chi2.cdf(c2sum, c2n), which loses small p-values to rounding (0 below ~1e-16)
        pv = 1.0 - chi2_cdf(float(s), n) if n else math.nan
        self.qcf_float32 = {"c2sum": float(s), "c2n": n, "c2per": float(per), "pvalue": pv}

    # -- rows
    def __len__(self):
        return len(self.lo)

    @property
    def labels(self) -> list[str]:
        """Row labels (the era's abbreviations, up to 32 steps), built on first use."""
        if self._labels is None:
            self._labels = seqhis.labels(self.lo, self.era, hi=self.hi)
        return self._labels

    def label(self, i: int) -> str:
        return self._labels[i] if self._labels is not None else seqhis.label2(self.lo[i], self.hi[i], self.era)

    def code(self, i: int, strip: bool = True) -> str:
        """Hex of row ``i``'s 128-bit history (hi word then lo)."""
        return seqhis.hex128(self.lo[i], self.hi[i], strip)

    @property
    def nstep(self) -> np.ndarray:
        return seqhis.nstep2_array(self.lo, self.hi)

    def file_row(self, side: str, i: int) -> int:
        """File row of row ``i``'s first photon in A or B (-1 when absent)."""
        first = (self.first_a if side == "a" else self.first_b)[i]
        rows = self.rows_a if side == "a" else self.rows_b
        return -1 if first < 0 else (int(first) if rows is None else rows[int(first)])

    @property
    def float32_differs(self) -> bool:
        """Does QCF's float32 summary differ from ours (beyond the float32 rounding of ours)?"""
        q = self.qcf_float32
        return q["c2n"] != self.c2n or q["c2sum"] != float(np.float32(self.c2sum))

    def __repr__(self):
        return (f"<QCFTable {len(self)} histories, c2sum/c2n {self.c2sum:.2f}/{self.c2n}, "
                f"p-value {self.pvalue:.3g}, flags {self.era}>")

    def render(self, limit: int | None = 25) -> str:
        from .render.qcf import render_qcf
        return render_qcf(self, limit)

    def _repr_pretty_(self, p, cycle):  # IPython shows the table
        p.text(repr(self) if cycle else self.render())


# ---------------------------------------------------------------- entry points


def is_dask(engine) -> bool:
    """``engine`` is "dask" or a DaskEngine object (the SEvt dask path, engines/sevt_dask.py)."""
    return engine == "dask" or getattr(engine, "name", None) == "dask"


def compare_seqhis(seqhis_a, seqhis_b, era: str, *, n_threads=None, c2cut: float = C2CUT, rule: str = "qcf",
                   engine: str = "cython", chunk: int = 1 << 20, progress=None, **table_kw) -> QCFTable:
    """The QCF table of two (N, 2) uint64 history arrays (``seq.npy[:, 0]``), decoded with ``era``.

    ``engine`` "cython" (compiled kernel, ``n_threads``, streamed in ``chunk`` photons)
    or "numpy" (plain numpy): identical tables. ``table_kw`` goes to :class:`QCFTable`.
    """
    if engine == "cython":
        counts = count_cython(seqhis_a, seqhis_b, n_threads, chunk, progress)
    elif engine == "numpy":
        counts = count_numpy(seqhis_a, seqhis_b)
    else:
        raise InputError(f"unknown engine {engine!r} for the QCF table; choose one of {', '.join(ENGINES)}")
    return QCFTable(counts, era, c2cut, rule, **table_kw)


def compare_histories(pair, n_threads=None, c2cut: float = C2CUT, progress=None, *, rule: str = "qcf",
                      engine="cython", chunk: int = 1 << 20) -> QCFTable:
    """The QCF table of an :class:`photonab.sevt.SEvtPair` (histories, hits, metadata).

    ``engine`` "cython", "numpy", or "dask" (a local dask cluster for this call) or a
    :class:`photonab.engines.distributed.DaskEngine` (kept open): identical tables.

    Histories are decoded with ``pair.era``; when A and B differ in photon count the
    first ``pair.n`` photons of each are compared (as QCF). ``progress`` is a factory
    ``progress(total, desc)`` returning a context manager with ``update(n)`` (as the
    engines use), or None. Raises InputError when seq.npy is missing on either side.
    """
    table_kw = dict(
        hits=compare_hits(pair), layout=pair.layout, era_source=pair.era_source,
        era_evidence=pair.era_evidence, meta_diff=pair.meta_diff, notes=pair.notes, n_a=pair.n, n_b=pair.n,
        rows_a=pair.a.file_rows, rows_b=pair.b.file_rows, paths=(str(pair.a.path), str(pair.b.path)))
    if is_dask(engine):  # tasks on dask workers open seq.npy themselves (engines/sevt_dask.py)
        from .engines.sevt_dask import count_dask
        pair.a.seqhis, pair.b.seqhis  # missing seq.npy: the InputError on the client, before any cluster
        counts = count_dask(pair, None if engine == "dask" else engine, progress, n_threads=n_threads)
        return QCFTable(counts, pair.era, c2cut, rule, **table_kw)
    sa = pair.a.seqhis[:pair.n]
    sb = pair.b.seqhis[:pair.n]
    return compare_seqhis(
        sa, sb, pair.era, n_threads=n_threads, c2cut=c2cut, rule=rule, engine=engine, chunk=chunk,
        progress=progress, **table_kw)


# ---------------------------------------------------------------- JSON fields


def _num(x):
    """float, or None for NaN/inf (strict JSON); the renderer of model adds NaN counts where it needs."""
    x = float(x)
    return x if math.isfinite(x) else None


def qcf_to_dict(table: QCFTable, stream: bool = False) -> dict:
    """The JSON fields of a QCF table: ``layout``, ``flags``, ``history`` (every row), ``hits``, ``meta``;
    with ``stream`` the rows are a photonab.render.json.Rows, made and written in chunks.

    Row: ``label``, ``code`` (hex of the 128-bit history), ``a``, ``b``, ``c2``, ``first_a``,
    ``first_b`` (indices of the compared photons, -1 when absent; ``first_a_row``/
    ``first_b_row`` give file rows when ``--msli`` moved them). ``history`` carries the
    summary (``c2sum``, ``c2n``, ``c2per``, ``pvalue``, ``c2cut``, ``rule``), ``bzero`` and
    ``azero`` (labels), and ``qcf_float32`` (QCF's float32 summary) when it differs.
    """
    from .render.json import Rows, float_texts, plain, string_texts
    moved = any(r is not None and r != range(len(r)) for r in (table.rows_a, table.rows_b))

    def rows(start, stop):  # the JSON text of rows [start, stop) (docs/json.md, "Large reports")
        lo, hi = table.lo[start:stop], table.hi[start:stop]
        cols = zip(string_texts(seqhis.labels(lo, table.era, hi=hi)), lo.tolist(), hi.tolist(),
                   table.a[start:stop].tolist(), table.b[start:stop].tolist(), float_texts(table.c2[start:stop]),
                   table.first_a[start:stop].tolist(), table.first_b[start:stop].tolist(), range(start, stop))
        # "code": seqhis.hex128(l, h) written out (a call per row costs a second at 2M rows)
        return ", ".join(
            f'{{"label": {label}, "code": "{f"{h:x}{l:016x}" if h else f"{l:x}"}", "a": {a}, "b": {b}, "c2": {c2}, '
            f'"first_a": {fa}, "first_b": {fb}'
            + (f', "first_a_row": {table.file_row("a", i)}, "first_b_row": {table.file_row("b", i)}}}'
               if moved else "}")
            for label, l, h, a, b, c2, fa, fb, i in cols)

    history = {"rule": table.rule, "c2cut": table.c2cut, "c2sum": table.c2sum, "c2n": table.c2n,
               "c2per": _num(table.c2per), "pvalue": _num(table.pvalue), "histories": len(table),
               "photons_a": table.n_a, "photons_b": table.n_b,
               "bzero": [table.label(i) for i in table.bzero], "azero": [table.label(i) for i in table.azero],
               "rows": Rows(len(table), rows)}
    if not stream:
        history = plain(history)
    if table.float32_differs:
        history["qcf_float32"] = {k: (_num(v) if k != "c2n" else v) for k, v in table.qcf_float32.items()}
    out = {"layout": table.layout,
           "flags": {"era": table.era, "source": table.era_source, "evidence": table.era_evidence},
           "history": history, "hits": None, "meta": [{"key": k, "a": va, "b": vb} for k, va, vb in table.meta_diff],
           "notes": table.notes}
    h = table.hits
    if h is not None:
        out["hits"] = {"a": h.a, "b": h.b, "a_err": h.a_err, "b_err": h.b_err, "present_a": h.present_a,
                       "present_b": h.present_b, "a/b": h.ab, "b/a": h.ba,
                       "a/b_err_linear": h.ab_err_linear, "b/a_err_linear": h.ba_err_linear,
                       "a/b_err_quadrature": h.ab_err_quadrature, "b/a_err_quadrature": h.ba_err_quadrature}
    return out
