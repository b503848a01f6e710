"""Synthetic A/B event pairs in the 2019 Opticks event layout.

Real event folders come from a GPU + Geant4 run; this module writes folders of the
same layout (data contract, sections 1-3) from a small vectorised optical toy, so the
comparison can be run, tested and profiled anywhere.

The scene: a torch (flag TORCH) shoots a cone of photons from a disc in air at a glass
cube; the cube sits inside an absorbing box whose walls absorb (SA) or detect (SD).
At the cube faces photons reflect (BR) or transmit (BT) with the Fresnel probability
of their polarization and incidence angle (total internal reflection included) and
refract by Snell's law; in the bulk they can be absorbed (AB) or Rayleigh-like
scattered (SC). Record slot 0 is the torch start, slots 1..maxrec-1 the steps.

Event A and event B are "the same photons simulated independently": both consume the
same random numbers, except for a fraction ``misaligned`` of photons for which B
re-draws its propagation numbers (until the history differs from A). B also carries
float noise of at most a tenth of a compression bin on its recorded positions and
times (so a few % of stored values differ by one count, never by two), and the
deliberate faults asked for (:func:`parse_fault`). Its polarizations get no noise:
one polarization count already exceeds the rpol warning cut of section 5.

Random numbers are drawn per photon from counter-positioned streams, so the output
depends on (seed, arguments) but not on ``chunk``.
"""
from __future__ import annotations

import math
import multiprocessing
import os
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import seqhis
from .errors import InputError
from .events import LAYOUT
from .seqhis import FLAG_BIT, NIBBLE

# ---------------------------------------------------------------- scene (mm, ns, nm)

C_LIGHT = 299.792458  # mm/ns
CUBE_HALF = 200.0  # glass cube centred on the origin
BOX_HALF = 700.0  # absorbing container walls
N_AIR, N_GLASS = 1.0, 1.5
# bulk lengths (mm): a few % of the photons crossing the cube absorb or scatter in it,
# a fraction of a % scatter in the air
ABSLEN_GLASS, SCATLEN_GLASS = 10_000.0, 10_000.0
ABSLEN_AIR, SCATLEN_AIR = 1_000_000.0, 200_000.0
DETECT_EFFICIENCY = 0.10  # chance that a wall hit is SURFACE_DETECT instead of SURFACE_ABSORB

TORCH_Z = -450.0  # torch disc plane, facing +z towards the cube
TORCH_RADIUS = 150.0
TORCH_CONE = math.radians(20.0)  # half-angle of the emission cone
WAVELENGTH, WAVELENGTH_SPREAD = 430.0, 20.0  # uniform in 420..440 nm

# Material indices (seqmat nibbles, record byte 4/5) and boundary indices (byte 6, ox q3.x).
AIR, GLASS, ROCK = 1, 2, 3
MATERIALS = {AIR: "Air", GLASS: "Glass", ROCK: "Rock"}
BND_NONE, BND_CUBE, BND_WALL = 0, 1, 2

# Compression domains written to fdom.npy (section 2).
EXTENT = 748.0  # covers the container (|x|,|y|,|z| <= 700)
TMAX = 12.0  # ns: ~0.02% of photons (scattered, or trapped in the cube by TIR) overflow to -32768
WL_DOMAIN = (60.0, 820.0, 20.0, 760.0)

NOISE_BINS = 0.1  # B's float noise on record positions/times, in compression bins
# B re-draws a misaligned photon until its history differs from A's, trying REDRAW_BATCH
# variants per propagation call and giving up (keeping the last) after REDRAW_ROUNDS calls
REDRAW_BATCH, REDRAW_ROUNDS = 16, 4
WORDS = 4  # uint32 random words per record slot

