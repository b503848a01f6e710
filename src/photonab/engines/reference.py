"""Per-photon deviations and per-history aggregation in plain numpy.

The arithmetic of docs/event-format.md (section 5, "Exactness"), written with numpy array
operations: the numpy and select engines use it, the tests use it as the reference
the compiled kernels must equal.
"""
from __future__ import annotations

import numpy as np

from .._cyext import load as _load_cyext
from ..cuts import TableCuts
from .base import DeviationAggregate

#: photons per summation block of the ox sums (the association every engine uses) and
#: the start of a record min: the kernels' constants, defined once, in cyext
SUM_BLOCK = _load_cyext().SUM_BLOCK
RECORD_MIN_START = _load_cyext().RECORD_MIN_START


def record_deviations(rx_a: np.ndarray, rx_b: np.ndarray) -> dict[str, np.ndarray]:
    """Per-photon rpost, rtime, rpol deviations in stored counts (int32), over every slot.

    Builds full int32 copies of the records, as the 2019 fix did with floats.
    """
    return {t: d.max(axis=1, initial=0).astype(np.int32)
            for t, d in record_slot_deviations(rx_a, rx_b).items()}


def record_slot_deviations(rx_a: np.ndarray, rx_b: np.ndarray, tables=("rpost", "rtime", "rpol")
                           ) -> dict[str, np.ndarray]:
    """Per-photon, per-slot deviations (N, maxrec) uint16 in stored counts of the record
    ``tables``: slot r of a photon is max |sA - sB| over the table's components at slot r
    (the photon's deviation is the max over its slots)."""
    out = {}
    if "rpost" in tables or "rtime" in tables:
        ra = np.asarray(rx_a[:, :, 0, :], dtype=np.int32)
        rb = np.asarray(rx_b[:, :, 0, :], dtype=np.int32)
        diff = np.abs(ra - rb)
        del ra, rb
        if "rpost" in tables:
            out["rpost"] = diff[:, :, :3].max(axis=2, initial=0).astype(np.uint16)
        if "rtime" in tables:
            out["rtime"] = diff[:, :, 3].astype(np.uint16)
        del diff
    if "rpol" in tables:
        # q1 viewed as 8 bytes: polarization x, y, z are bytes 0, 1, 2
        pa = np.ascontiguousarray(rx_a[:, :, 1, :]).view(np.uint8)[..., :3].astype(np.int32)
        pb = np.ascontiguousarray(rx_b[:, :, 1, :]).view(np.uint8)[..., :3].astype(np.int32)
        out["rpol"] = np.abs(pa - pb).max(axis=2, initial=0).astype(np.uint16)
    return out


def final_deviation(ox_a: np.ndarray, ox_b: np.ndarray) -> np.ndarray:
    """Per-photon ox deviation: max |float64(a) - float64(b)| over ox[:, :3, :]; NaN if any is NaN."""
    diff = np.abs(np.asarray(ox_a[:, :3, :], np.float64) - np.asarray(ox_b[:, :3, :], np.float64))
    return diff.reshape(len(diff), 12).max(axis=1, initial=0.0)  # max propagates NaN


