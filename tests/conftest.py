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
