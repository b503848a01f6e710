"""The comparison tables: history counts A vs B, and per-history deviation tables.

Built from engine aggregates (:mod:`photonab.engines.base`); ordering, chi-square,
levels and return-code bits follow docs/tables.md and docs/verdict.md. The tables are
plain arrays; text, JSON and pictures are made from them in :mod:`photonab.render`.
"""
from __future__ import annotations

import numpy as np
from .stats import chi2_sf

from . import seqhis
from .cuts import LEVELS, TABLES, UNITS
from .engines.base import DeviationAggregate, HistoryCounts
from .errors import InputError

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

    def _kept(self, skipped, skip) -> np.ndarray:
        """Rows not hidden, in the view's order (``--order``)."""
        order = skip.order_of(self) if hasattr(skip, "order_of") else np.arange(len(self))
        return order[~skipped[order]]

    def shown(self, limit: int | None = None, skip=()) -> np.ndarray:
        """Row numbers a view shows: rows not hidden by ``skip``, the first ``limit`` of them."""
        return self._kept(self.skip_mask(skip), skip)[:limit]

    def hidden(self, limit: int | None = None, skip=()) -> dict:
        """Rows a view with ``limit`` and ``skip`` hides: how many, and how many of them fail
        (ERROR/FATAL), by the option that hid them."""
        skipped = self.skip_mask(skip)
        kept = self._kept(skipped, skip)
        beyond = kept[limit:] if limit is not None else kept[:0]
        bad = self.level_index >= LEVELS.index(FAILING[0])
        return {"rows": int(skipped.sum()) + len(beyond), "skip": int(skipped.sum()), "limit": len(beyond),
                "failing": int(bad[skipped].sum()) + int(bad[beyond].sum()),
                "failing_skip": int(bad[skipped].sum()), "failing_limit": int(bad[beyond].sum())}

    def labels(self, rows=None) -> list[str]:
        codes = self.codes if rows is None else self.codes[rows]
        return [seqhis.label(c) for c in codes]

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
    other), FATAL when photons were compared but none is aligned (``aligned`` = 0)."""

    table = "history"

    def __init__(self, counts: HistoryCounts, c2max=C2MAX, aligned: int | None = None):
        self.c2max = check_c2max(c2max)
        a, b, codes = counts.a, counts.b, counts.codes
        order = np.lexsort((codes, -(a + b)))
        self.codes, self.a, self.b = codes[order], a[order], b[order]
        total = (self.a + self.b).astype(np.float64)
        self.counted = total > C2_MIN_COUNT
        diff = (self.a - self.b).astype(np.float64)
        self.c2 = np.where(self.counted, diff * diff / np.where(total > 0, total, 1), 0.0)
        self.ndf = int(self.counted.sum()) - 1
        self.c2sum = float(self.c2.sum())
        self.c2p = self.c2sum / max(1, self.ndf)
        self.pvalue = chi2_sf(self.c2sum, self.ndf) if self.ndf > 0 else 1.0
        both = (self.a > 0) & (self.b > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.ab = np.where(both, self.a / self.b, np.nan)
            self.ab_err = np.where(both, np.sqrt(self.a) / self.b, np.nan)
            self.ba = np.where(both, self.b / self.a, np.nan)
            self.ba_err = np.where(both, np.sqrt(self.b) / self.a, np.nan)
        self.nstep = seqhis.nstep_array(self.codes)
        self.aligned = None if aligned is None else int(aligned)
        self.dropout = ((self.a > DROPOUT_MIN) & (self.b == 0)) | ((self.b > DROPOUT_MIN) & (self.a == 0))
        self.level_index = np.where(self.dropout, LEVELS.index("ERROR"), 0)
        # c2/ndf level: few-photon tables (ndf < 1) cannot fail on chi-square alone
        self.c2_level_index = c2_level_index(self.c2p, self.ndf, self.c2max)
        self.none_aligned = self.aligned == 0 and self.n_a > 0

    @property
    def n_a(self) -> int:
        return int(self.a.sum())

    @property
    def n_b(self) -> int:
        return int(self.b.sum())

    @property
    def ndropout(self) -> int:
        return int(self.dropout.sum())

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


def _physical(values: np.ndarray, scale: float, none: np.ndarray) -> np.ndarray:
    """float64 ``values`` x ``scale`` (a new array), NaN where ``none``."""
    out = values.astype(np.float64, copy=False)  # values is already a copy (fancy-indexed)
    out *= scale
    out[none] = np.nan
    return out


class DeviationTable(_Rows):
    """One deviation table (rpost, rtime, rpol or ox): per history of the aligned photons,
    nitem, photons beyond each cut, their fractions, max/min/mean deviation, level and the
    most deviant photon. Rows ordered by nitem descending, then code."""

    def __init__(self, aggregate: DeviationAggregate, worst_event: np.ndarray | None = None):
        # one combined selection + order on the engine's aggregate (no nonempty() copy):
        # rows with aligned photons, by nitem descending, then code
        kept = np.flatnonzero(aggregate.nitem > 0)
        order = kept[np.lexsort((aggregate.codes[kept], -aggregate.nitem[kept]))]
        del kept
        self._aggregate, self._order = aggregate, order
        agg = aggregate
        # for the combined tables of a run: the event of each row's most deviant photon
        self.worst_event = None if worst_event is None else np.asarray(worst_event)[order]
        self.table, self.cuts = agg.table, agg.cuts
        self.unit = UNITS[self.table]
        self.codes = agg.codes[order]
        self.nitem = agg.nitem[order]
        self.ndisc = agg.ndisc[order]
        self.nnan = agg.nnan[order]
        self.argmax = agg.argmax[order]
        scale = self.cuts.bin
        nfinite = self.nitem - self.nnan
        none = nfinite <= 0
        # physical values: stored counts x bin (record tables), float64 as they are (ox);
        # computed in place (the same operations, so the same numbers, without temporaries)
        self.mx = _physical(agg.max[order], scale, none)
        self.mn = _physical(agg.min[order], scale, none)
        avg = _physical(agg.sum[order], scale, none)
        nfinite[none] = 1
        with np.errstate(invalid="ignore", divide="ignore"):
            avg /= nfinite
        self.avg = avg
        del nfinite, none
        # level index 0..3 per row: the worst cut a photon went beyond (NaN = beyond all)
        self.level_index = np.select([(self.ndisc[:, 2] > 0) | (self.nnan > 0), self.ndisc[:, 1] > 0,
                                      self.ndisc[:, 0] > 0], [3, 2, 1], 0)
        # record tables: the lowest slot reaching the row max (-1 none); None for ox. The
        # per-slot maxima (slot_max) are made on first use (docs/tables.md, per-slot deviations)
        self.worst_slot = None if agg.worst_slot is None else np.asarray(agg.worst_slot, np.int64)[order]
        self._slot_max = self._fdisc = self._raw = None

    @property
    def raw(self) -> DeviationAggregate:
        """The engine's aggregate of the rows with aligned photons (engine order, by code)."""
        if self._raw is None:
            agg = self._aggregate
            self._raw = agg if bool((agg.nitem > 0).all()) else agg.nonempty()
        return self._raw

    @property
    def fdisc(self) -> np.ndarray:
        """(G, 3) ndisc as fractions of nitem (made on first use)."""
        if self._fdisc is None:
            self._fdisc = self.ndisc / self.nitem[:, None]
        return self._fdisc

    @property
    def slot_max(self) -> np.ndarray | None:
        """(G, maxrec) per-slot maxima in physical units (counts x bin), None for ox."""
        if self._slot_max is None and self._aggregate.slot_max is not None:
            slots = self._aggregate.slot_max[self._order].astype(np.float64)
            slots *= self.cuts.bin
            self._slot_max = slots
        return self._slot_max

    @property
    def has_slots(self) -> bool:
        """Per-slot maxima are known (the record tables rpost, rtime, rpol)."""
        return self.worst_slot is not None

    def slot_values(self, i: int) -> np.ndarray:
        """Row ``i``'s per-slot maxima (physical), one per slot up to min(nstep, maxrec)."""
        return self.slot_max[i, :int(self.slot_count[i])]

    @property
    def slot_count(self) -> np.ndarray:
        """Per row: the slots a photon of its history fills, min(nstep, maxrec) (computed once)."""
        if getattr(self, "_slot_count", None) is None:
            self._slot_count = np.minimum(seqhis.nstep_array(self.codes), self.slot_max.shape[1])
        return self._slot_count

    @property
    def level(self) -> str:
        return LEVELS[int(self.level_index.max(initial=0))]

    @property
    def rc(self) -> int:
        return RC_BIT[self.table] if self.fails else 0

    @property
    def nitem_total(self) -> int:
        return int(self.nitem.sum())

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
