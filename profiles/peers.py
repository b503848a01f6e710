"""The peers a user would pick for the rpost table, timed beside photonab (``--peers``).

Each peer computes the rpost table of the aligned photons (seqhis_A == seqhis_B): per
history, the number of photons and the maximum of the per-photon deviation
d = max |sA - sB| over the record slots and x, y, z, in stored counts (docs/tables.md).
Before it is timed, a peer's maxima per history are checked against photonab's; a peer
that disagrees fails its case rather than being timed.

- ``numba``: a one-pass ``@njit(parallel=True)`` kernel, one photon range per thread,
  each thread with its own open-addressing table keyed by seqhis, merged at the end:
  what a competent numba user writes.
- ``polars``: the record components as columns, the per-photon maximum as a horizontal
  max of expressions, then ``group_by(seqhis).agg(max, len)``.
- ``pandas``: the per-photon deviation with numpy, then ``groupby(seqhis).agg``.
- ``cython-rpost``: photonab itself asked for the rpost table only
  (``compare(pair, tables=("rpost",))``), the fair comparison.

Install them with the ``peers`` extra: ``pip install '.[peers]'``.
"""
from __future__ import annotations

import importlib.util

import numpy as np

#: peer -> the module it needs
PEERS = {"numba": "numba", "polars": "polars", "pandas": "pandas"}
PHOTONAB_RPOST = "cython-rpost"
NAMES = (*PEERS, PHOTONAB_RPOST)


def missing(name: str) -> str | None:
    """Why peer ``name`` cannot run here, or None."""
    module = PEERS.get(name)
    if module and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install '.[peers]')"
    return None


class RpostTable:
    """A peer's rpost table: sorted history codes, photons, max deviation (counts)."""

    def __init__(self, codes, nitem, dmax, seconds=None):
        order = np.argsort(np.asarray(codes, np.uint64))
        self.codes = np.asarray(codes, np.uint64)[order]
        self.nitem = np.asarray(nitem, np.int64)[order]
        self.max = np.asarray(dmax, np.int64)[order]
        self.seconds = seconds or {}
        self.rc = 0

    def to_dict(self) -> dict:
        return {"rpost": [[int(c), int(n), int(m)] for c, n, m in zip(self.codes, self.nitem, self.max)]}

    def equals(self, other: "RpostTable") -> bool:
        return (np.array_equal(self.codes, other.codes) and np.array_equal(self.nitem, other.nitem)
                and np.array_equal(self.max, other.max))


def photonab_rpost(pair, n_threads=None) -> RpostTable:
    """photonab's rpost table (cython engine, rpost only), as a peer table."""
    from photonab.comparison import compare
    result = compare(pair, "cython", tables=("rpost",), n_threads=n_threads, progress=False)
    agg = result.tables["rpost"].raw
    keep = agg.nitem > 0
    table = RpostTable(agg.codes[keep], agg.nitem[keep], agg.max[keep], result.seconds)
    return table


# ---------------------------------------------------------------- numba

_NUMBA_KERNEL = None


