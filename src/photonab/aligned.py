"""The aligned comparison of an SEvt pair (``--aligned``): photon-by-photon deviations.

When Opticks (A) and Geant4 (B) ran with aligned random streams, photon i is the same
photon on both sides, and every photon whose full two-word history is the same in A and
B can be compared value by value. Per table (``pos``, ``time``, ``mom``, ``pol``, ``wl``
from record.npy over every record slot, ``photon`` from photon.npy) and per history:
nitem, photons beyond each of three cuts (physical units), NaN count, max, min, sum
and the most deviant photon; levels, return-code bits, the chase of the worst photons
and the check that the pair really is aligned. Definitions: docs/aligned.md.

Two engines give bit-identical aggregates: ``"cython"`` (one pass of
cyext.AlignedAccumulator) and ``"numpy"`` (:func:`aggregate_numpy`, the reference).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import seqhis
from ._cyext import load as _load_cyext
from .cuts import LEVELS, TableCuts
from .engines.base import DeviationAggregate, no_progress
from .errors import InputError
from .qcf import HistoryCounts128, count_cython, count_numpy

_cyext = _load_cyext()

#: the tables, in the kernel's order (defined once, in cyext)
TABLES: tuple[str, ...] = tuple(_cyext.ALIGNED_TABLES)
RECORD_TABLES = tuple(t for t in TABLES if t != "photon")
#: photons per summation block: sums are added in photon order within a block, blocks in order
SUM_BLOCK: int = _cyext.SUM_BLOCK
ENGINES = ("cython", "numpy")
UNITS = {"pos": "mm", "time": "ns", "mom": "", "pol": "", "wl": "nm", "photon": "mixed"}
DESCRIPTIONS = {
    "pos": "record.npy positions x,y,z of every step point",
    "time": "record.npy times of every step point",
    "mom": "record.npy momentum directions x,y,z of every step point",
    "pol": "record.npy polarization directions x,y,z of every step point",
    "wl": "record.npy wavelengths of every step point",
    "photon": "photon.npy final position, time, momentum, polarization, wavelength",
}
#: float offsets in a 16-float sphoton (q0 pos.xyz t, q1 mom.xyz + integer, q2 pol.xyz wl, q3 integers)
COMPONENTS = {"pos": (0, 1, 2), "time": (3,), "mom": (4, 5, 6), "pol": (8, 9, 10), "wl": (11,),
              "photon": (0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11)}
#: default (warning, error, fatal) cuts, physical units; justification in docs/aligned.md
DEFAULT_CUTS = {"pos": (0.01, 0.05, 0.1), "time": (0.001, 0.005, 0.01), "mom": (1e-4, 1e-3, 1e-2),
                "pol": (1e-4, 1e-3, 1e-2), "wl": (0.01, 0.05, 0.1), "photon": (0.01, 0.05, 0.1)}
#: return-code bit of a failing table (ERROR or FATAL): the 2019 analogues keep their bits
#: (pos = rpost 1, time = rtime 2, pol = rpol 4, photon = ox 8), history 16 is the history
#: table's, mom shares the direction bit 4 with pol, wl takes 32 (64 is the input-error exit)
RC_BIT = {"pos": 1, "time": 2, "mom": 4, "pol": 4, "photon": 8, "wl": 32}
#: the alignment score below which --aligned warns (0 = chance, 1 = every possible photon aligned)
ALIGN_MIN_SCORE = 0.5
#: photons per kernel call (a multiple of SUM_BLOCK): bounds the block-sum scratch
CHUNK = 16 * SUM_BLOCK

NOT_ALIGNED_MESSAGE = (
    "photon-by-photon deviations are not computed for SEvt pairs without --aligned because A and B "
    "use independent random streams by default: photon i of A and photon i of B are different photons, "
    "so only their statistics (the history table, hits) can be compared. If the pair was run aligned "
    "(U4Random with the same precooked random sequences, one stream per photon), ask for --aligned.")


# ---------------------------------------------------------------- cuts

def aligned_cuts(cuts=None, tables=TABLES) -> dict[str, TableCuts]:
    """TableCuts (physical, ``bin`` 1.0) of each table: DEFAULT_CUTS, overridden per table by
    ``cuts`` ({table: (warning, error, fatal)}). Cuts must be three increasing finite values >= 0."""
    cuts = dict(cuts or {})
    unknown = sorted(set(cuts) - set(TABLES))
    if unknown:
        raise InputError(f"aligned cuts for unknown tables {', '.join(unknown)}: expected {', '.join(TABLES)}")
    out = {}
    for t in tables:
        try:
            values = tuple(float(c) for c in cuts.get(t, DEFAULT_CUTS[t]))
        except (TypeError, ValueError):
            raise InputError(f"aligned cuts of {t}: expected three numbers, got {cuts.get(t)!r}") from None
        if len(values) != 3 or not all(math.isfinite(v) for v in values) or not 0 <= values[0] <= values[1] <= values[2]:
            raise InputError(f"aligned cuts of {t} must be three increasing finite values >= 0 "
                             f"(warning, error, fatal), got {values}")
        out[t] = TableCuts(t, values, 1.0)
    return out


def _tables(tables) -> tuple[str, ...]:
    if tables is None:
        return TABLES
    if isinstance(tables, str):
        tables = [t for t in tables.replace(",", " ").split() if t]
    tables = tuple(dict.fromkeys(tables))
    bad = [t for t in tables if t not in TABLES]
    if bad or not tables:
        raise InputError(f"aligned tables {', '.join(bad) or '(none)'}: expected some of {', '.join(TABLES)}")
    return tuple(t for t in TABLES if t in tables)  # the kernel's order


# ---------------------------------------------------------------- aggregates

@dataclass(eq=False)
class AlignedAggregate(DeviationAggregate):
    """A DeviationAggregate whose histories are 128 bits: ``codes`` holds the lo word (slots
    0-15) and ``code_hi`` the hi word (slots 16-31) of each row. ``max``, ``min``, ``sum`` are
    physical float64 (``cuts.bin`` is 1.0)."""

    code_hi: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # uint64 (G,)

    @property
    def lo(self) -> np.ndarray:
        return self.codes

    @property
    def hi(self) -> np.ndarray:
        return self.code_hi

    def labels(self, era=None) -> list[str]:
        return [seqhis.label2(int(lo), int(hi), era) for lo, hi in zip(self.codes, self.code_hi)]

    def hex(self) -> list[str]:
        return [seqhis.hex128(int(lo), int(hi)) for lo, hi in zip(self.codes, self.code_hi)]



def _aggregates(rows, sums, lo, hi, tables, cuts) -> dict[str, AlignedAggregate]:
    out = {}
    for c, t in enumerate(tables):
        r = rows[c]
        out[t] = AlignedAggregate(t, codes=np.asarray(lo, np.uint64).copy(), nitem=r["nitem"].copy(),
                                  ndisc=r["ndisc"].copy(), nnan=r["nnan"].copy(), max=r["max"].copy(),
                                  min=r["min"].copy(), sum=np.asarray(sums[c], np.float64).copy(),
                                  argmax=r["argmax"].copy(), cuts=cuts[t],
                                  code_hi=np.asarray(hi, np.uint64).copy())
    return out


def photon_deviations(record_a, record_b, photon_a, photon_b, index, tables) -> np.ndarray:
    """(len(tables), k) float64 deviations of photons ``index``: max |float64(a) - float64(b)|
    over the table's values (every record slot), NaN when any difference is NaN."""
    index = np.asarray(index, np.intp)
    out = np.zeros((len(tables), len(index)))
    rec = [t for t in tables if t != "photon"]
    if rec:
        ra = np.asarray(record_a[index], np.float64).reshape(len(index), -1, 16)
        rb = np.asarray(record_b[index], np.float64).reshape(len(index), -1, 16)
        for t in rec:
            k = list(COMPONENTS[t])
            diff = np.abs(ra[..., k] - rb[..., k]).reshape(len(index), -1)
            out[tables.index(t)] = np.max(diff, axis=1, initial=0.0)
    if "photon" in tables:
        k = list(COMPONENTS["photon"])
        pa = np.asarray(photon_a[index], np.float64).reshape(len(index), 16)[:, k]
        pb = np.asarray(photon_b[index], np.float64).reshape(len(index), 16)[:, k]
        out[tables.index("photon")] = np.max(np.abs(pa - pb), axis=1, initial=0.0)
    return out


