"""The optical toy: counter-based random numbers, the torch, Fresnel and Snell at the
cube faces, bulk absorption and scattering, walls that absorb or detect.

Photons are propagated as vectors of float32 (one row per component), slot by slot;
each propagated photon keeps one compact :class:`Slot` per record slot it reached.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..seqhis import FLAG_BIT, NIBBLE
from .scene import (ABSLEN_AIR, ABSLEN_GLASS, AIR, BND_CUBE, BND_NONE, BND_WALL, BOX_HALF, C_LIGHT,
                    CUBE_HALF, DETECT_EFFICIENCY, GLASS, N_AIR, N_GLASS, ROCK, SCATLEN_AIR,
                    SCATLEN_GLASS, TORCH_CONE, TORCH_RADIUS, TORCH_Z, WAVELENGTH, WAVELENGTH_SPREAD,
                    WORDS)


def _raw_words(seed: int, stream: int, start: int, n: int, words64: int) -> np.ndarray:
    """(n, words64) uint64 draws for photons start..start+n of PCG64 stream ``stream``.

    Each photon owns ``words64`` consecutive draws, so jumping to its first one makes
    the numbers independent of how the photons are split into blocks.
    """
    bitgen = np.random.PCG64(np.random.SeedSequence([seed, stream]))
    bitgen.advance(start * words64)
    return np.random.Generator(bitgen).integers(0, 2**64 - 1, size=(n, words64),
                                                dtype=np.uint64, endpoint=True)


def _physics_words(seed: int, start: int, n: int, maxrec: int) -> np.ndarray:
    """(n, maxrec, WORDS) uint32: slot 0 drives the torch, slot r step r."""
    raw = _raw_words(seed, 0, start, n, maxrec * WORDS // 2)
    return raw.view(np.uint32).reshape(n, maxrec, WORDS)


def _noise_codes(seed: int, start: int, n: int, maxrec: int) -> np.ndarray:
    """(n, >= maxrec) uint32: for photon i, slot r, four noise bytes (x, y, z, t) in [i, r]."""
    return _raw_words(seed, 1, start, n, (maxrec + 1) // 2).view(np.uint32)


def _unit24(w: np.ndarray) -> np.ndarray:
    """uint32 -> float32 uniform in (0, 1), never 0 (it goes into log)."""
    return (w >> 8).astype(np.float32) * np.float32(2.0**-24) + np.float32(2.0**-25)


def _unit16(w: np.ndarray) -> np.ndarray:
    """uint16-range values -> float32 uniform in (0, 1)."""
    return (w.astype(np.float32) + np.float32(0.5)) * np.float32(1.0 / 65536)


def _remix(words: np.ndarray, attempt) -> np.ndarray:
    """Fresh-looking words from old ones: key by attempt, then a 32-bit avalanche mixer."""
    key = (np.asarray(attempt, np.uint64) * np.uint64(0x9E3779B9)) & np.uint64(0xFFFFFFFF)
    x = words ^ key.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


# ---------------------------------------------------------------- vector helpers
# Vectors are (3, m) float32, one contiguous row per component. numpy's where() and
# boolean-mask indexing are slow on mixed masks, so selections below use exact 0/1
# blends, 1-d takes and flat-index scatters instead.


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return np.stack((a[1] * b[2] - a[2] * b[1],
                     a[2] * b[0] - a[0] * b[2],
                     a[0] * b[1] - a[1] * b[0]))


def _blend(mask, a, b):
    """``where(mask, a, b)`` for finite a, b: exact, since x*1 + y*0 == x."""
    m = mask.astype(np.float32)
    return a * m + b * (np.float32(1) - m)


def _normalize(v, fallback=None):
    norm = np.sqrt(_dot(v, v))
    bad = ~(norm >= 1e-6)  # also catches NaN
    if fallback is not None and bad.any():
        k = np.flatnonzero(bad)
        v = v.copy()
        v[:, k] = fallback[:, k]
        norm[k] = np.sqrt(_dot(v[:, k], v[:, k]))
    return v / norm


def _perpendicular(d):
    """A unit vector perpendicular to each unit vector of ``d``: d x e_x, or d x e_y."""
    big_x = np.abs(d[0]) > 0.9
    v = np.stack((-d[2] * big_x, d[2] * ~big_x, _blend(big_x, d[0], -d[1])))
    return _normalize(v)


def _min3(a):
    return np.minimum(np.minimum(a[0], a[1]), a[2])


def _max3(a):
    return np.maximum(np.maximum(a[0], a[1]), a[2])


def _which(a, value):
    """Row index 0..2 of ``a`` (3, m) holding ``value`` (the first when tied)."""
    i = (a[1] != value).astype(np.intp)
    i += 1
    i *= a[0] != value
    return i


# ---------------------------------------------------------------- propagation

_MEDIUM = np.array([AIR, GLASS], np.uint32)  # indexed by "inside the cube"
_RINDEX = np.array([N_AIR, N_GLASS], np.float32)
_N_OVER_C = _RINDEX / np.float32(C_LIGHT)
_ABSLEN = np.array([ABSLEN_AIR, ABSLEN_GLASS], np.float32)
_SCATLEN = np.array([SCATLEN_AIR, SCATLEN_GLASS], np.float32)
# coordinate of the face a geometric step ends on, times the sign of the direction
# component along it: 0 container wall, 1 cube exit, 2 cube entry
_FACE = np.array([BOX_HALF, CUBE_HALF, -CUBE_HALF], np.float32)


@dataclass
class Slot:
    """One record slot of the photons that reached it, compact (only those photons).

    B's slots share A's arrays where they agree, so arrays are modified in place only
    where they are known to be B's own (see _apply_faults).
    """

    ids: np.ndarray  # (m,) photon index in the block
    pos: np.ndarray  # (3, m) float32
    t: np.ndarray  # (m,) float32
    pol: np.ndarray  # (3, m) float32
    meta: np.ndarray  # (m,) uint32: bytes m1, m2, boundary, flag nibble

    def take(self, k, ids=None) -> "Slot":
        return Slot(self.ids[k] if ids is None else ids, self.pos.take(k, axis=1), self.t[k],
                    self.pol.take(k, axis=1), self.meta[k])

    @staticmethod
    def concat(pieces) -> "Slot":
        return Slot(*(np.concatenate([getattr(p, f) for p in pieces], axis=-1)
                      for f in ("ids", "pos", "t", "pol", "meta")))


@dataclass
class Tracks:
    """Propagated photons of one block: compact slot records plus per-photon results."""

    slots: list  # maxrec Slots; slot r holds the photons with more than r steps
    # per photon (photon axis last):
    wavelength: np.ndarray  # (n,) float32
    end: np.ndarray  # (4, n) float32 final x, y, z, t
    end_pol: np.ndarray  # (3, n) float32 final polarization
    direction: np.ndarray  # (3, n) float32 final direction
    nstep: np.ndarray  # (n,) int64 filled slots
    seqhis: np.ndarray  # (n,) uint64
    seqmat: np.ndarray  # (n,) uint64
    flags: np.ndarray  # (n,) uint32 OR of step flags
    boundary: np.ndarray  # (n,) uint32 boundary of the last step
    sensor: np.ndarray  # (n,) uint32 wall face 1..6 of a detection, else 0

    _PER_PHOTON = ("wavelength", "end", "end_pol", "direction", "nstep", "seqhis", "seqmat",
                   "flags", "boundary", "sensor")

    @property
    def n(self) -> int:
        return len(self.nstep)

    def take(self, sel) -> "Tracks":
        """The photons ``sel`` (distinct indices), renumbered 0..len(sel)-1 in that order."""
        new_id = np.full(self.n, -1, np.intp)
        new_id[sel] = np.arange(len(sel))
        slots = []
        for s in self.slots:
            k = np.flatnonzero(new_id[s.ids] >= 0)
            slots.append(s.take(k, ids=new_id[s.ids[k]]))
        return Tracks(slots, *(getattr(self, f)[..., sel] for f in self._PER_PHOTON))

    def replaced(self, parts) -> "Tracks":
        """A copy where, for each (rows, other) of ``parts``, photons ``rows`` are other's."""
        if not parts:
            return self
        gone = np.zeros(self.n, bool)
        for rows, _ in parts:
            gone[rows] = True
        slots = []
        for r, s in enumerate(self.slots):
            pieces = [s.take(np.flatnonzero(~gone[s.ids]))]
            for rows, other in parts:
                o = other.slots[r]
                pieces.append(Slot(rows[o.ids], o.pos, o.t, o.pol, o.meta))
            slots.append(Slot.concat(pieces))
        out = Tracks(slots, *(getattr(self, f).copy() for f in self._PER_PHOTON))
        for rows, other in parts:
            for f in self._PER_PHOTON:
                getattr(out, f)[..., rows] = getattr(other, f)
        return out


