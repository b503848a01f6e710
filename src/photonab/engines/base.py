"""What every engine returns: history counts and per-history deviation aggregates.

Engines differ only in how they compute these; the tables are built from them by
:mod:`photonab.tables`, so equal aggregates mean equal tables.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

import numpy as np

from ..cuts import TableCuts


@dataclass
class HistoryCounts:
    """Photons per seqhis code in A and in B, sorted by code."""

    codes: np.ndarray  # uint64 (H,)
    a: np.ndarray  # int64 (H,)
    b: np.ndarray  # int64 (H,)

    @classmethod
    def from_unsorted(cls, codes, a, b, sort=np.ndarray.sort) -> "HistoryCounts":
        """Counts of codes in any order, sorted by code (a counter's codes are distinct, so
        one unstable sort is the stable one; equal codes keep their order). ``sort`` sorts
        a uint64 array in place (the compiled engine's is cyext.sort_codes)."""
        codes, a, b = np.asarray(codes, np.uint64), np.asarray(a, np.int64), np.asarray(b, np.int64)
        if len(codes) < 2 or bool((codes[:-1] < codes[1:]).all()):
            return cls(codes, a, b)  # sorted already: the arrays as they are
        ordered = codes.copy()
        sort(ordered)
        if not bool((ordered[:-1] < ordered[1:]).all()):
            order = np.argsort(codes, kind="stable")
            return cls(codes[order], a[order], b[order])
        # distinct codes. When most histories have the same counts (one photon each, a
        # million of them), sorting the codes alone and placing the others by a binary
        # search of their (sorted) codes is up to 3x faster than an argsort and gathers
        odd = np.flatnonzero((a != a[0]) | (b != b[0]))
        if len(odd) <= len(codes) // 4:
            by_code = odd[np.argsort(codes[odd])]
            at = np.searchsorted(ordered, codes[by_code])
            sa, sb = np.full(len(codes), a[0]), np.full(len(codes), b[0])
            sa[at], sb[at] = a[by_code], b[by_code]
            return cls(ordered, sa, sb)
        order = np.argsort(codes)  # distinct: the unstable sort is the stable one
        return cls(ordered, a[order], b[order])

    def groups(self) -> np.ndarray:
        """Codes that can have aligned photons (present in both A and B), ascending."""
        both = (self.a > 0) & (self.b > 0)
        return self.codes if bool(both.all()) else self.codes[both]

    def equals(self, other: "HistoryCounts") -> bool:
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))


@dataclass
class DeviationAggregate:
    """One deviation table's per-history aggregates over aligned photons.

    ``max``, ``min``, ``sum`` are in stored counts for the record tables (multiply by
    ``cuts.bin`` for physical units) and physical float64 for ox; they cover the
    photons whose deviation is not NaN. ``argmax`` is the (sliced-event) index of the
    most deviant photon, the lowest index on ties, -1 if none.
    """

    table: str
    codes: np.ndarray  # uint64 (G,)
    nitem: np.ndarray  # int64 (G,)
    # integer columns are int64, or int32 views of cyext's record rows (ndisc, max, min,
    # argmax: docs/kernels.md, "Record rows"); the engines' values are the same
    ndisc: np.ndarray  # (G, 3)
    nnan: np.ndarray  # int64 (G,)
    max: np.ndarray  # (G,) integer, or float64 (ox)
    min: np.ndarray
    sum: np.ndarray
    argmax: np.ndarray  # integer (G,)
    cuts: TableCuts
    # record tables only (None for ox): slot_max[g, r] is the largest slot-r deviation of
    # history g's photons in stored counts (slot 0 = the source, 1 = the first step, ...;
    # 0 for a history without photons); worst_slot[g] the lowest slot reaching max[g]
    # (-1 when none: no photon). docs/event-format.md, section 5.
    slot_max: np.ndarray | None = None  # uint16 (G, maxrec)
    worst_slot: np.ndarray | None = None  # integer (G,): int64, or int16 from cyext

    def rows(self, keep) -> "DeviationAggregate":
        """The histories (rows) that ``keep`` (a mask or row numbers) picks."""
        return type(self)(self.table, **{f.name: _rows(getattr(self, f.name), keep) for f in fields(self)
                                         if f.name not in ("table", "cuts")}, cuts=self.cuts)

    def nonempty(self) -> "DeviationAggregate":
        """Only histories with at least one aligned photon."""
        return self.rows(self.nitem > 0)

    def equals(self, other: "DeviationAggregate") -> bool:
        return self.table == other.table and all(
            _same(getattr(self, f.name), getattr(other, f.name))
            for f in fields(self) if f.name not in ("table", "cuts"))


def _rows(values, keep):
    return None if values is None else values[keep]


def _same(x, y) -> bool:
    if x is None or y is None:
        return x is y
    return x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")


def concat_aggregates(parts: list[DeviationAggregate], table: str, cuts: TableCuts,
                      maxrec: int = 0) -> DeviationAggregate:
    """Rows of several aggregates (e.g. one per history row) as one aggregate; ``maxrec``
    gives the slot count of an empty record table."""
    names = [f.name for f in fields(DeviationAggregate) if f.name not in ("table", "cuts")]
    if not parts:
        floats = ("max", "min", "sum") if table == "ox" else ()  # ox deviations are physical floats
        empty = {n: np.zeros((0, 3) if n == "ndisc" else 0,
                             np.uint64 if n == "codes" else np.float64 if n in floats else np.int64)
                 for n in names if n not in ("slot_max", "worst_slot")}
        if table != "ox":
            empty.update(slot_max=np.zeros((0, maxrec), np.uint16), worst_slot=np.zeros(0, np.int64))
        return DeviationAggregate(table, **empty, cuts=cuts)
    return DeviationAggregate(table, **{n: None if getattr(parts[0], n) is None
                                        else np.concatenate([getattr(p, n) for p in parts]) for n in names},
                              cuts=cuts)


def no_progress(total, desc):
    """Progress factory that shows nothing (engines call ``progress(total, desc)``)."""
    return _NoBar()


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass


def photon_chunks(n: int, chunk: int):
    """[start, stop) ranges of at most ``chunk`` photons covering 0..n."""
    for start in range(0, n, chunk):
        yield start, min(start + chunk, n)


@runtime_checkable
class Engine(Protocol):
    """What :func:`photonab.comparison.compare` and :func:`photonab.chase.chase` ask of an engine.

    ``name`` is the engine's name (``cython``, ``numpy``, ``select``, ``dask``).
    """

    name: str

    def histories(self, pair, progress=no_progress) -> HistoryCounts:
        """Photons per seqhis code in A and in B."""

    def deviations(self, pair, groups: np.ndarray, cuts, tables=(), progress=no_progress) -> dict:
        """One :class:`DeviationAggregate` per table, over the aligned photons of ``groups``."""

    def chase(self, pair, table: str, code, min_dev: float, limit: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The at most ``limit`` aligned photons of history ``code`` (every history when
        None) whose deviation in ``table`` is >= ``min_dev``: (index int64, deviation
        float64, found). Most deviant first, lowest photon index on ties; deviations in
        stored counts for the record tables, physical for ox, NaN ranked as +inf;
        ``found`` counts every photon that reached ``min_dev``. Every engine gives the
        same three values (the compiled kernel's ranking)."""
