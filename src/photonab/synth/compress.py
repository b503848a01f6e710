"""Compression of the propagated tracks into the 2019 record layout (docs/event-format.md,
section 2), and the final photons (ox)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..events import Domains
from .physics import Tracks
from .scene import EXTENT, TMAX, WL_DOMAIN

def domain_arrays(maxrec: int) -> tuple[np.ndarray, np.ndarray]:
    """fdom (3,1,4) float32 and idom (1,1,4) int32 of a synthetic event (section 1)."""
    fdom = np.zeros((3, 1, 4), np.float32)
    fdom[0, 0] = (0, 0, 0, EXTENT)
    fdom[1, 0] = (0, TMAX, TMAX, 0)
    fdom[2, 0] = WL_DOMAIN
    idom = np.zeros((1, 1, 4), np.int32)
    idom[0, 0, 2], idom[0, 0, 3] = maxrec - 1, maxrec
    return fdom, idom


def domains(maxrec: int) -> Domains:
    """The compression domains as a reader sees them (bins, eps), from :func:`domain_arrays`."""
    return Domains.from_arrays(*domain_arrays(maxrec), Path("<synthetic>"))


def _short(v, center: float, extent: float) -> np.ndarray:
    """round_half_even(32767 (v - c) / E) in float64 as the 16 bits of an int16 (uint64).

    Outside the domain (or NaN) -> -32768.
    """
    s = v.astype(np.float64)
    if center:
        s -= center
    s *= 32767.0
    s /= extent
    np.rint(s, out=s)
    np.fmax(s, -32768.0, out=s)  # fmax/fmin send NaN to -32768 too
    np.fmin(s, 32768.0, out=s)  # 32768 has the bits of -32768 once cut to 16
    return (s.astype(np.int64) & 0xFFFF).view(np.uint64)


def _pol_byte(p) -> np.ndarray:
    u = p.astype(np.float64)
    u += 1.0
    u *= 127.0
    return np.rint(u, out=u).astype(np.uint64)


def compress(tr: Tracks, dom: Domains, out: np.ndarray) -> None:
    """Fill ``out`` (n, maxrec, 2, 4) int16, all zero on entry, with the compressed records.

    Each filled slot is two little-endian 8-byte words: (x, y, z, t) shorts, and
    (pol x, y, z, wavelength, m1, m2, boundary, flag) bytes.
    """
    n, maxrec = out.shape[:2]
    cx, cy, cz = (float(c) for c in dom.center)
    extent, t0, tmax = float(dom.extent), float(dom.t0), float(dom.tmax)
    words = out.reshape(n * maxrec * 2, 4).view(np.uint64).reshape(-1)
    wl = np.rint(255.0 * (tr.wavelength.astype(np.float64) - float(dom.wl_low)) / float(dom.wl_range))
    wl = np.clip(wl, 0, 255).astype(np.uint64)
    for r, s in enumerate(tr.slots):
        if s.ids.size == 0:
            continue
        post = (_short(s.pos[0], cx, extent)
                | _short(s.pos[1], cy, extent) << np.uint64(16)
                | _short(s.pos[2], cz, extent) << np.uint64(32)
                | _short(s.t, t0, tmax) << np.uint64(48))
        rest = (_pol_byte(s.pol[0]) | _pol_byte(s.pol[1]) << np.uint64(8)
                | _pol_byte(s.pol[2]) << np.uint64(16) | wl[s.ids] << np.uint64(24)
                | s.meta.astype(np.uint64) << np.uint64(32))
        at = (s.ids * maxrec + r) * 2
        words[at] = post
        words[at + 1] = rest


def final_photons(tr: Tracks, first_id: int, out: np.ndarray) -> None:
    """Fill ``out`` (n, 4, 4) ox: final position/time, direction/weight, pol/wavelength, flags."""
    out[:, 0] = tr.end.T
    out[:, 1, :3], out[:, 1, 3] = tr.direction.T, 1.0
    out[:, 2, :3], out[:, 2, 3] = tr.end_pol.T, tr.wavelength
    q3 = out.view(np.uint32)[:, 3]
    q3[:, 0], q3[:, 1], q3[:, 3] = tr.boundary, tr.sensor, tr.flags
    q3[:, 2] = np.arange(first_id, first_id + tr.n, dtype=np.uint32)


