"""The ``cython`` engine: one pass of the compiled :mod:`cyext` kernels over the memory maps.

Photons are streamed in chunks (a progress bar step each); the kernels accumulate
per-thread partial tables across chunks, merged once at the end, so memory is
O(threads x histories), independent of the number of photons.
"""
from __future__ import annotations

import numpy as np

from .._cyext import load as load_cyext
from ..cuts import RECORD_TABLES, TABLES, Cuts
from ..errors import InputError
from ..events import EventPair
from .base import DeviationAggregate, HistoryCounts, no_progress, photon_chunks


def import_cyext():
    """The compiled extension, or a clear error when only its sources are reachable."""
    return load_cyext()


class CythonEngine:
    name = "cython"

    def __init__(self, n_threads=None, chunk: int = 1 << 20):
        self.cyext = import_cyext()
        try:
            self.n_threads = self.cyext.effective_threads(n_threads)
        except ValueError as exc:  # a --threads the user gave
            raise InputError(f"threads: {exc}") from None
        if chunk <= 0 or chunk % self.cyext.SUM_BLOCK:
            raise ValueError(f"chunk must be a positive multiple of {self.cyext.SUM_BLOCK}")
        self.chunk = chunk

    def stream(self, pair: EventPair, progress, desc: str, add) -> None:
        """The chunk loop of every pass (also photonab.analysis' materials pass): ``add(start,
        stop)`` for each chunk of photons, the inputs checked before each chunk and after the
        last (EventPair.checked), one step of the ``desc`` bar after each chunk; the bar closes
        when the loop ends or raises."""
        with progress(pair.n, desc) as bar:
            for start, stop in pair.checked(photon_chunks(pair.n, self.chunk)):  # inputs unchanged?
                add(start, stop)
                bar.update(stop - start)

    @staticmethod
    def _tables_asked(pair: EventPair, tables) -> dict:
        """The keywords of a deviation pass (DeviationAccumulator, PairPass) that make it
        compute only ``tables``."""
        return {"records": [t for t in RECORD_TABLES if t in tables], "finals": "ox" in tables,
                "maxrec": pair.a.rx.shape[1]}

    def histories(self, pair: EventPair, progress=no_progress) -> HistoryCounts:
        counter = self.cyext.HistoryCounter()
        sa, sb = pair.a.seqhis, pair.b.seqhis
        self.stream(pair, progress, "histories", lambda start, stop: counter.add(sa, sb, start, stop, self.n_threads))
        codes, counts = counter.result()
        return HistoryCounts.from_unsorted(codes, counts[:, 0], counts[:, 1], sort=self.cyext.sort_codes)

    def deviations(self, pair: EventPair, groups: np.ndarray, cuts: Cuts, tables=TABLES,
                   progress=no_progress) -> dict[str, DeviationAggregate]:
        acc = self.cyext.DeviationAccumulator(self.cyext.GroupIndex(groups), cuts.record_thresholds(), cuts.ox.values,
                                              self.n_threads, **self._tables_asked(pair, tables))
        a, b = pair.a, pair.b
        self.stream(pair, progress, "deviations",
                     lambda start, stop: acc.add(a.rx, b.rx, a.ox, b.ox, a.seqhis, b.seqhis, start, stop))
        return aggregates_from_result(acc.result(copy=False), groups, cuts, tables)  # acc is done

    def histories_and_deviations(self, pair: EventPair, cuts: Cuts, tables=TABLES, progress=no_progress,
                                 migrated: int | None = None):
        """:meth:`histories`, then :meth:`deviations` of ``groups()``, in one pass over the
        photons (cyext.PairPass: ph read once; docs/kernels.md, "One pass"). With
        ``migrated`` (a number of first migrated photons to keep) the pass also makes the
        first pass of the migration table (photonab.migration.count_migrations' ``counted``).
        Returns (HistoryCounts, {table: DeviationAggregate}, the migration pass or None)."""
        from ..migration import first_pass_counter
        mig = None if migrated is None else first_pass_counter(migrated)
        one = self.cyext.PairPass(cuts.record_thresholds(), cuts.ox.values, self.n_threads, migrations=mig,
                                  **self._tables_asked(pair, tables))
        a, b = pair.a, pair.b
        self.stream(pair, progress, "photons",
                     lambda start, stop: one.add(a.rx, b.rx, a.ox, b.ox, a.seqhis, b.seqhis, start, stop))
        codes, counts, groups, result = one.result()
        counts = HistoryCounts.from_unsorted(codes, counts[:, 0], counts[:, 1], sort=self.cyext.sort_codes)
        return counts, aggregates_from_result(result, groups, cuts, tables), None if mig is None else mig.result()

    def chase(self, pair: EventPair, table: str, code, min_dev: float, limit: int):
        """See :meth:`photonab.engines.base.Engine.chase`: the cyext chase kernel."""
        index, dev = np.zeros(limit, np.int64), np.zeros(limit, np.float64)
        values = "ox" if table == "ox" else "rx"
        k, found = self.cyext.chase(index, dev, self.cyext.CHASE_TABLES.index(table), np.uint64(code or 0),
                                    code is None, min_dev, getattr(pair.a, values), getattr(pair.b, values),
                                    pair.a.seqhis, pair.b.seqhis, 0, pair.n, self.n_threads)
        return index[:k], dev[:k], found


