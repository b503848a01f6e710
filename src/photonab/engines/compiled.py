"""The ``cython`` engine: one pass of the compiled :mod:`cyext` kernels over the memory maps.

Photons are streamed in chunks (a progress bar step each); the kernels accumulate
per-thread partial tables across chunks, merged once at the end, so memory is
O(threads x histories), independent of the number of photons.
"""
from __future__ import annotations

import numpy as np

from ..cuts import RECORD_TABLES, TABLES, Cuts
from ..errors import InputError
from ..events import EventPair
from .base import DeviationAggregate, HistoryCounts, no_progress, photon_chunks


def import_cyext():
    """The compiled extension, or a clear error when only its sources are reachable."""
    try:
        import cyext
    except ImportError:
        cyext = None
    if not hasattr(cyext, "effective_threads"):  # None, or the namespace of the source folder
        raise InputError("the compiled module 'cyext' is not installed (or the source folder "
                         "shadows it); install the project with `pip install .`")
    return cyext


class CythonEngine:
    name = "cython"

    def __init__(self, n_threads=None, chunk: int = 1 << 20):
        self.cyext = import_cyext()
        self.n_threads = self.cyext.effective_threads(n_threads)
        if chunk <= 0 or chunk % self.cyext.SUM_BLOCK:
            raise ValueError(f"chunk must be a positive multiple of {self.cyext.SUM_BLOCK}")
        self.chunk = chunk

    def histories(self, pair: EventPair, progress=no_progress) -> HistoryCounts:
        counter = self.cyext.HistoryCounter()
        sa, sb = pair.a.seqhis, pair.b.seqhis
        with progress(pair.n, "histories") as bar:
            for start, stop in photon_chunks(pair.n, self.chunk):
                counter.add(sa, sb, start, stop, self.n_threads)
                bar.update(stop - start)
        codes, counts = counter.result()
        return HistoryCounts.from_unsorted(codes, counts[:, 0], counts[:, 1])

    def deviations(self, pair: EventPair, groups: np.ndarray, cuts: Cuts, tables=TABLES,
                   progress=no_progress) -> dict[str, DeviationAggregate]:
        acc = self.cyext.DeviationAccumulator(
            self.cyext.GroupIndex(groups), cuts.record_thresholds(), cuts.ox.values, self.n_threads,
            records=any(t in tables for t in RECORD_TABLES), finals="ox" in tables)
        a, b = pair.a, pair.b
        with progress(pair.n, "deviations") as bar:
            for start, stop in photon_chunks(pair.n, self.chunk):
                acc.add(a.rx, b.rx, a.ox, b.ox, a.seqhis, b.seqhis, start, stop)
                bar.update(stop - start)
        return aggregates_from_result(acc.result(), groups, cuts, tables)

    def chase(self, pair: EventPair, table: str, code, min_dev: float, limit: int):
        """See :meth:`photonab.engines.base.Engine.chase`: the cyext chase kernel."""
        index, dev = np.zeros(limit, np.int64), np.zeros(limit, np.float64)
        values = "ox" if table == "ox" else "rx"
        k, found = self.cyext.chase(index, dev, self.cyext.CHASE_TABLES.index(table), np.uint64(code or 0),
                                    code is None, min_dev, getattr(pair.a, values), getattr(pair.b, values),
                                    pair.a.seqhis, pair.b.seqhis, 0, pair.n, self.n_threads)
        return index[:k], dev[:k], found


def aggregates_from_result(result: dict, groups: np.ndarray, cuts: Cuts, tables) -> dict[str, DeviationAggregate]:
    """The tables' aggregates from a merged DeviationAccumulator result."""
    G = len(groups)
    codes = np.asarray(groups, np.uint64)
    out = {}
    for k, table in enumerate(RECORD_TABLES):
        if table in tables:
            rec = result["records"]
            f = 1 + 7 * k  # field layout of cyext's record rows
            out[table] = DeviationAggregate(table, codes, rec[:, 0], rec[:, f:f + 3], np.zeros(G, np.int64),
                                            rec[:, f + 3], rec[:, f + 4], rec[:, f + 5], rec[:, f + 6], cuts[table])
    if "ox" in tables:
        c, e = result["final_counts"], result["final_extrema"]
        out["ox"] = DeviationAggregate("ox", codes, c[:, 0], c[:, 2:5], c[:, 1], e[:, 0], e[:, 1], result["sums"],
                                       c[:, 5], cuts.ox)
    return out