def _meta(m1, m2, bnd, nib):
    return np.asarray(m1 | (m2 << 8) | (bnd << 16) | (nib << 24), dtype=np.uint32)


def _torch(w):
    """Torch photons from the (n, 4) uint32 words of slot 0: position, direction, pol, wl."""
    n = len(w)
    r = np.float32(TORCH_RADIUS) * np.sqrt(_unit16(w[:, 0] >> 16))
    phi = np.float32(2 * math.pi) * _unit16(w[:, 0] & 0xFFFF)
    pos = np.stack((r * np.cos(phi), r * np.sin(phi), np.full(n, TORCH_Z, np.float32)))
    # w[:, 1] is the misalignment draw, see synthesize()
    cos_t = 1 - _unit16(w[:, 2] >> 16) * np.float32(1 - math.cos(TORCH_CONE))
    sin_t = np.sqrt(1 - cos_t * cos_t)
    phi = np.float32(2 * math.pi) * _unit16(w[:, 3] >> 16)
    d = np.stack((sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t))
    e1 = _perpendicular(d)
    e2 = _cross(d, e1)
    psi = np.float32(2 * math.pi) * _unit16(w[:, 3] & 0xFFFF)
    pol = np.cos(psi) * e1 + np.sin(psi) * e2
    wl = WAVELENGTH + WAVELENGTH_SPREAD * (_unit16(w[:, 2] & 0xFFFF) - np.float32(0.5))
    return pos, d, pol, wl.astype(np.float32)