def aggregates_from_result(result: dict, groups: np.ndarray, cuts: Cuts, tables) -> dict[str, DeviationAggregate]:
    """The tables' aggregates from a merged DeviationAccumulator result, field by field:
    ``records`` rows (cyext.RECORD_DTYPE: nitem, then ndisc, max, min, sum, argmax with
    the record tables side by side, see record_table), the per-slot maxima ``slots``
    (G, 3, maxrec), ``finals`` rows (cyext.FINAL_DTYPE) and the block-ordered ox ``sums``."""
    codes = np.asarray(groups, np.uint64)
    out = {}
    if any(t in tables for t in RECORD_TABLES):
        rec, slots = result["records"], result["slots"]
        nitem, nnan = rec["nitem"], np.zeros(len(codes), np.int64)  # shared by the record tables
        worst = cyext_worst_slots(slots, rec)
    for k, table in enumerate(RECORD_TABLES):
        if table in tables:
            out[table] = DeviationAggregate(table, codes, nitem=nitem, nnan=nnan, cuts=cuts[table],
                                            **record_table(rec, k),
                                            slot_max=slots[:, k, :], worst_slot=worst[:, k])
    if "ox" in tables:
        out["ox"] = DeviationAggregate("ox", codes, sum=result["sums"], cuts=cuts.ox,
                                       **_fields(result["finals"], "nitem", "nnan", "ndisc", "max", "min", "argmax"))
    return out


def record_table(rows: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Record table k's (RECORD_TABLES order) columns of cyext.RECORD_DTYPE rows, as views:
    ``ndisc`` (G, 3), ``max``, ``min``, ``sum``, ``argmax`` (G,)."""
    return {"ndisc": rows["ndisc"][:, k, :3], "max": rows["max"][:, k], "min": rows["min"][:, k],
            "sum": rows["sum"][:, k], "argmax": rows["argmax"][:, k]}


def _field(rows: np.ndarray, name: str) -> np.ndarray:
    """One field of structured rows: a view, not a copy (with a million histories each
    copy costs its page faults; the tables copy the rows they keep anyway)."""
    return rows[name]


def cyext_worst_slots(slots: np.ndarray, records: np.ndarray) -> np.ndarray:
    """(G, 3) lowest slot reaching each record table's max (-1: none), in C."""
    return import_cyext().worst_slots(slots, records)


def _fields(rows: np.ndarray, *names: str) -> dict[str, np.ndarray]:
    return {name: _field(rows, name) for name in names}