# ---------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """A deliberate B-side deviation for photons whose history is ``label`` in A and B.

    kind ``pos`` shifts recorded x,y,z (mm), ``time`` recorded t (ns), ``pol`` recorded
    polarization components, all by ``shift`` before compression, in every record slot.
    """

    label: str
    code: int
    kind: str
    shift: float

    def __str__(self) -> str:
        return f"{self.label}:{self.kind}={self.shift!r}"  # repr: parses back exactly


FAULT_KINDS = {"pos": "mm", "time": "ns", "pol": "polarization units"}

#: Faults of the demo run, with the level each gives at 1M photons. A photon's stored
#: deviation d (counts) against the cuts of section 5: rpost/rtime d=1 INFO, d=2 ERROR,
#: d>=3 FATAL (no WARNING-only d exists there: the 1.1 and 1.6 bin cuts fall between the
#: same two integers); rpol d=1 WARNING, d>=2 FATAL. Healthy photons have d <= 1 in
#: rpost/rtime (B's float noise) and d = 0 in rpol, so they stay INFO.
DEFAULT_FAULTS: tuple[str, ...] = (
    "TO BT BR BT SA:pos=0.06",  # 2.6 position bins: d 2..3 -> rpost FATAL
    "TO BT AB:pos=0.032",  # 1.4 position bins: d 1..2 -> rpost ERROR
    "TO BT SC BT SA:time=0.001",  # 2.7 time bins: d 2..3 -> rtime FATAL
    "TO BR SA:time=0.0005",  # 1.4 time bins: d 1..2 -> rtime ERROR
    "TO BT BT SD:pol=0.005",  # 0.64 polarization bins: d 0..1 -> rpol WARNING
)


def parse_fault(spec) -> Fault:
    """``'TO BT BR BT SA:pos=0.05'`` -> Fault; ``LABEL:time=NS``, ``LABEL:pol=DP`` likewise."""
    if isinstance(spec, Fault):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"fault {spec!r}: expected a string like 'TO BT BT SA:pos=0.05'")
    label, sep, change = spec.rpartition(":")
    if not sep or not label.strip():
        raise InputError(f"fault {spec!r}: expected LABEL:KIND=VALUE, e.g. 'TO BT BT SA:pos=0.05'")
    kind, sep, value = change.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in FAULT_KINDS:
        raise InputError(f"fault {spec!r}: expected KIND=VALUE after the label with KIND one of "
                         f"{', '.join(FAULT_KINDS)} (e.g. pos=0.05)")
    try:
        shift = float(value)
    except ValueError:
        raise InputError(f"fault {spec!r}: {value.strip()!r} is not a number") from None
    if not math.isfinite(shift):
        raise InputError(f"fault {spec!r}: shift must be finite")
    try:
        code = seqhis.code(label)
    except InputError as exc:  # unknown step or too long: say which fault
        raise InputError(f"fault {spec!r}: {exc}") from None
    return Fault(seqhis.label(code), code, kind, shift)


# ---------------------------------------------------------------- random numbers


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


# ---------------------------------------------------------------- compression (section 2)


@dataclass(frozen=True)
class _Domains:
    fdom: np.ndarray
    idom: np.ndarray

    @classmethod
    def make(cls, maxrec: int) -> "_Domains":
        fdom = np.zeros((3, 1, 4), np.float32)
        fdom[0, 0] = (0, 0, 0, EXTENT)
        fdom[1, 0] = (0, TMAX, TMAX, 0)
        fdom[2, 0] = WL_DOMAIN
        idom = np.zeros((1, 1, 4), np.int32)
        idom[0, 0, 2], idom[0, 0, 3] = maxrec - 1, maxrec
        return cls(fdom, idom)

    @property
    def pos_bin(self) -> float:
        return float(self.fdom[0, 0, 3]) / 32767

    @property
    def time_bin(self) -> float:
        return float(self.fdom[1, 0, 1]) / 32767


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


def compress(tr: Tracks, dom: _Domains, out: np.ndarray) -> None:
    """Fill ``out`` (n, maxrec, 2, 4) int16, all zero on entry, with the compressed records.

    Each filled slot is two little-endian 8-byte words: (x, y, z, t) shorts, and
    (pol x, y, z, wavelength, m1, m2, boundary, flag) bytes.
    """
    n, maxrec = out.shape[:2]
    f = dom.fdom.astype(np.float64)
    words = out.reshape(n * maxrec * 2, 4).view(np.uint64).reshape(-1)
    wl = np.rint(255.0 * (tr.wavelength.astype(np.float64) - f[2, 0, 0]) / f[2, 0, 3])
    wl = np.clip(wl, 0, 255).astype(np.uint64)
    for r, s in enumerate(tr.slots):
        if s.ids.size == 0:
            continue
        post = (_short(s.pos[0], f[0, 0, 0], f[0, 0, 3])
                | _short(s.pos[1], f[0, 0, 1], f[0, 0, 3]) << np.uint64(16)
                | _short(s.pos[2], f[0, 0, 2], f[0, 0, 3]) << np.uint64(32)
                | _short(s.t, f[1, 0, 0], f[1, 0, 1]) << np.uint64(48))
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


# ---------------------------------------------------------------- event B


def _event_b(words, a: Tracks, mis: np.ndarray) -> Tracks:
    """B's tracks: A's, except misaligned photons re-propagated with re-drawn numbers."""
    pending = np.flatnonzero(mis)
    parts = []
    for round_ in range(REDRAW_ROUNDS):
        if pending.size == 0:
            break
        p = pending.size
        w = np.concatenate([words[pending]] * REDRAW_BATCH)
        attempts = np.arange(round_ * REDRAW_BATCH, (round_ + 1) * REDRAW_BATCH) + 1
        # same torch photon (slot 0), new propagation numbers for every variant
        w[:, 1:] = _remix(w[:, 1:], np.repeat(attempts, p)[:, None, None])
        redo = propagate(w)
        differ = (redo.seqhis.reshape(REDRAW_BATCH, p) != a.seqhis[pending]).T
        done = differ.any(axis=1) | (round_ == REDRAW_ROUNDS - 1)
        pick = np.where(differ.any(axis=1), differ.argmax(axis=1), REDRAW_BATCH - 1)
        k = np.flatnonzero(done)
        parts.append((pending[k], redo.take(pick[k] * p + k)))
        pending = pending[~done]
    return a.replaced(parts)


def _with_noise(b: Tracks, noise: np.ndarray, dom: _Domains) -> Tracks:
    """B with float noise within +-NOISE_BINS of a bin on record x, y, z, t (new arrays)."""
    scale = [np.float32(NOISE_BINS / 127.5 * bin) for bin in [dom.pos_bin] * 3 + [dom.time_bin]]
    per_photon = noise.shape[1]

    def jitter(codes, c):
        byte = ((codes >> np.uint32(8 * c)) & 0xFF).astype(np.float32)
        return (byte - np.float32(127.5)) * scale[c]

    slots = []
    for r, s in enumerate(b.slots):
        codes = noise.reshape(-1)[s.ids * per_photon + r]
        pos = np.stack([s.pos[c] + jitter(codes, c) for c in range(3)])
        slots.append(Slot(s.ids, pos, _keep_side(s.t, s.t + jitter(codes, 3), dom), s.pol, s.meta))
    codes = noise.reshape(-1)[np.arange(b.n) * per_photon + b.nstep - 1]  # the last slot's
    end = np.stack([b.end[c] + jitter(codes, c) for c in range(4)])
    return Tracks(slots, *(end if f == "end" else getattr(b, f) for f in Tracks._PER_PHOTON))


def _keep_side(t_a, t_b, dom: _Domains):
    """``t_b``, except where noise moved a time across the end of the time domain.

    There the stored value would jump to -32768 and a healthy photon look FATAL.
    Positions need no such care: the container lies well inside the position domain.
    """
    t0, tmax = (float(v) for v in dom.fdom[1, 0, :2])
    k = np.flatnonzero(t_a > np.float32(t0 + 0.999 * tmax))  # noise is ~3e-6 tmax
    if k.size:
        outside_a = _short(t_a[k], t0, tmax) == 0x8000
        outside_b = _short(t_b[k], t0, tmax) == 0x8000
        flip = k[outside_a != outside_b]
        t_b[flip] = t_a[flip]
    return t_b


def _apply_faults(b: Tracks, a: Tracks, faults) -> None:
    """Shift B's records of photons whose history is the fault's label in A and B.

    Runs after _with_noise, so B's position arrays are its own; polarization arrays are
    still shared with A and get replaced, not modified.
    """
    for f in faults:
        hit = (a.seqhis == f.code) & (b.seqhis == f.code)
        if not hit.any():
            continue
        for s in b.slots:
            k = np.flatnonzero(hit[s.ids])
            if k.size == 0:
                continue
            if f.kind == "pos":
                s.pos[:, k] += np.float32(f.shift)
            elif f.kind == "time":
                s.t[k] += np.float32(f.shift)
            else:  # keep components in the encodable range -1..1
                s.pol = s.pol.copy()
                s.pol[:, k] = np.clip(s.pol[:, k] + np.float32(f.shift), -1, 1)


# ---------------------------------------------------------------- writing


def _check_int(name, value, lo, hi=None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise InputError(f"{name} = {value} must be {rng}")
    return value


def _create_event(path: Path, n: int, maxrec: int) -> None:
    """Full-size per-photon files that read as zeros until written.

    The domain files go first and come back last (_finish_event), so an interrupted
    run leaves a folder that does not open as an event.
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