def _fresnel(u, d, pol, axis, inside):
    """Reflect or transmit at a cube face normal to ``axis``; returns (reflected, dir, pol).

    Reflection probability from the s and p Fresnel coefficients weighted by the
    polarization; total internal reflection always reflects. The outgoing polarization
    is rebuilt from the reflected or transmitted s and p amplitudes.
    """
    k = len(u)
    along = axis * k + np.arange(k)  # flat index of the normal component in (3, k)
    da = d.reshape(-1)[along]
    sign = np.sign(da)
    cos_i = np.abs(da)
    normal = np.zeros_like(d)  # face normal on the incident side
    normal.reshape(-1)[along] = -sign
    n1, n2 = _RINDEX[inside], _RINDEX[1 - inside]
    s = _normalize(_cross(d, normal), fallback=pol)  # at normal incidence any s will do
    e_s = _dot(pol, s)
    e_p = _dot(pol, _cross(s, d))
    eta = n1 / n2
    sin_t2 = eta * eta * (1 - cos_i * cos_i)
    tir = sin_t2 >= 1
    cos_t = np.sqrt(np.maximum(0, 1 - sin_t2))  # 0 under TIR, which makes rs = rp = 1
    a, b = n1 * cos_i, n2 * cos_t
    c, e = n2 * cos_i, n1 * cos_t
    with np.errstate(divide="ignore", invalid="ignore"):
        rs, rp = (a - b) / (a + b), (c - e) / (c + e)
        ts, tp = 2 * a / (a + b), 2 * a / (c + e)
        reflect = ~(u >= rs * rs * e_s * e_s + rp * rp * e_p * e_p) | tir

    # mirror: flip the normal component; Snell: tangential part scales by n1/n2
    new_d = d * _blend(reflect, np.float32(1), eta)
    new_d.reshape(-1)[along] = _blend(reflect, -da, sign * cos_t)
    new_d = _normalize(new_d)
    amp_s = _blend(reflect, rs, ts) * e_s
    amp_p = _blend(reflect, rp, tp) * e_p
    new_pol = _normalize(amp_s * s + amp_p * _cross(s, new_d), fallback=s)
    return reflect, new_d, new_pol


