"""The comparison tables: history counts A vs B, and per-history deviation tables.

Built from engine aggregates (:mod:`photonab.engines.base`); ordering, chi-square,
levels and return-code bits follow docs/tables.md and docs/verdict.md. The tables are
plain arrays; text, JSON and pictures are made from them in :mod:`photonab.render`.
"""
from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from .stats import chi2_sf

from . import seqhis
from .cuts import LEVELS, TABLES, UNITS
from .errors import InputError

if TYPE_CHECKING:  # annotations only: the engines load when a comparison runs (photonab.comparison)
    from .engines.base import DeviationAggregate, HistoryCounts

#: the original's chi-square rows need more than this many photons (a + b)
C2_MIN_COUNT = 30
#: the history table's levels on c2/ndf (WARNING, ERROR, FATAL), as the original's c2max
C2MAX = (1.5, 2.0, 2.5)
#: a history with more photons than this on one side and none on the other is a dropout
DROPOUT_MIN = 10
#: one return-code bit per failing table: rpost 1, rtime 2, rpol 4, ox 8, history 16
RC_BIT = {**{table: 1 << k for k, table in enumerate(TABLES)}, "history": 1 << len(TABLES)}
#: levels at which a table fails (sets its rc bit)
FAILING = ("ERROR", "FATAL")


def skip_mask(codes: np.ndarray, skip) -> np.ndarray:
    """True for rows to hide: ``skip`` is a ``--skip`` value (steps such as 'SC AB RE' and
    history patterns, separated by ','; the rule: docs/analysis.md, section 5)."""
    from .analysis import parse_skip
    if not skip:
        return np.zeros(len(codes), bool)
    return parse_skip(skip).history_mask(codes)


def check_c2max(c2max) -> tuple[float, float, float]:
    """Three increasing positive c2/ndf levels (WARNING, ERROR, FATAL)."""
    if isinstance(c2max, (str, bytes)) or not hasattr(c2max, "__len__"):
        raise InputError(f"c2max must be three numbers (warning, error, fatal), not {c2max!r}")
    try:
        values = tuple(float(x) for x in c2max)
    except (TypeError, ValueError):
        raise InputError(f"c2max must be three numbers (warning, error, fatal), not {c2max!r}") from None
    if len(values) != 3 or not 0 < values[0] <= values[1] <= values[2] or not np.isfinite(values).all():
        raise InputError(f"c2max must be three increasing positive numbers (warning, error, fatal), got {c2max!r}")
    return values


def c2_level_index(c2p: float, ndf: int, c2max=C2MAX) -> int:
    """The level (index into LEVELS) that c2/ndf alone gives: above c2max[k] is level k + 1;
    a table with ndf < 1 cannot fail on chi-square alone (INFO). Shared by the 2019 history
    table (ndf = counted rows - 1) and the SEvt QCF table (ndf = c2n), docs/verdict.md."""
    if ndf < 1 or not np.isfinite(c2p):
        return 0
    return int(np.searchsorted(c2max, c2p, side="left"))


def history_level_index(c2_level: int, dropouts: int, none_aligned: bool = False) -> int:
    """The history table's level (index into LEVELS): the c2/ndf level, at least ERROR when
    a history is a dropout, FATAL when photons were compared but none is aligned."""
    k = max(int(c2_level), LEVELS.index("ERROR") if dropouts else 0)
    return LEVELS.index("FATAL") if none_aligned else k


def history_reasons(c2p: float, c2_level: int, c2max, dropouts: int, none_aligned: bool = False,
                    c2_name: str = "c2/ndf") -> list[str]:
    """Why a history table is above INFO, in words (empty when it is INFO)."""
    out = []
    if none_aligned:
        out.append("no photon aligned: every history differs photon by photon")
    if c2_level:
        out.append(f"{c2_name} {c2p:.3f} > {c2max[c2_level - 1]:g} ({LEVELS[c2_level]})")
    if dropouts:
        out.append(f"{dropouts} dropout histories (> {DROPOUT_MIN} photons on one side, none on the other)")
    return out


