"""Shared test helpers: random event pairs written in the 2019 layout."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _unshadow_cyext():
    """Tests run from the repository root, whose cyext/ holds only sources: make sure
    ``import cyext`` finds the compiled, installed module (see test_packaging)."""
    import importlib
    sys.modules.pop("cyext", None)
    return importlib.import_module("cyext")


FDOM = np.array([[[0, 0, 0, 748]], [[0, 20, 20, 0]], [[60, 820, 20, 760]]], np.float32)


def write_event(path: Path, ox, rx, ph, fdom=FDOM, maxrec=None, **optional) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    maxrec = rx.shape[1] if maxrec is None else maxrec
    idom = np.array([[[0, 0, maxrec - 1, maxrec]]], np.int32)
    for name, arr in dict(ox=ox, rx=rx, ph=ph, fdom=fdom, idom=idom, **optional).items():
        np.save(path / f"{name}.npy", arr)
    return path


def random_pair(tmp: Path, n: int, *, maxrec: int = 10, seed: int = 0, n_codes: int = 8, p_aligned: float = 0.8,
                p_flip: float = 0.2, spread: int = 3, nan: int = 0, extreme: bool = False, distinct: bool = False,
                root: Path | None = None):
    """A/B events whose records differ by small random counts; returns (a_dir, b_dir).

    n_codes histories (or one per photon with ``distinct``), a fraction p_aligned of
    photons with the same history in B, values flipped by up to ``spread`` counts,
    ``nan`` NaNs in B's ox, and with ``extreme`` some -32768 (out of domain) values.
    """
    rng = np.random.default_rng(seed)
    steps = rng.integers(1, maxrec + 1, n)
    if distinct:
        codes = (np.arange(n, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x1000003)
    else:
        pool = np.array([int("".join(rng.choice(list("bc89a"), k - 1)) + "d", 16) if k > 1 else 0xd
                         for k in rng.integers(1, maxrec + 1, n_codes)], np.uint64)
        codes = pool[rng.integers(0, n_codes, n)]
    seq_a = codes
    seq_b = np.where(rng.random(n) < p_aligned, seq_a, pool[rng.integers(0, n_codes, n)] if not distinct
                     else seq_a ^ np.uint64(0xF0))
    rx_a = rng.integers(-30000, 30000, (n, maxrec, 2, 4)).astype(np.int16)
    slot = np.arange(maxrec)[None, :]
    rx_a[slot >= steps[:, None]] = 0
    flip = (rng.random(rx_a.shape) < p_flip) * rng.integers(-spread, spread + 1, rx_a.shape)
    rx_b = (rx_a + flip).astype(np.int16)
    rx_b[slot >= steps[:, None]] = 0
    if extreme:
        hit = rng.random(rx_a.shape) < 0.01
        rx_b[hit] = -32768
    ox_a = rng.normal(0, 100, (n, 4, 4)).astype(np.float32)
    ox_b = (ox_a + rng.normal(0, 0.1, ox_a.shape) * (rng.random((n, 1, 1)) < 0.5)).astype(np.float32)
    if nan:
        ox_b[rng.choice(n, min(nan, n), replace=False), 0, 3] = np.nan
    ph_a = np.zeros((n, 1, 2), np.uint64)
    ph_b = np.zeros((n, 1, 2), np.uint64)
    ph_a[:, 0, 0], ph_b[:, 0, 0] = seq_a, seq_b
    root = tmp / "evt" if root is None else root
    a = write_event(root / "1", ox_a, rx_a, ph_a)
    b = write_event(root / "-1", ox_b, rx_b, ph_b)
    return a, b


@pytest.fixture
def cyext():
    return _unshadow_cyext()


def hand_records():
    """Seven photons of records whose deviations are worked out by hand (docs/event-format.md,
    sections 2 and 5), not by engines/reference.py. Returns (rx_a, rx_b, want) with want
    (7, 3) = the rpost, rtime, rpol deviation of each photon in stored counts.

    A slot is q0 = int16 words x, y, z, t and q1 = 8 bytes: polarization x, y, z in bytes
    0, 1, 2, wavelength in byte 3, material and flag bytes 4..7 (not compared).
    """
    n, maxrec = 7, 3
    a = np.zeros((n, maxrec, 2, 4), np.int16)
    b = np.zeros_like(a)
    qa = a.view(np.uint8).reshape(n, maxrec, 2, 8)[:, :, 1]  # q1 as bytes
    qb = b.view(np.uint8).reshape(n, maxrec, 2, 8)[:, :, 1]
    want = np.zeros((n, 3), np.int64)
    # 0: y off by 5 in slot 0, x by 3 in slot 2: the max over slots and x, y, z
    a[0, 0, 0, 1], b[0, 0, 0, 1] = 100, 95
    a[0, 2, 0, 0], b[0, 2, 0, 0] = -7, -4
    want[0] = (5, 0, 0)
    # 1: only the time lane (word 3) differs: rtime, not rpost
    a[1, 1, 0, 3], b[1, 1, 0, 3] = 1000, 1007
    want[1] = (0, 7, 0)
    # 2: -32768 (outside the domain) is compared as the integer it is: against 32767 in
    # z that is 65535, the largest deviation there is; in time against 0 it is 32768
    a[2, 0, 0, 2], b[2, 0, 0, 2] = -32768, 32767
    a[2, 1, 0, 3] = -32768
    want[2] = (65535, 32768, 0)
    # 3: polarization x byte 0 against 254 (p = -1 against +1), pol z off by 3 in slot 1
    qa[3, 0, 0], qb[3, 0, 0] = 0, 254
    qa[3, 1, 2], qb[3, 1, 2] = 10, 13
    want[3] = (0, 0, 254)
    # 4: the wavelength byte and the material/flag bytes differ: nothing is compared there
    qa[4, :, 3], qa[4, :, 4:] = 200, 255
    want[4] = (0, 0, 0)
    # 5: bytes, not words: q1 word 0 = 0x0300 against 0x0100 (little-endian) is pol x 0 = 0
    # and pol y 3 against 1, a deviation of 2 (as int16 words they would differ by 512)
    a[5, 0, 1, 0], b[5, 0, 1, 0] = 0x0300, 0x0100
    want[5] = (0, 0, 2)
    # 6: every slot counts, the last one too
    a[6, 2, 0, 0] = 1
    want[6] = (1, 0, 0)
    return a, b, want


def kernel_record_deviations(cyext, rx_a, rx_b, n_threads=1):
    """(N, 3) per-photon record deviations as the compiled kernels compute them (chase of
    every aligned photon, one table at a time)."""
    n = len(rx_a)
    seq = np.full(n, 0xD, np.uint64)
    out = np.zeros((n, 3), np.int64)
    for table in range(3):
        index, dev = np.zeros(n, np.int64), np.zeros(n)
        k, found = cyext.chase(index, dev, table, 0xD, True, 0.0, rx_a, rx_b, seq, seq, 0, n, n_threads)
        assert k == found == n
        out[index, table] = dev
    return out
