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
        cyext.effective_threads
    except (ImportError, AttributeError):
        raise InputError("the compiled module 'cyext' is not installed (or the source folder "
                         "shadows it); install the project with `pip install .`") from None
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
        cy = self.cyext
        G, P = len(groups), self.n_threads
        index = cy.GroupIndex(groups)
        a, b = pair.a, pair.b
        sa, sb = a.seqhis, b.seqhis
        want_records = any(t in tables for t in RECORD_TABLES)
        want_ox = "ox" in tables
        records = cy.new_record_partials(G, P)
        thresholds = cuts.record_thresholds()
        counts, extrema = cy.new_final_partials(G, P)
        blocks = cy.new_block_sums(G, self.chunk // cy.SUM_BLOCK)
        sums = np.zeros(G)
        ox_cuts = np.asarray(cuts.ox.values, np.float64)
        unknown = 0
        with progress(pair.n, "deviations") as bar:
            for start, stop in photon_chunks(pair.n, self.chunk):
                if want_records:
                    unknown += cy.record_deviations(records, index, thresholds, a.rx, b.rx, sa, sb, start, stop)
                if want_ox:
                    unknown += cy.final_deviations(counts, extrema, *blocks, index, ox_cuts, a.ox, b.ox,
                                                   sa, sb, start, stop)
                    cy.add_block_sums(sums, *blocks)
                bar.update(stop - start)
        if unknown:
            raise RuntimeError(f"{unknown} aligned photons have a history outside the {G} groups given")
        out = {}
        if want_records:
            merged = cy.merge_record_partials(records)
            for k, table in enumerate(RECORD_TABLES):
                if table not in tables:
                    continue
                f = 1 + 7 * k
                out[table] = DeviationAggregate(
                    table, np.asarray(groups, np.uint64), merged[:, 0], merged[:, f:f + 3],
                    np.zeros(G, np.int64), merged[:, f + 3], merged[:, f + 4], merged[:, f + 5],
                    merged[:, f + 6], cuts[table])
        if want_ox:
            c, e = cy.merge_final_partials(counts, extrema)
            out["ox"] = DeviationAggregate("ox", np.asarray(groups, np.uint64), c[:, 0], c[:, 2:5], c[:, 1],
                                           e[:, 0], e[:, 1], sums, c[:, 5], cuts.ox)
        return out