def aggregate_rows(table: str, codes: np.ndarray, group_of_photon: np.ndarray, index: np.ndarray,
                   deviation: np.ndarray, cuts: TableCuts, slot_deviation: np.ndarray | None = None
                   ) -> DeviationAggregate:
    """Reference aggregation in numpy (used by the numpy and select engines).

    group_of_photon (k,) group number per photon, index (k,) its photon index in
    increasing order, deviation (k,) per photon (int for record tables, float64 for ox),
    slot_deviation (k, maxrec) per photon and slot (record tables; None for ox).
    """
    G = len(codes)
    is_float = deviation.dtype.kind == "f"
    nan = np.isnan(deviation) if is_float else np.zeros(len(deviation), bool)
    nitem = np.bincount(group_of_photon, minlength=G).astype(np.int64)
    nnan = np.bincount(group_of_photon[nan], minlength=G).astype(np.int64)
    beyond = cuts.beyond(deviation)
    ndisc = np.stack([np.bincount(group_of_photon[beyond[:, k]], minlength=G) for k in range(3)],
                     axis=1).astype(np.int64)
    ok = ~nan
    g, d, i = group_of_photon[ok], deviation[ok], index[ok]
    if is_float:
        dmax = np.full(G, -np.inf)
        dmin = np.full(G, np.inf)
    else:
        dmax = np.full(G, -1, np.int64)
        dmin = np.full(G, RECORD_MIN_START, np.int64)
    np.maximum.at(dmax, g, d)
    np.minimum.at(dmin, g, d)
    argmax = np.full(G, np.iinfo(np.int64).max)
    at_max = d == dmax[g]
    np.minimum.at(argmax, g[at_max], i[at_max])
    argmax[argmax == np.iinfo(np.int64).max] = -1
    if is_float:
        total = block_ordered_sum(G, g, i, d)
    else:
        total = np.zeros(G, np.int64)
        np.add.at(total, g, d.astype(np.int64))
    slot_max = worst_slot = None
    if slot_deviation is not None:  # the per-slot maxima and the lowest slot reaching the row max
        slot_max = np.zeros((G, slot_deviation.shape[1]), np.uint16)
        np.maximum.at(slot_max, group_of_photon, slot_deviation.astype(np.uint16))
        reaches = slot_max.astype(np.int64) == dmax[:, None]
        worst_slot = np.where(reaches.any(axis=1), reaches.argmax(axis=1), -1).astype(np.int64)
    return DeviationAggregate(table, np.asarray(codes, np.uint64), nitem, ndisc, nnan, dmax, dmin, total,
                              argmax, cuts, slot_max, worst_slot)


def block_ordered_sum(G: int, group: np.ndarray, index: np.ndarray, value: np.ndarray) -> np.ndarray:
    """float64 sums per group with the fixed association of the compiled kernel: values
    added in photon order within blocks of SUM_BLOCK photons, then the block partials
    added in block order."""
    block = index // SUM_BLOCK
    total = np.zeros(G)
    if len(value) == 0:
        return total
    first, last = int(block[0]), int(block[-1])
    # bincount adds its weights one by one in input order, starting from 0.0
    partial = np.bincount((block - first) * G + group, weights=value,
                          minlength=(last - first + 1) * G).reshape(-1, G)
    for row in partial:  # block order; adding 0.0 where a group is absent changes nothing
        total += row
    return total


#: photons per step of :func:`chase_photons`: its temporaries stay a few MB whatever N is
CHASE_CHUNK = 1 << 16


def chase_photons(pair, table: str, code, min_dev: float, limit: int,
                  chunk: int = CHASE_CHUNK) -> tuple[np.ndarray, np.ndarray, int]:
    """The engine ``chase`` in numpy, with the compiled kernel's ranking (see
    :meth:`photonab.engines.base.Engine.chase`): aligned photons of history ``code`` (any
    when None) with deviation >= ``min_dev``, most deviant first, lowest index on ties,
    NaN ranked as +inf. Deviations in stored counts (record tables) or physical (ox)."""
    best_i = np.zeros(0, np.int64)
    best_d = np.zeros(0, np.float64)
    found = 0
    a, b = pair.a, pair.b
    for start in range(0, pair.n, chunk):
        stop = min(start + chunk, pair.n)
        sa, sb = np.asarray(a.seqhis[start:stop]), np.asarray(b.seqhis[start:stop])
        sel = sa == sb
        if code is not None:
            sel &= sa == np.uint64(code)
        if not sel.any():
            continue
        if table == "ox":
            dev = final_deviation(a.ox[start:stop], b.ox[start:stop])
            dev = np.where(np.isnan(dev), np.inf, dev)
        else:
            dev = record_deviations(a.rx[start:stop], b.rx[start:stop])[table].astype(np.float64)
        keep = np.flatnonzero(sel & (dev >= min_dev))
        found += len(keep)
        best_i = np.concatenate([best_i, keep + start])
        best_d = np.concatenate([best_d, dev[keep]])
        order = np.lexsort((best_i, -best_d))[:limit]
        best_i, best_d = best_i[order], best_d[order]
    return best_i, best_d, found
