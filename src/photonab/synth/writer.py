"""Writing the 2019 event folders: full-size memory-mapped files filled block by block,
the domain files, and the history ranks (ps, rs) of a second pass."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..events import LAYOUT, Domains
from .compress import compress, domain_arrays, final_photons
from .physics import Tracks

def _create_event(path: Path, n: int, maxrec: int) -> None:
    """Full-size per-photon files that read as zeros until written.

    The domain files go first and come back last (_finish_event), so a folder
    without them is unfinished; synthesize() also builds the folder under a temporary
    name and renames it into place only when it is complete.
    """
    path.mkdir(parents=True, exist_ok=True)
    for name in ("fdom", "idom"):
        (path / f"{name}.npy").unlink(missing_ok=True)
    shapes = {"ox": (n, 4, 4), "rx": (n, maxrec, 2, 4), "ph": (n, 1, 2),
              "ps": (n, 1, 4), "rs": (n, maxrec, 1, 4)}
    for name, shape in shapes.items():
        (path / f"{name}.npy").unlink(missing_ok=True)  # never write into a stale mapping
        np.lib.format.open_memmap(path / f"{name}.npy", mode="w+", dtype=LAYOUT[name][0],
                                  shape=shape).flush()


def _finish_event(path: Path, maxrec: int) -> None:
    fdom, idom = domain_arrays(maxrec)
    np.save(path / "fdom.npy", fdom)
    np.save(path / "idom.npy", idom)


class _Output:
    """Both events' per-photon files, memory-mapped for writing, and a record buffer.

    Records are built in the buffer and copied into the file in one go: scattering
    them straight into the map costs a page fault per touched page.
    """

    def __init__(self, a_dir: Path, b_dir: Path, maxrec: int, block: int):
        self.maps = [{name: np.load(path / f"{name}.npy", mmap_mode="r+")
                      for name in ("ox", "rx", "ph")} for path in (a_dir, b_dir)]
        self.records = np.empty((block, maxrec, 2, 4), np.int16)

    def write(self, event: int, lo: int, tr: Tracks, dom: Domains, nan_rows=()) -> list:
        """Write one block of event 0 (A) or 1 (B); returns (codes, counts) of seqhis, seqmat.

        Blocks are disjoint, so several processes write one file at once. ``nan_rows``
        get NaN as final time in ox.
        """
        maps, hi = self.maps[event], lo + tr.n
        ox = maps["ox"][lo:hi]
        final_photons(tr, lo, ox)
        ox[nan_rows, 0, 3] = np.nan
        records = self.records[:tr.n]
        records.fill(0)
        compress(tr, dom, records)
        maps["rx"][lo:hi] = records
        ph = maps["ph"][lo:hi, 0]
        ph[:, 0], ph[:, 1] = tr.seqhis, tr.seqmat
        return [np.unique(codes, return_counts=True) for codes in (tr.seqhis, tr.seqmat)]


def _rank_lookup(counts: Counter, top: int = 32):
    """Sorted codes of the ``top`` most frequent (count desc, code asc) and their ranks."""
    best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    codes = np.array([c for c, _ in best], np.uint64)
    order = np.argsort(codes)
    return codes[order], order.astype(np.uint8)


def _ranks(values, codes, ranks):
    if codes.size == 0:
        return np.full(len(values), 255, np.uint8)
    at = np.minimum(np.searchsorted(codes, values), codes.size - 1)
    return np.where(codes[at] == values, ranks[at], 255).astype(np.uint8)


def _index_chunk(path: Path, lookups: list, lo: int, hi: int) -> None:
    """ps/rs of photons lo..hi: rank of the photon's history (byte 0) and material
    sequence (byte 1) among the 32 most frequent of its event, 255 for the tail."""
    ph = np.load(path / "ph.npy", mmap_mode="r")
    ps = np.load(path / "ps.npy", mmap_mode="r+")
    rs = np.load(path / "rs.npy", mmap_mode="r+")
    sel = np.zeros((hi - lo, 4), np.uint8)
    for col, (codes, ranks) in enumerate(lookups):
        sel[:, col] = _ranks(np.asarray(ph[lo:hi, 0, col]), codes, ranks)
    ps[lo:hi, 0] = sel
    rs[lo:hi, :, 0] = sel[:, None, :]