def _finish_event(path: Path, dom: _Domains) -> None:
    np.save(path / "fdom.npy", dom.fdom)
    np.save(path / "idom.npy", dom.idom)


@dataclass(frozen=True)
class _Plan:
    """What a (possibly separate) worker process needs to simulate and write a block."""

    a_dir: Path
    b_dir: Path
    seed: int
    maxrec: int
    misaligned: float
    faults: tuple
    block: int  # photons per block at most


class _Output:
    """Both events' per-photon files, memory-mapped for writing, and a record buffer.

    Records are built in the buffer and copied into the file in one go: scattering
    them straight into the map costs a page fault per touched page.
    """

    def __init__(self, plan: _Plan):
        self.maps = [{name: np.load(path / f"{name}.npy", mmap_mode="r+")
                      for name in ("ox", "rx", "ph")} for path in (plan.a_dir, plan.b_dir)]
        self.records = np.empty((plan.block, plan.maxrec, 2, 4), np.int16)

    def write(self, event: int, lo: int, tr: Tracks, dom: _Domains, nan_rows=()) -> list:
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


_PROCESS_OUTPUT: dict = {}  # in a worker process: plan -> its _Output


def _simulate_block(plan: _Plan, lo: int, hi: int, nan_rows, output: _Output = None) -> tuple:
    """Photons lo..hi of A and B: propagate, derive B, write both; returns the counts."""
    if output is None:
        output = _PROCESS_OUTPUT.get(plan) or _PROCESS_OUTPUT.setdefault(plan, _Output(plan))
    dom = _Domains.make(plan.maxrec)
    words = _physics_words(plan.seed, lo, hi - lo, plan.maxrec)
    a = propagate(words)
    mis = _unit24(words[:, 0, 1]) < np.float32(plan.misaligned)
    b = _with_noise(_event_b(words, a, mis), _noise_codes(plan.seed, lo, hi - lo, plan.maxrec), dom)
    _apply_faults(b, a, plan.faults)  # records only: B's final photon (ox) keeps its values
    return output.write(0, lo, a, dom), output.write(1, lo, b, dom, nan_rows)


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