def _numba_kernel():
    global _NUMBA_KERNEL
    if _NUMBA_KERNEL is not None:
        return _NUMBA_KERNEL
    import numba

    @numba.njit(parallel=True, cache=False, nogil=True)
    def rpost(seq_a, seq_b, rx_a, rx_b, nthreads, capacity):
        n, maxrec = rx_a.shape[0], rx_a.shape[1]
        keys = np.zeros((nthreads, capacity), np.uint64)
        count = np.zeros((nthreads, capacity), np.int64)
        dmax = np.full((nthreads, capacity), -1, np.int64)
        full = np.zeros(nthreads, np.int64)
        mask = capacity - 1
        for t in numba.prange(nthreads):
            lo = n * t // nthreads
            hi = n * (t + 1) // nthreads
            for i in range(lo, hi):
                h = seq_a[i]
                if h != seq_b[i] or h == 0:
                    continue
                d = 0
                for r in range(maxrec):
                    for c in range(3):
                        x = abs(np.int32(rx_a[i, r, 0, c]) - np.int32(rx_b[i, r, 0, c]))
                        if x > d:
                            d = x
                slot = (h * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
                j = np.int64(slot) & mask
                probes = 0
                while keys[t, j] != h and keys[t, j] != 0:
                    j = (j + 1) & mask
                    probes += 1
                    if probes > capacity:
                        break
                if probes > capacity:
                    full[t] = 1
                    continue
                keys[t, j] = h
                count[t, j] += 1
                if d > dmax[t, j]:
                    dmax[t, j] = d
        return keys, count, dmax, full

    _NUMBA_KERNEL = rpost
    return rpost


def numba_rpost(pair, n_threads=None, capacity: int = 1 << 14) -> RpostTable:
    import numba
    kernel = _numba_kernel()
    nthreads = n_threads or numba.get_num_threads()
    keys, count, dmax, full = kernel(pair.a.seqhis, pair.b.seqhis, pair.a.rx, pair.b.rx, nthreads, capacity)
    if full.any():
        raise RuntimeError(f"numba peer: more than {capacity} histories in a thread's table")
    used = keys != 0
    codes, inverse = np.unique(keys[used], return_inverse=True)
    nitem = np.bincount(inverse, weights=count[used], minlength=codes.size).astype(np.int64)
    best = np.full(codes.size, -1, np.int64)
    np.maximum.at(best, inverse, dmax[used])
    return RpostTable(codes, nitem, best)


# ---------------------------------------------------------------- polars and pandas


def _aligned_deviation(pair):
    """(codes, d) of the aligned photons with numpy: d = max |sA - sB| over slots and x,y,z."""
    seq_a, seq_b = np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis)
    keep = (seq_a == seq_b) & (seq_a != 0)
    ra = pair.a.rx[keep][:, :, 0, :3].astype(np.int32)
    rb = pair.b.rx[keep][:, :, 0, :3].astype(np.int32)
    return seq_a[keep], np.abs(ra - rb).max(axis=(1, 2))


def pandas_rpost(pair, n_threads=None) -> RpostTable:
    import pandas as pd
    codes, d = _aligned_deviation(pair)
    frame = pd.DataFrame({"seqhis": codes, "d": d})
    table = frame.groupby("seqhis", sort=False)["d"].agg(["size", "max"])
    return RpostTable(table.index.to_numpy(np.uint64), table["size"].to_numpy(), table["max"].to_numpy())


def polars_rpost(pair, n_threads=None) -> RpostTable:
    import polars as pl
    maxrec = pair.a.maxrec
    columns = {"a": np.asarray(pair.a.seqhis), "b": np.asarray(pair.b.seqhis)}
    for side, event in (("A", pair.a), ("B", pair.b)):
        post = np.asarray(event.rx[:, :, 0, :3]).reshape(len(event.rx), maxrec * 3)
        for k in range(maxrec * 3):
            columns[f"{side}{k}"] = post[:, k]
    frame = pl.DataFrame(columns)
    dev = pl.max_horizontal([(pl.col(f"A{k}").cast(pl.Int32) - pl.col(f"B{k}").cast(pl.Int32)).abs()
                             for k in range(maxrec * 3)])
    table = (frame.lazy().filter((pl.col("a") == pl.col("b")) & (pl.col("a") != 0))
             .group_by("a").agg(pl.len().alias("nitem"), dev.max().alias("dmax")).collect())
    return RpostTable(table["a"].to_numpy().astype(np.uint64), table["nitem"].to_numpy(),
                      table["dmax"].to_numpy())


IMPLEMENTATIONS = {"numba": numba_rpost, "polars": polars_rpost, "pandas": pandas_rpost,
                   PHOTONAB_RPOST: photonab_rpost}


def checked_run(name: str, pair, n_threads=None):
    """A callable computing peer ``name``'s rpost table, after checking once that its
    maxima per history equal photonab's (RuntimeError if not)."""
    why = missing(name)
    if why:
        raise RuntimeError(f"peer {name}: {why}")
    function = IMPLEMENTATIONS[name]
    reference = photonab_rpost(pair, n_threads)
    got = function(pair, n_threads)
    if not got.equals(reference):
        raise RuntimeError(f"peer {name}: its rpost table differs from photonab's "
                           f"({len(got.codes)} vs {len(reference.codes)} histories)")
    return lambda: function(pair, n_threads)