def propagate(words: np.ndarray) -> Tracks:
    """Propagate one photon per row of ``words`` (n, maxrec, WORDS) uint32."""
    n, maxrec = words.shape[:2]
    slot_words = words.view(np.complex128).reshape(n * maxrec)  # one 16-byte item per slot
    pos, d, pol, wl = _torch(words[:, 0])
    ids = np.arange(n)  # alive photons; the state below is compacted to them
    t = np.zeros(n, np.float32)
    first = _meta(AIR, AIR, BND_NONE, NIBBLE["TO"])
    slots = [Slot(ids, pos.copy(), t, pol.copy(), np.full(n, first, np.uint32))]
    tr = Tracks(slots, wl, *(np.empty((c, n), np.float32) for c in (4, 3, 3)),
                np.empty(n, np.int64), np.empty(n, np.uint64), np.empty(n, np.uint64),
                np.empty(n, np.uint32), np.empty(n, np.uint32), np.zeros(n, np.uint32))
    inside = np.zeros(n, np.intp)  # 1 in the glass cube
    seq = np.full(n, NIBBLE["TO"], np.uint64)
    mat = np.full(n, AIR, np.uint64)
    flags = np.full(n, FLAG_BIT["TORCH"], np.uint32)
    bnd = np.zeros(n, np.uint32)

    def finish(r, k):
        """Per-photon results of the compact photons ``k`` that end at slot r."""
        i = ids[k]
        for c in range(3):
            tr.end[c][i], tr.end_pol[c][i], tr.direction[c][i] = pos[c][k], pol[c][k], d[c][k]
        tr.end[3][i] = t[k]
        tr.nstep[i] = r + 1
        tr.seqhis[i], tr.seqmat[i], tr.flags[i], tr.boundary[i] = seq[k], mat[k], flags[k], bnd[k]

    r = 0
    for r in range(1, maxrec):
        m = ids.size
        w = slot_words[ids * maxrec + r].view(np.uint32).reshape(m, WORDS)
        u_abs, u_sc, u_choice = _unit24(w[:, 0]), _unit24(w[:, 1]), _unit24(w[:, 2])
        ins = inside.astype(bool)

        # geometry: exit face of the cube when inside, else entry face or container wall
        inv = np.float32(1) / (d + (d == 0) * np.float32(1e-30))
        signed_half = np.copysign(np.float32(CUBE_HALF), d)
        far = (signed_half - pos) * inv
        near = (-signed_half - pos) * inv
        wall = (signed_half * np.float32(BOX_HALF / CUBE_HALF) - pos) * inv
        t_far, t_near, t_wall = _min3(far), _max3(near), _min3(wall)
        entering = ~ins & (t_near > 0) & (t_near < t_far)
        case = ins + 2 * entering  # 0 wall, 1 cube exit, 2 cube entry (index of _FACE)
        t_geom = _blend(ins, t_far, _blend(entering, t_near, t_wall))
        axis = (_which(wall, t_wall) * (case == 0) + _which(far, t_far) * ins
                + _which(near, t_near) * entering)

        # bulk: exponential distances to absorption and scattering in the current medium
        d_abs = np.log(u_abs) * -_ABSLEN[inside]
        d_sc = np.log(u_sc) * -_SCATLEN[inside]
        step = np.minimum(t_geom, np.minimum(d_abs, d_sc))
        absorbed = d_abs == step
        scattered = (d_sc == step) & ~absorbed
        geometric = ~(absorbed | scattered)

        pos = pos + step * d
        t = t + step * _N_OVER_C[inside]
        # put geometric hits exactly on their face, so the next slab test starts clean
        g = np.flatnonzero(geometric)
        g_flat = axis[g] * m + g
        pos.reshape(-1)[g_flat] = np.sign(d.reshape(-1)[g_flat]) * _FACE[case[g]]

        m1 = _MEDIUM[inside]
        m2 = m1.copy()
        nib = np.full(m, NIBBLE["AB"], np.uint32)
        bnd = np.zeros(m, np.uint32)

        k = np.flatnonzero(scattered)
        if k.size:
            cos_s = 2 * u_choice[k] - 1
            phi = np.float32(2 * math.pi) * _unit24(w[k, 3])
            sin_s = np.sqrt(np.maximum(0, 1 - cos_s * cos_s))
            nd = np.stack((sin_s * np.cos(phi), sin_s * np.sin(phi), cos_s))
            # Rayleigh-like: the new polarization is the old one projected off the new direction
            old = pol.take(k, axis=1)
            npol = _normalize(old - _dot(old, nd) * nd, fallback=_perpendicular(nd))
            for c in range(3):
                d[c][k], pol[c][k] = nd[c], npol[c]
            nib[k] = NIBBLE["SC"]

        k = g[case[g] != 0]  # at the cube
        if k.size:
            ins_k = inside[k]
            reflect, nd, npol = _fresnel(u_choice[k], d.take(k, axis=1), pol.take(k, axis=1),
                                         axis[k], ins_k)
            for c in range(3):
                d[c][k], pol[c][k] = nd[c], npol[c]
            nib[k] = NIBBLE["BT"] - reflect * (NIBBLE["BT"] - NIBBLE["BR"])
            m2[k] = _MEDIUM[1 - ins_k]
            bnd[k] = BND_CUBE
            inside[k] = ins_k ^ ~reflect

        k = g[case[g] == 0]  # at the container wall
        if k.size:
            detect = u_choice[k] < DETECT_EFFICIENCY
            nib[k] = NIBBLE["SA"] - detect * (NIBBLE["SA"] - NIBBLE["SD"])
            m2[k] = ROCK
            bnd[k] = BND_WALL
            ak = axis[k]
            face = 1 + 2 * ak + (d.reshape(-1)[ak * m + k] > 0)  # -x,+x,-y,+y,-z,+z -> 1..6
            tr.sensor[ids[k]] = face * detect

        slots.append(Slot(ids, pos, t, pol, _meta(m1, m2, bnd, nib)))
        if r < 16:  # the 64-bit codes hold 16 steps; longer tracks (SEvt) keep theirs in the slots
            shift = np.uint64(4 * r)
            seq = seq | (nib.astype(np.uint64) << shift)
            mat = mat | (m1.astype(np.uint64) << shift)
        flags = flags | (np.uint32(1) << (nib - 1))

        alive = scattered | (geometric & (case != 0))
        finish(r, np.flatnonzero(~alive))
        live = np.flatnonzero(alive)
        ids, t, inside, bnd = ids[live], t[live], inside[live], bnd[live]
        seq, mat, flags = seq[live], mat[live], flags[live]
        pos, d, pol = pos.take(live, axis=1), d.take(live, axis=1), pol.take(live, axis=1)
        if ids.size == 0:
            break
    finish(r, np.arange(ids.size))  # truncated after maxrec - 1 steps
    empty = Slot(ids[:0], pos[:, :0], t[:0], pol[:, :0], np.zeros(0, np.uint32))
    slots += [empty] * (maxrec - len(slots))
    return tr