def _keys(words) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(words, np.uint64).reshape(-1, 2)).view("V16").ravel()


def _lookup_numpy(lo, hi, words) -> np.ndarray:
    """Group of each (N, 2) history row in the index (lo, hi), -1 when absent."""
    g = len(lo)
    keys = np.concatenate([_keys(np.stack([lo, hi], axis=1)), _keys(words)])
    _, inv = np.unique(keys, return_inverse=True)
    inv = inv.ravel()
    group = np.full(inv.max(initial=-1) + 1, -1, np.int64)
    group[inv[:g]] = np.arange(g)
    return group[inv[g:]]


def aggregate_numpy(seqhis_a, seqhis_b, record_a, record_b, photon_a, photon_b, lo, hi, tables,
                    cut_values, progress=no_progress) -> dict:
    """The reference engine: the same ``rows``/``sums``/``n_aligned``/``n_unknown`` as
    cyext.AlignedAccumulator.result(), bit for bit, in plain numpy (per SUM_BLOCK block:
    sums in photon order within the block, blocks added in order)."""
    cyext = _cyext
    tables = tuple(tables)
    cut = np.asarray(cut_values, np.float64).reshape(len(tables), 3)
    T, G = len(tables), len(lo)
    n = len(seqhis_a)
    rows = cyext.new_final_partials(T * G, 1)[0].reshape(T, G)
    sums = np.zeros((T, G))
    n_aligned = n_unknown = 0
    big = np.iinfo(np.int64).max
    with progress(n, "aligned deviations") as bar:
        for s in range(0, n, SUM_BLOCK):
            e = min(s + SUM_BLOCK, n)
            sa, sb = np.asarray(seqhis_a[s:e]), np.asarray(seqhis_b[s:e])
            idx = np.flatnonzero((sa == sb).all(axis=1)) + s
            n_aligned += len(idx)
            if G == 0 or len(idx) == 0:
                n_unknown += len(idx) if G == 0 else 0
                bar.update(e - s)
                continue
            g = _lookup_numpy(lo, hi, np.asarray(seqhis_a[idx]))
            n_unknown += int((g < 0).sum())
            idx, g = idx[g >= 0], g[g >= 0]
            dev = photon_deviations(record_a, record_b, photon_a, photon_b, idx, tables)
            for c in range(T):
                d, r = dev[c], rows[c]
                nan = np.isnan(d)
                r["nitem"] += np.bincount(g, minlength=G)
                r["nnan"] += np.bincount(g[nan], minlength=G)
                for k in range(3):
                    r["ndisc"][:, k] += np.bincount(g[nan | (d > cut[c, k])], minlength=G)
                gf, df, xf = g[~nan], d[~nan], idx[~nan]
                bmax = np.full(G, -np.inf)
                np.maximum.at(bmax, gf, df)
                bmin = np.full(G, np.inf)
                np.minimum.at(bmin, gf, df)
                at = df == bmax[gf]
                barg = np.full(G, big, np.int64)
                np.minimum.at(barg, gf[at], xf[at])
                old = r["argmax"].copy()
                old[old < 0] = big
                arg = np.where(bmax > r["max"], barg, np.where(bmax == r["max"], np.minimum(old, barg), old))
                r["argmax"] = np.where(arg == big, -1, arg)
                r["max"] = np.maximum(r["max"], bmax)
                r["min"] = np.minimum(r["min"], bmin)
                bsum = np.zeros(G)
                np.add.at(bsum, gf, df)  # unbuffered, in photon order
                sums[c] += bsum
            bar.update(e - s)
    return {"rows": rows, "sums": sums, "n_aligned": int(n_aligned), "n_unknown": int(n_unknown)}