def table_order(codes: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    """Row order by ``counts`` descending, then code ascending (ties in input order), as
    ``np.lexsort((codes, -counts))``; None when the rows are in that order already, so that
    a table takes its columns as they are (one photon per history: every count equal).

    Rows sorted by code (the engines' order) are ordered by one sort of uint64 keys
    ``(max - count) << bits | row``, which is O(G) faster than a two-key lexsort and
    gives the same permutation (the row number is the tie-break)."""
    n = len(codes)
    if n < 2:
        return None
    counts = np.ascontiguousarray(counts)  # one read of an engine column that may be strided
    by_code = bool((codes[:-1] <= codes[1:]).all())
    if by_code and bool((counts[:-1] >= counts[1:]).all()):
        return None
    if by_code:
        bits = (n - 1).bit_length()
        top, low = int(counts.max()), int(counts.min())
        if low >= 0 and top.bit_length() + bits <= 64:
            key = np.subtract(top, counts, dtype=np.int64).view(np.uint64)  # >= 0
            key <<= np.uint64(bits)
            key |= np.arange(n, dtype=np.uint64)
            key.sort()
            key &= np.uint64((1 << bits) - 1)
            return key.view(np.int64)
    return np.lexsort((codes, -np.asarray(counts, np.int64)))


def _take(values, rows):
    """``values`` at engine rows ``rows`` (None: all of them, as they are)."""
    return values if rows is None or values is None else values[rows]


def history_ratios(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """a/b, sqrt(a)/b, b/a, sqrt(b)/a where both are > 0, else NaN (float64, element by
    element, so any subset of rows gives the same numbers as the whole column)."""
    both = (a > 0) & (b > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.where(both, a / b, np.nan), np.where(both, np.sqrt(a) / b, np.nan),
                np.where(both, b / a, np.nan), np.where(both, np.sqrt(b) / a, np.nan))


class _Rows:
    """What the history and deviation tables share: row selection and levels."""

    codes: np.ndarray
    level_index: np.ndarray

    def __len__(self):
        return len(self.codes)

    def skip_mask(self, skip) -> np.ndarray:
        """True for the rows that ``skip`` (a --skip value or a photonab.analysis.View) hides."""
        if hasattr(skip, "mask"):
            return skip.mask(self)
        return skip_mask(self.codes, skip)

    def _view(self, skip, limit):
        """The rows a view shows (row numbers) and its hidden mask (None: nothing hidden).
        Without a hidden row or an order of its own, no per-row array is made."""
        order = skip.order_of(self) if hasattr(skip, "order_of") else None
        hide = self.skip_mask(skip) if skip else None
        if hide is not None and not hide.any():
            hide = None
        if hide is None:
            if order is None:
                return np.arange(*slice(limit).indices(len(self))), None
            return order[:limit], None
        kept = np.flatnonzero(~hide) if order is None else order[~hide[order]]
        return kept[:limit], hide

    def shown(self, limit: int | None = None, skip=()) -> np.ndarray:
        """Row numbers a view shows: rows not hidden by ``skip``, the first ``limit`` of them."""
        return self._view(skip, limit)[0]

    def hidden(self, limit: int | None = None, skip=()) -> dict:
        """Rows a view with ``limit`` and ``skip`` hides: how many, and how many of them fail
        (ERROR/FATAL), by the option that hid them."""
        shown, hide = self._view(skip, limit)
        bad = self.level_index >= LEVELS.index(FAILING[0])
        n_skip = 0 if hide is None else int(np.count_nonzero(hide))
        bad_skip = 0 if hide is None else int(np.count_nonzero(bad & hide))
        beyond = len(self) - n_skip - len(shown)
        bad_beyond = int(np.count_nonzero(bad)) - bad_skip - int(np.count_nonzero(bad[shown]))
        return {"rows": n_skip + beyond, "skip": n_skip, "limit": beyond, "failing": bad_skip + bad_beyond,
                "failing_skip": bad_skip, "failing_limit": bad_beyond}

    def labels(self, rows=None) -> list[str]:
        return seqhis.labels(self.codes if rows is None else self.codes[rows])

    @property
    def fails(self) -> bool:
        """A table fails at ERROR or FATAL."""
        return self.level in FAILING

    def worst_rows(self, level: str = "ERROR") -> np.ndarray:
        """Row numbers at or above ``level``, worst level first, then in table order."""
        k = LEVELS.index(level)
        bad = np.flatnonzero(self.level_index >= k)
        return bad[np.lexsort((bad, -self.level_index[bad]))]


class HistoryTable(_Rows):
    """Photons per history in A and B, ordered by a+b descending then code, with chi-square,
    and a level (docs/verdict.md): c2/ndf against ``c2max`` (only when ndf >= 1), at least
    ERROR for a dropout row (more than DROPOUT_MIN photons on one side, none on the
    other), FATAL when photons were compared but none is aligned (``aligned`` = 0).

    The summary (c2/ndf, p-value, dropouts, level) needs no row order: the counted rows
    (a+b > C2_MIN_COUNT) are the first rows of the table, so only they are sorted for c2.
    The columns are the counts' own arrays when these are in table order already (one
    photon per history), else they are made in table order on first use, as are a/b,
    b/a and nstep (docs/tables.md)."""

    table = "history"

    def __init__(self, counts: HistoryCounts, c2max=C2MAX, aligned: int | None = None):
        self.c2max = check_c2max(c2max)
        self._counts = counts
        a, b = counts.a, counts.b
        total = a + b
        counted = np.flatnonzero(total > C2_MIN_COUNT)
        sub = table_order(counts.codes[counted], total[counted])
        if sub is not None:
            counted = counted[sub]
        n, k = len(total), len(counted)
        # c2 in table order: the counted rows' values, then zeros (pages never touched),
        # summed over the whole column as always, so c2sum is the same to the bit
        self.c2 = np.zeros(n)
        self.counted = np.zeros(n, bool)
        self.counted[:k] = True
        if k:
            diff = (a[counted] - b[counted]).astype(np.float64)
            self.c2[:k] = diff * diff / total[counted].astype(np.float64)
        del total, counted
        self.ndf = k - 1
        self.c2sum = float(self.c2.sum()) if k else 0.0
        self.c2p = self.c2sum / max(1, self.ndf)
        self.pvalue = chi2_sf(self.c2sum, self.ndf) if self.ndf > 0 else 1.0
        self.aligned = None if aligned is None else int(aligned)
        self._dropout = ((a > DROPOUT_MIN) & (b == 0)) | ((b > DROPOUT_MIN) & (a == 0))  # engine rows
        self.ndropout = int(np.count_nonzero(self._dropout))
        # c2/ndf level: few-photon tables (ndf < 1) cannot fail on chi-square alone
        self.c2_level_index = c2_level_index(self.c2p, self.ndf, self.c2max)
        self.none_aligned = self.aligned == 0 and self.n_a > 0

    def __len__(self):
        return len(self._counts.codes)

    @cached_property
    def _order(self) -> np.ndarray | None:
        """Counts row of each table row (None: the counts' rows, as they are)."""
        return table_order(self._counts.codes, self._counts.a + self._counts.b)

    def _column(self, name: str, rows):
        """Column ``name`` at counts rows ``rows`` (None: every row, as they are)."""
        if name == "dropout":
            return _take(self._dropout, rows)
        if name == "level_index":
            return np.where(_take(self._dropout, rows), np.int8(LEVELS.index("ERROR")), np.int8(0))
        return _take(getattr(self._counts, name), rows)

    codes = cached_property(lambda self: self._column("codes", self._order))
    a = cached_property(lambda self: self._column("a", self._order))
    b = cached_property(lambda self: self._column("b", self._order))
    dropout = cached_property(lambda self: self._column("dropout", self._order))
    #: level index per row (int8): ERROR for a dropout, else INFO
    level_index = cached_property(lambda self: self._column("level_index", self._order))

    @cached_property
    def _ratios(self) -> tuple[np.ndarray, ...]:
        return history_ratios(self.a, self.b)

    @property
    def ab(self) -> np.ndarray:
        return self._ratios[0]

    @property
    def ab_err(self) -> np.ndarray:
        return self._ratios[1]

    @property
    def ba(self) -> np.ndarray:
        return self._ratios[2]

    @property
    def ba_err(self) -> np.ndarray:
        return self._ratios[3]

    @cached_property
    def nstep(self) -> np.ndarray:
        return seqhis.nstep_array(self.codes)

    def row_values(self, rows) -> dict[str, np.ndarray]:
        """The columns at table rows ``rows`` only (what a text view shows): the same
        numbers as the whole columns, without making them."""
        rows = np.asarray(rows, np.intp)
        at = rows if self._order is None else self._order[rows]
        codes, a, b = (self._column(name, at) for name in ("codes", "a", "b"))
        ab, ab_err, ba, ba_err = history_ratios(a, b)
        return {"codes": codes, "a": a, "b": b, "c2": self.c2[rows], "ab": ab, "ab_err": ab_err, "ba": ba,
                "ba_err": ba_err, "nstep": seqhis.nstep_array(codes), "level_index": self._column("level_index", at),
                "dropout": self._column("dropout", at)}

    @property
    def n_a(self) -> int:
        return int(self._counts.a.sum())

    @property
    def n_b(self) -> int:
        return int(self._counts.b.sum())

    @property
    def level(self) -> str:
        return LEVELS[history_level_index(self.c2_level_index, self.ndropout, self.none_aligned)]

    @property
    def reasons(self) -> list[str]:
        """Why the table is above INFO, in words (empty when it is INFO)."""
        return history_reasons(self.c2p, self.c2_level_index, self.c2max, self.ndropout, self.none_aligned)

    @property
    def rc(self) -> int:
        return RC_BIT["history"] if self.fails else 0

    def render(self, limit: int | None = 20, skip=()) -> str:
        from .render.text import render_history
        return render_history(self, limit, skip)

    def __repr__(self):
        return (f"<HistoryTable {len(self)} histories, c2/ndf {self.c2p:.3f}, p-value {self.pvalue:.3g}, "
                f"level {self.level}>")

    def _repr_pretty_(self, p, cycle):  # IPython shows the table
        p.text(repr(self) if cycle else self.render())


def deviation_levels(ndisc: np.ndarray, nnan: np.ndarray) -> np.ndarray:
    """Level index 0..3 (int8) per row: the worst cut a photon went beyond (NaN = beyond
    all). One pass over ``ndisc`` (an engine column, often strided)."""
    beyond = ndisc > 0
    worst = beyond[:, 2] | (nnan > 0)
    return np.where(worst, np.int8(3), np.where(beyond[:, 1], np.int8(2), beyond[:, 0].view(np.int8)))


class DeviationTable(_Rows):
    """One deviation table (rpost, rtime, rpol or ox): per history of the aligned photons,
    nitem, photons beyond each cut, their fractions, max/min/mean deviation, level and the
    most deviant photon. Rows ordered by nitem descending, then code.

    The table keeps the engine's aggregate and one row selection (the rows with aligned
    photons, in table order; none when the aggregate is in that order already, as with
    one photon per history). Every column is made from them on first use, a text view
    takes only its rows (:meth:`row_values`), and the level and rc need no order
    (docs/tables.md, many histories)."""

    def __init__(self, aggregate: DeviationAggregate, worst_event: np.ndarray | None = None):
        self._aggregate = aggregate
        self.table, self.cuts = aggregate.table, aggregate.cuts
        self.unit = UNITS[self.table]
        # for the combined tables of a run: the event of each row's most deviant photon
        self._worst_event = None if worst_event is None else np.asarray(worst_event)

    @cached_property
    def _kept(self) -> np.ndarray | None:
        """Engine rows with aligned photons (None: all of them)."""
        has = self._aggregate.nitem > 0
        return None if bool(has.all()) else np.flatnonzero(has)

    @cached_property
    def _rows(self) -> np.ndarray | None:
        """Engine row of each table row (None: the engine's rows, as they are)."""
        agg, kept = self._aggregate, self._kept
        order = table_order(_take(agg.codes, kept), _take(agg.nitem, kept))
        if kept is None or order is None:
            return kept if order is None else order
        return kept[order]

    def _engine_rows(self, rows):
        return rows if self._rows is None else self._rows[rows]

    def _column(self, name: str, rows):
        """Column ``name`` at engine rows ``rows`` (None: every table row)."""
        agg = self._aggregate
        if name in ("mx", "mn", "avg"):
            nitem, nnan = _take(agg.nitem, rows), _take(agg.nnan, rows)
            nfinite = nitem - nnan
            none = nfinite <= 0
            # physical values: stored counts x bin (record tables), float64 as they are (ox)
            out = np.multiply(_take({"mx": agg.max, "mn": agg.min, "avg": agg.sum}[name], rows), self.cuts.bin,
                              dtype=np.float64)
            out[none] = np.nan
            if name == "avg":
                nfinite[none] = 1
                with np.errstate(invalid="ignore", divide="ignore"):
                    out /= nfinite
            return out
        if name == "fdisc":
            return _take(agg.ndisc, rows) / _take(agg.nitem, rows)[:, None]
        if name == "level_index":
            return _take(self._levels, rows)
        if name == "worst_slot":
            return None if agg.worst_slot is None else np.asarray(_take(agg.worst_slot, rows), np.int64)
        if name == "worst_event":
            return _take(self._worst_event, rows)
        return _take(getattr(agg, name), rows)

    def row_values(self, rows) -> dict[str, np.ndarray]:
        """The columns at table rows ``rows`` only (what a text view shows): the same
        numbers as the whole columns, without making them."""
        engine = self._engine_rows(np.asarray(rows, np.intp))
        out = {}
        for name in ("codes", "nitem", "ndisc", "fdisc", "nnan", "mx", "mn", "avg", "level_index", "argmax",
                     "worst_slot", "worst_event"):
            made = self.__dict__.get(name)  # a column made already is indexed, not made again
            out[name] = made[rows] if made is not None else self._column(name, engine)
        return out

    def __len__(self):
        return len(self._aggregate.nitem) if self._kept is None else len(self._kept)

    codes = cached_property(lambda self: self._column("codes", self._rows))
    nitem = cached_property(lambda self: self._column("nitem", self._rows))
    ndisc = cached_property(lambda self: self._column("ndisc", self._rows))
    nnan = cached_property(lambda self: self._column("nnan", self._rows))
    argmax = cached_property(lambda self: self._column("argmax", self._rows))
    mx = cached_property(lambda self: self._column("mx", self._rows))
    mn = cached_property(lambda self: self._column("mn", self._rows))
    avg = cached_property(lambda self: self._column("avg", self._rows))
    #: (G, 3) ndisc as fractions of nitem
    fdisc = cached_property(lambda self: self._column("fdisc", self._rows))
    #: level index 0..3 per row (int8): the worst cut a photon went beyond (NaN = beyond all)
    level_index = cached_property(lambda self: self._column("level_index", self._rows))
    #: record tables: the lowest slot reaching the row max (-1 none); None for ox
    worst_slot = cached_property(lambda self: self._column("worst_slot", self._rows))
    worst_event = cached_property(lambda self: self._column("worst_event", self._rows))

    @cached_property
    def _levels(self) -> np.ndarray:
        """Level index per engine row (rows without aligned photons are INFO)."""
        return deviation_levels(self._aggregate.ndisc, self._aggregate.nnan)

    @cached_property
    def raw(self) -> DeviationAggregate:
        """The engine's aggregate of the rows with aligned photons (engine order, by code)."""
        agg = self._aggregate
        return agg if self._kept is None else agg.rows(self._kept)

    @cached_property
    def slot_max(self) -> np.ndarray | None:
        """(G, maxrec) per-slot maxima in physical units (counts x bin), None for ox
        (docs/tables.md, per-slot deviations)."""
        slots = self._aggregate.slot_max
        if slots is None:
            return None
        return np.multiply(_take(slots, self._rows), self.cuts.bin, dtype=np.float64)

    @property
    def has_slots(self) -> bool:
        """Per-slot maxima are known (the record tables rpost, rtime, rpol)."""
        return self._aggregate.worst_slot is not None

    def slot_block(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """For table rows ``rows``: (their per-slot maxima (n, maxrec), physical, and how
        many of them count: min(nstep, maxrec) each, as slot_values), made for these rows only."""
        engine = self._engine_rows(np.asarray(rows, np.intp))
        slots = np.multiply(_take(self._aggregate.slot_max, engine), self.cuts.bin, dtype=np.float64)
        return slots, np.minimum(seqhis.nstep_array(_take(self._aggregate.codes, engine)), slots.shape[1])

    def slot_values(self, i: int) -> np.ndarray:
        """Row ``i``'s per-slot maxima (physical), one per slot up to min(nstep, maxrec)."""
        return self.slot_max[i, :int(self.slot_count[i])]

    @cached_property
    def slot_count(self) -> np.ndarray:
        """Per row: the slots a photon of its history fills, min(nstep, maxrec)."""
        return np.minimum(seqhis.nstep_array(self.codes), self._aggregate.slot_max.shape[1])

    @property
    def level(self) -> str:
        return LEVELS[int(self._levels.max(initial=0))]

    @property
    def rc(self) -> int:
        return RC_BIT[self.table] if self.fails else 0

    @cached_property
    def nitem_total(self) -> int:
        return int(self._aggregate.nitem.sum())  # empty rows add nothing: no selection needed

    @property
    def mx_total(self) -> float:
        """The largest deviation of the table (NaN when no row has a finite one)."""
        return float(np.nanmax(self.mx)) if np.isfinite(self.mx).any() else float("nan")

    def render(self, limit: int | None = 10, skip=()) -> str:
        from .render.text import render_deviation
        return render_deviation(self, limit, skip)

    def __repr__(self):
        return f"<DeviationTable {self.table} {len(self)} histories, level {self.level}>"

    def _repr_pretty_(self, p, cycle):
        p.text(repr(self) if cycle else self.render())