_MAX_BLOCK = 1 << 16  # photons simulated at once: bigger blocks only run out of cache


def _workers(blocks: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    # starting a process costs about as much as a few blocks
    return max(1, min(cpus, 8, blocks // 4))


def synthesize(out, photons: int, seed: int = 0, *, misaligned: float = 0.005,
               faults=(), nan: int = 0, maxrec: int = 10, chunk: int = 1 << 18,
               progress: bool = True) -> tuple[Path, Path]:
    """Write event A to out/evt/box/torch/1 and B to out/evt/box/torch/-1; return (a_dir, b_dir).

    ``misaligned`` is the fraction of photons whose random numbers B re-draws (until its
    history differs from A's); ``faults`` are specs for :func:`parse_fault` (or Faults);
    ``nan`` photons, chosen by the seed, get NaN as B's final time ox[:, 0, 3].
    Photons are simulated in blocks of ``min(chunk, 65536)`` (on all cores for big runs)
    and indexed in chunks of ``chunk``; the output depends only on the other arguments.
    """
    photons = _check_int("photons", photons, 1)
    seed = _check_int("seed", seed, 0)
    maxrec = _check_int("maxrec", maxrec, 1, 16)
    nan = _check_int("nan", nan, 0, photons)
    chunk = _check_int("chunk", chunk, 1)
    try:
        misaligned = float(misaligned)
    except (TypeError, ValueError):
        raise InputError(f"misaligned must be a fraction in [0, 1], got {misaligned!r}") from None
    if not 0.0 <= misaligned <= 1.0:
        raise InputError(f"misaligned = {misaligned} must be a fraction in [0, 1]")
    if isinstance(faults, (str, Fault)):
        faults = (faults,)
    faults = tuple(parse_fault(f) for f in faults)
    for f in faults:
        if seqhis.nstep(f.code) > maxrec:
            raise InputError(f"fault {f}: history has {seqhis.nstep(f.code)} steps but maxrec is "
                             f"{maxrec}, so no photon can have it")

    root = Path(out) / "evt" / "box" / "torch"
    size = min(chunk, _MAX_BLOCK)
    plan = _Plan(root / "1", root / "-1", seed, maxrec, misaligned, faults, size)
    dom = _Domains.make(maxrec)
    try:
        for path in (plan.a_dir, plan.b_dir):
            _create_event(path, photons, maxrec)
    except OSError as exc:
        raise InputError(f"{out}: cannot write the event folders ({exc})") from None
    nan_ids = np.sort(np.random.default_rng([seed, 2]).choice(photons, size=nan, replace=False))

    blocks = [(lo, min(lo + size, photons)) for lo in range(0, photons, size)]
    cuts = np.searchsorted(nan_ids, [lo for lo, _ in blocks] + [photons])
    jobs = [(plan, lo, hi, nan_ids[cuts[i]:cuts[i + 1]] - lo) for i, (lo, hi) in enumerate(blocks)]
    counts = [(Counter(), Counter()), (Counter(), Counter())]  # per event: seqhis, seqmat

    workers = _workers(len(blocks))
    pool = None
    if workers > 1:
        # processes, not threads: numpy's fancy indexing holds the GIL. fork (where there
        # is one) needs no `if __name__ == "__main__"` guard in the caller's script; the
        # workers start here, before the progress bar's thread exists.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context)
        pool.submit(int).result()

    def run(function, jobs, **in_process):
        """Yield (job, function(*job)) in order: on the pool with a bounded number of jobs
        in flight, or here (with the extra keyword arguments) when there is no pool."""
        if pool is None:
            yield from ((job, function(*job, **in_process)) for job in jobs)
            return
        pending = deque()
        for i, job in enumerate(jobs):
            pending.append((job, pool.submit(function, *job)))
            while len(pending) > 2 * workers or (pending and i == len(jobs) - 1):
                job, future = pending.popleft()
                yield job, future.result()

    try:
        with tqdm(total=photons, unit="photon", unit_scale=True, desc="synthesize A/B",
                  disable=not progress) as bar:
            in_process = {} if pool else {"output": _Output(plan)}
            for (_, lo, hi, _), result in run(_simulate_block, jobs, **in_process):
                for event_counts, block_counts in zip(counts, result):
                    for total, (codes, num) in zip(event_counts, block_counts):
                        total.update(dict(zip(codes.tolist(), num.tolist())))
                bar.update(hi - lo)
            del in_process
        # ranks need the final counts, hence a second, cheap pass over ph
        index_jobs = [(path, [_rank_lookup(c) for c in event_counts], lo, min(lo + chunk, photons))
                      for path, event_counts in zip((plan.a_dir, plan.b_dir), counts)
                      for lo in range(0, photons, chunk)]
        with tqdm(total=2 * photons, unit="photon", unit_scale=True, desc="index histories",
                  disable=not progress) as bar:
            for (_, _, lo, hi), _ in run(_index_chunk, index_jobs):
                bar.update(hi - lo)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    for path in (plan.a_dir, plan.b_dir):
        _finish_event(path, dom)
    return plan.a_dir, plan.b_dir
