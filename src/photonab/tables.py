"""The comparison tables: history counts A vs B, and per-history deviation tables.

Built from engine aggregates (:mod:`photonab.engines.base`); ordering, chi-square,
levels and return-code bits follow the data contract, sections 4 and 5.
"""
from __future__ import annotations

import numpy as np
from scipy.special import chdtrc

from . import seqhis
from .cuts import LEVELS, TABLES, UNITS
from .engines.base import DeviationAggregate, HistoryCounts

#: the original's chi-square rows need more than this many photons (a + b)
C2_MIN_COUNT = 30
#: one return-code bit per failing deviation table
RC_BIT = {table: 1 << k for k, table in enumerate(TABLES)}


def _skip_mask(codes: np.ndarray, skip) -> np.ndarray:
    """True for rows to hide: label contains any of the ``skip`` tokens (e.g. 'SC AB RE')."""
    tokens = skip.split() if isinstance(skip, str) else list(skip or ())
    if not tokens:
        return np.zeros(len(codes), bool)
    return seqhis.labels_contain(codes, tokens)


class HistoryTable:
    """Photons per history in A and B, ordered by a+b descending then code, with chi-square."""

    def __init__(self, counts: HistoryCounts):
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
        self.pvalue = float(chdtrc(self.ndf, self.c2sum)) if self.ndf > 0 else 1.0
        both = (self.a > 0) & (self.b > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.ab = np.where(both, self.a / self.b, np.nan)
            self.ab_err = np.where(both, np.sqrt(self.a) / self.b, np.nan)
            self.ba = np.where(both, self.b / self.a, np.nan)
            self.ba_err = np.where(both, np.sqrt(self.b) / self.a, np.nan)
        self.nstep = seqhis.nstep_array(self.codes)

    def __len__(self):
        return len(self.codes)

    @property
    def n_a(self) -> int:
        return int(self.a.sum())

    @property
    def n_b(self) -> int:
        return int(self.b.sum())

    def rows(self, limit=None, skip=()) -> list[dict]:
        shown = np.flatnonzero(~_skip_mask(self.codes, skip))[:limit]
        return [{"index": int(i), "code": f"{int(self.codes[i]):x}", "label": seqhis.label(self.codes[i]),
                 "a": int(self.a[i]), "b": int(self.b[i]), "a-b": int(self.a[i] - self.b[i]),
                 "c2": float(self.c2[i]), "a/b": float(self.ab[i]), "a/b_err": float(self.ab_err[i]),
                 "b/a": float(self.ba[i]), "b/a_err": float(self.ba_err[i]), "nstep": int(self.nstep[i])}
                for i in shown]

    def summary(self) -> dict:
        return {"histories": len(self), "photons_a": self.n_a, "photons_b": self.n_b,
                "c2sum": self.c2sum, "ndf": self.ndf, "c2p": self.c2p, "pvalue": self.pvalue}

    def to_dict(self, limit=None, skip=()) -> dict:
        return {**self.summary(), "rows": self.rows(limit, skip)}

    def render(self, limit: int | None = 20, skip=()) -> str:
        from .report import render_history
        return render_history(self, limit, skip)

    def __repr__(self):
        return f"<HistoryTable {len(self)} histories, c2/ndf {self.c2p:.3f}, p-value {self.pvalue:.3g}>"

    def _repr_pretty_(self, p, cycle):  # IPython shows the table
        p.text(repr(self) if cycle else self.render())


class DeviationTable:
    """One deviation table (rpost, rtime, rpol or ox): per history of the aligned photons,
    nitem, photons beyond each cut, their fractions, max/min/mean deviation, level and the
    most deviant photon. Rows ordered by nitem descending, then code."""

    def __init__(self, aggregate: DeviationAggregate, worst_event: np.ndarray | None = None):
        keep = aggregate.nitem > 0
        agg = aggregate.nonempty()
        order = np.lexsort((agg.codes, -agg.nitem))
        # for the combined tables of a run: the event of each row's most deviant photon
        self.worst_event = None if worst_event is None else np.asarray(worst_event)[keep][order]
        self.table, self.cuts = agg.table, agg.cuts
        self.unit = UNITS[self.table]
        self.codes = agg.codes[order]
        self.nitem = agg.nitem[order]
        self.ndisc = agg.ndisc[order]
        self.nnan = agg.nnan[order]
        self.argmax = agg.argmax[order]
        scale = self.cuts.bin
        nfinite = self.nitem - self.nnan
        has = nfinite > 0
        # physical values: stored counts x bin (record tables), float64 as they are (ox)
        self.mx = np.where(has, agg.max[order].astype(np.float64) * scale, np.nan)
        self.mn = np.where(has, agg.min[order].astype(np.float64) * scale, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.avg = np.where(has, agg.sum[order].astype(np.float64) * scale / np.where(has, nfinite, 1), np.nan)
            self.fdisc = self.ndisc / self.nitem[:, None]
        # level index 0..3 per row: the worst cut a photon went beyond (NaN = beyond all)
        self.level_index = np.select([(self.ndisc[:, 2] > 0) | (self.nnan > 0), self.ndisc[:, 1] > 0,
                                      self.ndisc[:, 0] > 0], [3, 2, 1], 0)
        self.raw = agg

    def __len__(self):
        return len(self.codes)

    @property
    def level(self) -> str:
        return LEVELS[int(self.level_index.max(initial=0))]

    @property
    def fails(self) -> bool:
        """A table fails at ERROR or FATAL."""
        return self.level in ("ERROR", "FATAL")

    @property
    def rc(self) -> int:
        return RC_BIT[self.table] if self.fails else 0

    @property
    def nitem_total(self) -> int:
        return int(self.nitem.sum())

    def rows(self, limit=None, skip=()) -> list[dict]:
        shown = np.flatnonzero(~_skip_mask(self.codes, skip))[:limit]
        return [{"index": int(i), "code": f"{int(self.codes[i]):x}", "label": seqhis.label(self.codes[i]),
                 "nitem": int(self.nitem[i]), "ndisc": [int(x) for x in self.ndisc[i]],
                 "fdisc": [float(x) for x in self.fdisc[i]], "nnan": int(self.nnan[i]),
                 "mx": float(self.mx[i]), "mn": float(self.mn[i]), "avg": float(self.avg[i]),
                 "level": LEVELS[self.level_index[i]], "worst_photon": int(self.argmax[i]),
                 **({} if self.worst_event is None else {"worst_event": int(self.worst_event[i])})}
                for i in shown]

    def worst_rows(self, level: str = "ERROR") -> np.ndarray:
        """Row numbers at or above ``level``, worst level first, then by nitem."""
        k = LEVELS.index(level)
        bad = np.flatnonzero(self.level_index >= k)
        return bad[np.lexsort((bad, -self.level_index[bad]))]

    def summary(self) -> dict:
        return {"table": self.table, "unit": self.unit, "cuts": list(self.cuts.values), "level": self.level,
                "rc": self.rc, "histories": len(self), "nitem": self.nitem_total,
                "ndisc": [int(x) for x in self.ndisc.sum(axis=0)], "nnan": int(self.nnan.sum()),
                "mx": float(np.nanmax(self.mx)) if np.isfinite(self.mx).any() else float("nan")}

    def to_dict(self, limit=None, skip=()) -> dict:
        return {**self.summary(), "rows": self.rows(limit, skip)}

    def render(self, limit: int | None = 10, skip=()) -> str:
        from .report import render_deviation
        return render_deviation(self, limit, skip)

    def __repr__(self):
        return f"<DeviationTable {self.table} {len(self)} histories, level {self.level}>"

    def _repr_pretty_(self, p, cycle):
        p.text(repr(self) if cycle else self.render())
