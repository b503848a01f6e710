"""The ``select`` engine: the original 2019 algorithm, "select then deviate".

For each history row it sets a selection as the original analysis did: a boolean
mask over ALL photons (aligned and of this history), every per-photon array of both
events re-selected with it, then deviations of the selected photons, then the
selection is dropped. O(N x rows) work and re-selection; kept so that the profiling
harness can show where the time went.
"""
from __future__ import annotations

import numpy as np

from ..cuts import RECORD_TABLES, TABLES, Cuts
from ..events import PHOTON_ARRAYS, Event, EventPair
from . import reference
from .base import DeviationAggregate, concat_aggregates, no_progress
from .vectorised import NumpyEngine


def select_photons(event: Event, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Re-initialise one event's per-photon arrays with a selection mask (as the original did)."""
    return {name: getattr(event, name)[mask] for name in PHOTON_ARRAYS if getattr(event, name) is not None}


class SelectEngine(NumpyEngine):
    name = "select"

    def deviations(self, pair: EventPair, groups: np.ndarray, cuts: Cuts, tables=TABLES,
                   progress=no_progress) -> dict[str, DeviationAggregate]:
        rows = {t: [] for t in tables}
        with progress(len(groups), "history rows") as bar:
            for code in pair.checked(groups):  # inputs unchanged before each row?
                a, b, index = self.set_selection(pair, code)
                dev = {}
                slot = reference.record_slot_deviations(a["rx"], b["rx"], [t for t in tables if t in RECORD_TABLES])
                dev.update({t: d.max(axis=1, initial=0).astype(np.int32) for t, d in slot.items()})
                if "ox" in tables:
                    dev["ox"] = reference.final_deviation(a["ox"], b["ox"])
                zero = np.zeros(len(index), np.intp)
                for t in tables:
                    rows[t].append(reference.aggregate_rows(t, np.array([code], np.uint64), zero, index,
                                                            dev[t], cuts[t], slot.get(t)))
                del a, b  # reset the selection
                bar.update()
        return {t: concat_aggregates(rows[t], t, cuts[t], pair.a.rx.shape[1]) for t in tables}

    @staticmethod
    def set_selection(pair: EventPair, code):
        """Mask over all N photons, then both events' arrays re-selected with it."""
        sa, sb = pair.a.seqhis, pair.b.seqhis
        mask = (sa == code) & (sb == code)
        return select_photons(pair.a, mask), select_photons(pair.b, mask), np.flatnonzero(mask)
