"""The ``numpy`` engine: the 2019 fix, "deviate then select".

Decode-free but otherwise as the fix did it: per-photon deviations of ALL photons at
once with full-array temporaries (several copies of the records), then for each
history row an O(N) ``np.where`` to pull out that row's photons.
"""
from __future__ import annotations

import numpy as np

from ..cuts import RECORD_TABLES, TABLES, Cuts
from ..events import EventPair
from . import reference
from .base import DeviationAggregate, HistoryCounts, concat_aggregates, no_progress


class NumpyEngine:
    name = "numpy"

    def __init__(self, n_threads=None):
        pass  # numpy runs its own loops; the argument is accepted for a common interface

    def histories(self, pair: EventPair, progress=no_progress) -> HistoryCounts:
        with progress(2, "histories") as bar:
            ua, ca = np.unique(np.asarray(pair.a.seqhis), return_counts=True)
            bar.update()
            ub, cb = np.unique(np.asarray(pair.b.seqhis), return_counts=True)
            bar.update()
        pair.check_unchanged()  # inputs changed while read: stop before tables are built
        codes = np.union1d(ua, ub)
        a = np.zeros(len(codes), np.int64)
        b = np.zeros(len(codes), np.int64)
        a[np.searchsorted(codes, ua)] = ca
        b[np.searchsorted(codes, ub)] = cb
        return HistoryCounts(codes, a, b)

    def per_photon(self, pair: EventPair, tables) -> dict[str, np.ndarray]:
        dev = {}
        if any(t in tables for t in RECORD_TABLES):
            dev.update(reference.record_deviations(pair.a.rx, pair.b.rx))
        if "ox" in tables:
            dev["ox"] = reference.final_deviation(pair.a.ox, pair.b.ox)
        return dev

    def per_slot(self, pair: EventPair, tables) -> dict[str, np.ndarray]:
        """Per photon and record slot, the record tables' deviations (N, maxrec)."""
        return reference.record_slot_deviations(pair.a.rx, pair.b.rx, [t for t in tables if t in RECORD_TABLES])

    def deviations(self, pair: EventPair, groups: np.ndarray, cuts: Cuts, tables=TABLES,
                   progress=no_progress) -> dict[str, DeviationAggregate]:
        sa, sb = np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis)
        aligned = sa == sb
        dev = self.per_photon(pair, tables)
        slot = self.per_slot(pair, tables)
        pair.check_unchanged()
        rows = {t: [] for t in tables}
        with progress(len(groups), "history rows") as bar:
            for code in groups:
                idx = np.where(aligned & (sa == code))[0]
                zero = np.zeros(len(idx), np.intp)
                for t in tables:
                    rows[t].append(reference.aggregate_rows(t, np.array([code], np.uint64), zero, idx,
                                                            dev[t][idx], cuts[t],
                                                            slot[t][idx] if t in slot else None))
                bar.update()
        maxrec = pair.a.rx.shape[1]
        return {t: concat_aggregates(rows[t], t, cuts[t], maxrec) for t in tables}

    def chase(self, pair: EventPair, table: str, code, min_dev: float, limit: int):
        """See :meth:`photonab.engines.base.Engine.chase` (numpy, in bounded chunks)."""
        return reference.chase_photons(pair, table, code, min_dev, limit)
