"""Deviation cuts (docs/event-format.md, section 5): three levels per table, in physical units.

Record cuts are multiples of the compression bin ("eps"); the ox cuts are absolute
and user-settable. A photon is beyond cut k when its deviation ``d * bin > cut_k``
(both float64). For the record tables, whose deviations are whole stored counts, that
predicate is the same as ``d >= threshold_k`` for an integer threshold, which is what
the compiled kernels compare.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._cyext import load as _load_cyext

if TYPE_CHECKING:  # an annotation only: importing events (pathlib, mmap, signals) is start-up time
    from .events import Domains

#: the record tables in the order of the kernels' thresholds and deviations (defined once, in cyext)
RECORD_TABLES = _load_cyext().RECORD_TABLES
TABLES = RECORD_TABLES + ("ox",)
LEVELS = ("INFO", "WARNING", "ERROR", "FATAL")
UNITS = {"rpost": "mm", "rtime": "ns", "rpol": "", "ox": ""}
RECORD_FACTORS = {"rpost": (1.1, 1.6, 2.1), "rtime": (1.1, 1.6, 2.1), "rpol": (1.0, 1.5, 2.0)}
OX_CUTS = (0.10, 0.25, 0.50)


@dataclass(frozen=True)
class TableCuts:
    """Cuts of one table: ``values`` (3,) float64 physical; ``bin`` = physical size of one
    stored count (1.0 for ox, whose deviations are already physical)."""

    table: str
    values: tuple[float, float, float]
    bin: float

    def thresholds(self) -> np.ndarray:
        """Smallest whole deviation d with ``d * bin > cut_k``, per level (int64)."""
        out = np.empty(3, dtype=np.int64)
        for k, cut in enumerate(self.values):
            d = max(0, int(np.floor(cut / self.bin)))
            while np.float64(d) * self.bin <= cut:
                d += 1
            while d > 0 and np.float64(d - 1) * self.bin > cut:
                d -= 1
            out[k] = d
        return out

    def beyond(self, deviation: np.ndarray) -> np.ndarray:
        """(k, 3) bool: photon beyond each cut, by the contract's float64 predicate. NaN is
        beyond every cut."""
        phys = np.asarray(deviation, dtype=np.float64) * self.bin
        out = phys[:, None] > np.asarray(self.values)[None, :]
        out[np.isnan(phys)] = True
        return out


@dataclass(frozen=True)
class Cuts:
    """The cuts of all four tables for one pair of events."""

    rpost: TableCuts
    rtime: TableCuts
    rpol: TableCuts
    ox: TableCuts

    @classmethod
    def for_domains(cls, domains: Domains, ox: tuple[float, float, float] = OX_CUTS) -> "Cuts":
        eps = {"rpost": domains.eps_pos, "rtime": domains.eps_t, "rpol": domains.eps_pol}
        bins = {"rpost": domains.pos_bin, "rtime": domains.time_bin, "rpol": domains.pol_bin}
        ox = tuple(float(c) for c in ox)
        if len(ox) != 3 or not (0 <= ox[0] <= ox[1] <= ox[2]):
            raise ValueError(f"ox cuts must be three increasing non-negative values, got {ox}")
        record = {t: TableCuts(t, tuple(f * eps[t] for f in RECORD_FACTORS[t]), bins[t]) for t in RECORD_TABLES}
        return cls(**record, ox=TableCuts("ox", ox, 1.0))

    def __getitem__(self, table: str) -> TableCuts:
        return getattr(self, table)

    def record_thresholds(self) -> np.ndarray:
        """(3 tables, 3 levels) int64 integer thresholds for the compiled record kernel."""
        return np.stack([self[t].thresholds() for t in RECORD_TABLES])