def aggregate_cython(seqhis_a, seqhis_b, record_a, record_b, photon_a, photon_b, lo, hi, tables,
                     cut_values, n_threads=None, chunk: int = CHUNK, progress=no_progress) -> dict:
    """One pass of cyext.AlignedAccumulator over ``chunk``-photon ranges."""
    if chunk <= 0 or chunk % SUM_BLOCK:
        raise ValueError(f"chunk must be a positive multiple of SUM_BLOCK ({SUM_BLOCK})")
    try:
        acc = _cyext.AlignedAccumulator(_cyext.GroupIndex128(lo, hi), tables, cut_values, n_threads)
    except ValueError as exc:
        if "n_threads" in str(exc):
            raise InputError(f"threads: {exc}") from None
        raise
    n = len(seqhis_a)
    with progress(n, "aligned deviations") as bar:
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            acc.add(seqhis_a, seqhis_b, record_a, record_b, photon_a, photon_b, s, e)
            bar.update(e - s)
    return acc.result()


# ---------------------------------------------------------------- the chance-alignment check

@dataclass(frozen=True)
class AlignmentCheck:
    """How aligned the pair looks: photons with equal histories photon by photon (``n_aligned``)
    against what the history frequencies give by chance (``expected`` = sum_h a_h b_h / N, the
    mean for independent streams) and at most (``possible`` = sum_h min(a_h, b_h)).

    ``score`` = (n_aligned - expected) / (possible - expected): about 0 for independent streams,
    1 when every photon that could share its history does; 1.0 when possible == expected (the
    frequencies leave nothing to tell). ``warn`` when score < ALIGN_MIN_SCORE.
    """

    n: int
    n_aligned: int
    expected: float
    possible: int
    score: float
    z: float
    warn: bool

    @property
    def fraction(self) -> float:
        return self.n_aligned / self.n if self.n else 0.0

    @property
    def expected_fraction(self) -> float:
        return self.expected / self.n if self.n else 0.0

    @property
    def message(self) -> str | None:
        """The warning text (None when the pair looks aligned)."""
        if not self.warn:
            return None
        return (f"--aligned, but A and B do not look aligned: {self.n_aligned} of {self.n} photons "
                f"({100 * self.fraction:.2f}%) have the same history in A and B photon by photon, while "
                f"independent random streams would give about {self.expected:.0f} "
                f"({100 * self.expected_fraction:.2f}%) by chance from the history frequencies alone, and "
                f"up to {self.possible} could (alignment score {self.score:.2f}, 0 = chance, 1 = aligned). "
                "The deviation tables compare photons that share a history by accident; was B run "
                "with U4Random and the same precooked random sequences as A?")


def alignment_check(counts: HistoryCounts128, n_aligned: int, n: int | None = None,
                    min_score: float = ALIGN_MIN_SCORE) -> AlignmentCheck:
    """The chance-alignment check of a pair from its history counts and aligned photon count."""
    a = np.asarray(counts.a, np.float64)
    b = np.asarray(counts.b, np.float64)
    n = int(a.sum()) if n is None else int(n)
    if n <= 0:
        return AlignmentCheck(0, 0, 0.0, 0, 1.0, 0.0, False)
    expected = float(math.fsum(a * b) / n)
    possible = int(np.minimum(counts.a, counts.b).sum())
    # variance of the matches of a random pairing with these frequencies, to first order
    var = max(float(math.fsum(a * b * (n - a) * (n - b))) / (n * n * max(n - 1, 1)), 1e-300)
    z = (n_aligned - expected) / math.sqrt(var)
    span = possible - expected
    score = 1.0 if span <= 1e-9 * max(1.0, possible) else (n_aligned - expected) / span
    return AlignmentCheck(n, int(n_aligned), expected, possible, float(score), float(z),
                          bool(score < min_score))


# ---------------------------------------------------------------- tables with levels

class AlignedTable:
    """One aligned table: rows = histories with aligned photons, ordered by nitem descending
    then (hi, lo); per row the physical max/min/mean, the level, the worst photon."""

    def __init__(self, aggregate: AlignedAggregate, era=None):
        agg = aggregate.nonempty()
        order = np.lexsort((agg.codes, agg.code_hi, -agg.nitem))
        self.aggregate = agg = agg.rows(order)
        self.table, self.cuts, self.era = agg.table, agg.cuts, era
        self.unit = UNITS[self.table]
        nfinite = agg.nitem - agg.nnan
        has = nfinite > 0
        self.mx = np.where(has, agg.max, np.nan)
        self.mn = np.where(has, agg.min, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.avg = np.where(has, agg.sum / np.where(has, nfinite, 1), np.nan)
            self.fdisc = agg.ndisc / np.maximum(agg.nitem, 1)[:, None]
        self.level_index = np.select([(agg.ndisc[:, 2] > 0) | (agg.nnan > 0), agg.ndisc[:, 1] > 0,
                                      agg.ndisc[:, 0] > 0], [3, 2, 1], 0)

    def __len__(self):
        return len(self.aggregate.codes)

    @property
    def level(self) -> str:
        return LEVELS[int(self.level_index.max(initial=0))]

    @property
    def fails(self) -> bool:
        return self.level in ("ERROR", "FATAL")

    @property
    def rc(self) -> int:
        return RC_BIT[self.table] if self.fails else 0

    @property
    def nitem_total(self) -> int:
        return int(self.aggregate.nitem.sum())

    def labels(self) -> list[str]:
        return self.aggregate.labels(self.era)

    def worst_rows(self, level: str = "WARNING") -> np.ndarray:
        """Rows at or above ``level``, worst level first, then by max (NaN first), then row order."""
        bad = np.flatnonzero(self.level_index >= LEVELS.index(level))
        mx = np.where(self.aggregate.nnan[bad] > 0, np.inf, np.nan_to_num(self.mx[bad], nan=-np.inf))
        return bad[np.lexsort((bad, -mx, -self.level_index[bad]))]

    def __repr__(self):
        return f"<AlignedTable {self.table} {len(self)} histories, level {self.level}>"


# ---------------------------------------------------------------- chase

@dataclass
class PhotonChase:
    """Photons of one table side by side: their deviation, history and A and B values."""

    table: str
    index: np.ndarray      # int64 (k,) photon index (of the compared, --msli-sliced photons)
    deviation: np.ndarray  # float64 (k,), NaN first
    lo: np.ndarray         # uint64 (k,) history words
    hi: np.ndarray
    nstep: np.ndarray      # int64 (k,) steps of each history (record slots in use)
    photon_a: np.ndarray | None  # (k, 4, 4) float32
    photon_b: np.ndarray | None
    record_a: np.ndarray | None  # (k, maxrec, 4, 4)
    record_b: np.ndarray | None
    era: str | None = None

    def __len__(self):
        return len(self.index)

    def labels(self) -> list[str]:
        return [seqhis.label2(int(lo), int(hi), self.era) for lo, hi in zip(self.lo, self.hi)]

    def side_by_side(self, j: int) -> np.ndarray:
        """(nstep, 2, 4, 4) of photon j: record slot s of A at [s, 0], of B at [s, 1]."""
        k = int(self.nstep[j])
        return np.stack([self.record_a[j, :k], self.record_b[j, :k]], axis=1)


def _photons(pair, index, table, deviation, era) -> PhotonChase:
    index = np.asarray(index, np.int64)
    words = np.asarray(pair.a.seqhis[index]) if len(index) else np.zeros((0, 2), np.uint64)
    rec = pair.a.record is not None and pair.b.record is not None
    pho = pair.a.photon is not None and pair.b.photon is not None
    return PhotonChase(table, index, np.asarray(deviation, np.float64), words[:, 0].copy(), words[:, 1].copy(),
                       seqhis.nstep2_array(words[:, 0], words[:, 1]).astype(np.int64),
                       np.asarray(pair.a.photon[index]) if pho else None,
                       np.asarray(pair.b.photon[index]) if pho else None,
                       np.asarray(pair.a.record[index]) if rec else None,
                       np.asarray(pair.b.record[index]) if rec else None, era)


def chase_photons(pair, table: str, history=None, n: int = 10, min_dev: float = 0.0,
                  progress=no_progress) -> PhotonChase:
    """The ``n`` most deviant aligned photons of ``table`` (NaN first, then by deviation, the
    lowest index on ties), of one history (a label like ``"TO BT SA"`` or (lo, hi)) or of all,
    with deviation >= ``min_dev``. A numpy pass over the aligned photons (on demand)."""
    table = _tables([table])[0]
    sa, sb, ra, rb, pa, pb, notes = _arrays(pair, (table,))
    want = None
    if history is not None:
        want = seqhis.code2(history, pair.era) if isinstance(history, str) else tuple(int(w) for w in history)
    best_i, best_d = np.zeros(0, np.int64), np.zeros(0)
    with progress(len(sa), f"chase {table}") as bar:
        for s in range(0, len(sa), SUM_BLOCK):
            e = min(s + SUM_BLOCK, len(sa))
            wa, wb = np.asarray(sa[s:e]), np.asarray(sb[s:e])
            ok = (wa == wb).all(axis=1)
            if want is not None:
                ok &= (wa[:, 0] == np.uint64(want[0])) & (wa[:, 1] == np.uint64(want[1]))
            idx = np.flatnonzero(ok) + s
            d = photon_deviations(ra, rb, pa, pb, idx, (table,))[0]
            keep = np.isnan(d) | (d >= min_dev)
            best_i, best_d = np.concatenate([best_i, idx[keep]]), np.concatenate([best_d, d[keep]])
            key = np.where(np.isnan(best_d), np.inf, best_d)
            top = np.lexsort((best_i, -key))[:n]
            best_i, best_d = best_i[top], best_d[top]
            bar.update(e - s)
    return _photons(pair, best_i, table, best_d, pair.era)


# ---------------------------------------------------------------- the entry point

@dataclass
class AlignedResult:
    """Everything ``compare --aligned`` shows for an SEvt pair.

    ``tables``: {name: AlignedTable} of the requested tables (kernel order); ``aggregates``:
    their raw AlignedAggregate (every group, in the index order, sorted by (hi, lo));
    ``check``: the chance-alignment check; ``worst``: {name: PhotonChase} of the worst photon of
    each of the worst rows (up to ``chase`` rows at WARNING or above); ``rc``: OR of the failing
    tables' RC_BIT; ``notes``: what the pair or the comparison had to say.
    """

    n: int
    n_aligned: int
    tables: dict
    aggregates: dict
    check: AlignmentCheck
    counts: HistoryCounts128
    worst: dict
    era: str | None
    engine: str
    notes: list

    @property
    def rc(self) -> int:
        rc = 0
        for t in self.tables.values():
            rc |= t.rc
        return rc

    @property
    def level(self) -> str:
        return LEVELS[max((LEVELS.index(t.level) for t in self.tables.values()), default=0)]

    @property
    def warnings(self) -> list[str]:
        return [self.check.message] if self.check.warn else []


def _arrays(pair, tables):
    """seqhis (N, 2) of A and B cut to the pair's n, and the record/photon arrays the tables need."""
    n = pair.n
    notes = []
    sa, sb = pair.a.seqhis[:n], pair.b.seqhis[:n]
    ra = rb = pa = pb = None
    if any(t in RECORD_TABLES for t in tables):
        ra = pair.a.require("record", "the aligned record tables")[:n]
        rb = pair.b.require("record", "the aligned record tables")[:n]
        m = min(ra.shape[1], rb.shape[1])
        if ra.shape[1] != rb.shape[1]:
            notes.append(f"A and B differ in maxrec ({ra.shape[1]}, {rb.shape[1]}); the record tables "
                         f"compare the first {m} slots")
            ra, rb = ra[:, :m], rb[:, :m]
    if "photon" in tables:
        pa = pair.a.require("photon", "the aligned photon table")[:n]
        pb = pair.b.require("photon", "the aligned photon table")[:n]
    return sa, sb, ra, rb, pa, pb, notes


def compare_aligned(pair, tables=None, cuts=None, n_threads=None, engine: str = "cython", progress=None,
                    chase: int = 5, counts: HistoryCounts128 | None = None) -> AlignedResult:
    """The aligned comparison of an SEvt pair (photonab.sevt.SEvtPair).

    tables   names from TABLES (a list or "pos,time"); None = all
    cuts     {table: (warning, error, fatal)} overriding DEFAULT_CUTS (physical units)
    engine   "cython" (compiled, threaded) or "numpy" (the reference); same aggregates
    chase    worst rows per table whose worst photon is returned side by side (``worst``)
    counts   the pair's HistoryCounts128 when already computed (e.g. by the QCF table)
    """
    if engine not in ENGINES:
        raise InputError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if getattr(pair, "layout", None) != "sevt":
        raise InputError("the aligned comparison is for SEvt pairs; the 2019 layout has its own "
                         "deviation tables")
    tables = _tables(tables)
    table_cuts = aligned_cuts(cuts, tables)
    progress = no_progress if progress is None else progress
    pair.a.require("seq", "the aligned comparison"), pair.b.require("seq", "the aligned comparison")
    sa, sb, ra, rb, pa, pb, notes = _arrays(pair, tables)
    notes = list(getattr(pair, "notes", [])) + notes
    if counts is None:
        counts = (count_cython(sa, sb, n_threads, progress=progress) if engine == "cython"
                  else count_numpy(sa, sb))
    both = (counts.a > 0) & (counts.b > 0)
    lo, hi = counts.lo[both], counts.hi[both]
    cut_values = np.array([table_cuts[t].values for t in tables], np.float64)
    run = aggregate_cython if engine == "cython" else aggregate_numpy
    kw = {"n_threads": n_threads} if engine == "cython" else {}
    res = run(sa, sb, ra, rb, pa, pb, lo, hi, tables, cut_values, progress=progress, **kw)
    if res["n_unknown"]:
        raise RuntimeError(f"{res['n_unknown']} aligned photons have a history missing from the index")
    aggs = _aggregates(res["rows"], res["sums"], lo, hi, tables, table_cuts)
    era = getattr(pair, "era", None)
    views = {t: AlignedTable(aggs[t], era) for t in tables}
    check = alignment_check(counts, res["n_aligned"], len(sa))
    worst = {}
    for t, view in views.items():
        rows = view.worst_rows("WARNING")[:max(int(chase), 0)]
        rows = rows[view.aggregate.argmax[rows] >= 0]
        idx = view.aggregate.argmax[rows]
        worst[t] = _photons(pair, idx, t, view.mx[rows], era)
    if res["n_aligned"] == 0 and len(sa):
        notes.append("no photon has the same history in A and B: nothing to compare photon by photon")
    return AlignedResult(len(sa), res["n_aligned"], views, aggs, check, counts, worst, era, engine, notes)
