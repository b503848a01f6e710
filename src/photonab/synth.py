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
times, and the deliberate faults asked for (:func:`parse_fault`).

Random numbers are drawn per photon from counter-positioned streams, so the output
depends on (seed, arguments) but not on ``chunk``.
"""
from __future__ import annotations

import math
from collections import Counter
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
# bulk lengths: a few % of the photons crossing the cube absorb or scatter in it
ABSLEN_GLASS, SCATLEN_GLASS = 10_000.0, 15_000.0
ABSLEN_AIR, SCATLEN_AIR = 1_000_000.0, 1_000_000.0
DETECT_EFFICIENCY = 0.12  # chance that a wall hit is SURFACE_DETECT instead of SURFACE_ABSORB

TORCH_Z = -450.0  # torch disc plane, facing +z towards the cube
TORCH_RADIUS = 180.0
TORCH_CONE = math.radians(25.0)  # half-angle of the emission cone
WAVELENGTH, WAVELENGTH_SPREAD = 430.0, 20.0  # uniform in 420..440 nm

# Material indices (seqmat nibbles, record byte 4/5) and boundary indices (byte 6, ox q3.x).
AIR, GLASS, ROCK = 1, 2, 3
MATERIALS = {AIR: "Air", GLASS: "Glass", ROCK: "Rock"}
BND_NONE, BND_CUBE, BND_WALL = 0, 1, 2

# Compression domains written to fdom.npy (section 2).
EXTENT = 748.0  # covers the container (|x|,|y|,|z| <= 700)
TMAX = 20.0  # ns; photons trapped in the cube long enough overflow to -32768
WL_DOMAIN = (60.0, 820.0, 20.0, 760.0)

NOISE_BINS = 0.1  # B's float noise on record positions/times, in compression bins
MAX_REDRAWS = 16  # attempts to give a misaligned photon a history different from A's
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
        return f"{self.label}:{self.kind}={self.shift:g}"


FAULT_KINDS = {"pos": "mm", "time": "ns", "pol": "polarization units"}

#: Faults of the demo run. With the cuts of section 5 a stored deviation d gives:
#: rpost/rtime d=1 INFO, d=2 ERROR, d>=3 FATAL (WARNING-only is impossible there, the
#: warning and error cuts 1.1 and 1.6 bins fall between the same two integers);
#: rpol d=1 WARNING, d>=2 FATAL.
DEFAULT_FAULTS: tuple[str, ...] = (
    "TO BT BR BT SA:pos=0.06",  # 2.6 position bins -> d 2..3 -> rpost FATAL
    "TO BT AB:pos=0.032",  # 1.4 position bins -> d 1..2 -> rpost ERROR
    "TO BR SA:time=0.00085",  # 1.4 time bins -> d 1..2 -> rtime ERROR
    "TO BT BT SD:pol=0.005",  # 0.64 polarization bins -> d 0..1 -> rpol WARNING
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
    code = seqhis.code(label)  # raises InputError naming an unknown step
    if code == 0:
        raise InputError(f"fault {spec!r}: empty history label")
    return Fault(seqhis.label(code), code, kind, shift)


# ---------------------------------------------------------------- random numbers


def _stream(seed: int, stream: int, start_word: int) -> np.random.Generator:
    """PCG64 stream ``stream`` of ``seed`` positioned ``start_word`` uint64 draws in."""
    bitgen = np.random.PCG64(np.random.SeedSequence([seed, stream]))
    bitgen.advance(start_word)
    return np.random.Generator(bitgen)


def _raw_words(seed: int, stream: int, start: int, n: int, words64: int) -> np.ndarray:
    """(n, words64) uint64 draws for photons start..start+n, whatever the chunking."""
    gen = _stream(seed, stream, start * words64)
    return gen.integers(0, 2**64 - 1, size=(n, words64), dtype=np.uint64, endpoint=True)


def _physics_words(seed: int, start: int, n: int, maxrec: int) -> np.ndarray:
    """(n, maxrec, WORDS) uint32: slot 0 drives the torch, slot r step r."""
    raw = _raw_words(seed, 0, start, n, maxrec * WORDS // 2)
    return raw.view(np.uint32).reshape(n, maxrec, WORDS)


def _noise_bytes(seed: int, start: int, n: int, maxrec: int) -> np.ndarray:
    """(n, maxrec, 4) uint8 for B's noise on x, y, z, t of each slot."""
    raw = _raw_words(seed, 1, start, n, (maxrec + 1) // 2)
    return raw.view(np.uint8).reshape(n, -1, 4)[:, :maxrec]


def _unit24(w: np.ndarray) -> np.ndarray:
    """uint32 -> float32 uniform in (0, 1), never 0 (it goes into log)."""
    return (w >> 8).astype(np.float32) * np.float32(2.0**-24) + np.float32(2.0**-25)


def _unit16(w: np.ndarray) -> np.ndarray:
    """uint16-range values -> float32 uniform in (0, 1)."""
    return (w.astype(np.float32) + np.float32(0.5)) * np.float32(1.0 / 65536)


def _remix(words: np.ndarray, attempt: int) -> np.ndarray:
    """Fresh-looking words from old ones: key by attempt, then a 32-bit avalanche mixer."""
    x = words ^ np.uint32((0x9E3779B9 * attempt) & 0xFFFFFFFF)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


# ---------------------------------------------------------------- vector helpers
# Vectors are (3, m) float32: one contiguous row per component keeps numpy fast.


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return np.stack((a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]))


def _normalize(v, fallback=None):
    norm = np.sqrt(_dot(v, v))
    if fallback is not None:
        bad = norm < 1e-6
        if bad.any():
            v = np.where(bad, fallback, v)
            norm = np.where(bad, np.sqrt(_dot(fallback, fallback)), norm)
    return v / norm


def _perpendicular(d):
    """A unit vector perpendicular to each unit vector of ``d``: d x x-axis, or d x y-axis."""
    zero = np.zeros_like(d[0])
    big_x = np.abs(d[0]) > 0.9
    v = np.stack((np.where(big_x, -d[2], zero), np.where(big_x, zero, d[2]),
                  np.where(big_x, d[0], -d[1])))
    return _normalize(v)


def _min3(a):
    return np.minimum(np.minimum(a[0], a[1]), a[2])


def _max3(a):
    return np.maximum(np.maximum(a[0], a[1]), a[2])


def _which(a, value):
    """Index of the row of ``a`` (3, m) that holds ``value`` (first one)."""
    return np.where(a[0] == value, 0, np.where(a[1] == value, 1, 2))


# ---------------------------------------------------------------- propagation


@dataclass
class Tracks:
    """Propagated photons of one chunk, records still as floats (uncompressed)."""

    post: np.ndarray  # (n, maxrec, 4) float32 x, y, z, t per slot
    pol: np.ndarray  # (n, maxrec, 3) float32
    meta: np.ndarray  # (n, maxrec) uint32: bytes m1, m2, boundary, flag nibble; 0 = no step
    wavelength: np.ndarray  # (n,) float32
    direction: np.ndarray  # (n, 3) float32 final direction
    # summaries of meta, filled by summarize()
    nstep: np.ndarray = None  # (n,) filled slots
    seqhis: np.ndarray = None  # (n,) uint64
    seqmat: np.ndarray = None  # (n,) uint64
    flags: np.ndarray = None  # (n,) uint32 OR of step flags
    boundary: np.ndarray = None  # (n,) uint32 boundary of the last step
    sensor: np.ndarray = None  # (n,) uint32 wall face 1..6 of a detection, else 0

    def summarize(self) -> "Tracks":
        n, maxrec = self.meta.shape
        self.nstep = np.zeros(n, np.int64)
        self.seqhis = np.zeros(n, np.uint64)
        self.seqmat = np.zeros(n, np.uint64)
        self.flags = np.zeros(n, np.uint32)
        for r in range(maxrec):
            meta = self.meta[:, r]
            nib = meta >> 24
            self.nstep += nib != 0
            self.seqhis |= nib.astype(np.uint64) << np.uint64(4 * r)
            self.seqmat |= (meta & 0xFF).astype(np.uint64) << np.uint64(4 * r)
            self.flags |= np.where(nib != 0, np.uint32(1) << (nib - 1), 0).astype(np.uint32)
        rows, last = np.arange(n), self.nstep - 1
        self.boundary = (self.meta[rows, last] >> 16) & 0xFF
        # a detecting wall face is where the photon ended: -x,+x,-y,+y,-z,+z -> 1..6
        end = self.post[rows, last, :3]
        axis = np.abs(end).argmax(axis=1)
        face = 1 + 2 * axis + (end[rows, axis] > 0)
        self.sensor = np.where((self.meta[rows, last] >> 24) == NIBBLE["SD"], face, 0).astype(np.uint32)
        return self

    def take(self, rows) -> "Tracks":
        return Tracks(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))

    def put(self, rows, other: "Tracks") -> None:
        for f in self.__dataclass_fields__:
            getattr(self, f)[rows] = getattr(other, f)

    def copy(self) -> "Tracks":
        return Tracks(*(getattr(self, f).copy() for f in self.__dataclass_fields__))


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
    """Reflect or transmit at a cube face (normal along ``axis``); returns (reflected, dir, pol)."""
    rows = np.arange(len(u))
    da = d[axis, rows]
    sign = np.sign(da)
    cos_i = np.abs(da)
    normal = np.zeros_like(d)  # face normal on the incident side
    normal[axis, rows] = -sign
    n1 = np.where(inside, np.float32(N_GLASS), np.float32(N_AIR))
    n2 = np.where(inside, np.float32(N_AIR), np.float32(N_GLASS))
    s = _normalize(_cross(d, normal), fallback=pol)  # at normal incidence any s will do
    e_s = _dot(pol, s)
    e_p = _dot(pol, _cross(s, d))
    eta = n1 / n2
    sin_t2 = eta * eta * (1 - cos_i * cos_i)
    tir = sin_t2 >= 1
    cos_t = np.sqrt(np.maximum(0, 1 - sin_t2))
    a, b = n1 * cos_i, n2 * cos_t  # s wave
    c, e = n2 * cos_i, n1 * cos_t  # p wave
    with np.errstate(divide="ignore", invalid="ignore"):
        rs, rp = (a - b) / (a + b), (c - e) / (c + e)
        ts, tp = 2 * a / (a + b), 2 * a / (c + e)
    rs = np.where(tir, np.float32(1), rs)
    rp = np.where(tir, np.float32(1), rp)
    reflect = u < np.where(tir, np.float32(1), rs * rs * e_s * e_s + rp * rp * e_p * e_p)

    mirrored = d.copy()
    mirrored[axis, rows] = -da
    refracted = eta * d  # Snell: the tangential part scales by n1/n2
    refracted[axis, rows] = sign * cos_t
    new_d = np.where(reflect, mirrored, _normalize(refracted))
    amp_s = np.where(reflect, rs, ts) * e_s
    amp_p = np.where(reflect, rp, tp) * e_p
    new_pol = _normalize(amp_s * s + amp_p * _cross(s, new_d), fallback=s)
    return reflect, new_d, new_pol


def propagate(words: np.ndarray) -> Tracks:
    """Propagate one photon per row of ``words`` (n, maxrec, WORDS) uint32."""
    n, maxrec = words.shape[:2]
    post = np.zeros((n, maxrec, 4), np.float32)
    rpol = np.zeros((n, maxrec, 3), np.float32)
    meta = np.zeros((n, maxrec), np.uint32)
    direction = np.empty((n, 3), np.float32)
    pos, d, pol, wl = _torch(words[:, 0])
    post[:, 0, :3] = pos.T  # torch time is 0
    rpol[:, 0] = pol.T
    meta[:, 0] = _meta(AIR, AIR, BND_NONE, NIBBLE["TO"])

    ids = np.arange(n)  # alive photons; their state below is compacted to them
    t = np.zeros(n, np.float32)
    inside = np.zeros(n, bool)
    for r in range(1, maxrec):
        if ids.size == 0:
            break
        w = words[ids, r]
        u_abs, u_sc, u_choice = _unit24(w[:, 0]), _unit24(w[:, 1]), _unit24(w[:, 2])

        # geometry: slab test against the cube (exit face when inside), else the container
        with np.errstate(divide="ignore"):
            inv = np.float32(1) / np.where(d == 0, np.float32(1e-30), d)
        t1 = (-CUBE_HALF - pos) * inv
        t2 = (CUBE_HALF - pos) * inv
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
        t_near, t_far = _max3(lo), _min3(hi)
        hit_cube = inside | ((t_near > 0) & (t_near < t_far))
        tw = (np.copysign(np.float32(BOX_HALF), d) - pos) * inv
        t_wall = _min3(tw)
        t_geom = np.where(inside, t_far, np.where(hit_cube, t_near, t_wall))
        axis = np.where(inside, _which(hi, t_far), np.where(hit_cube, _which(lo, t_near),
                                                             _which(tw, t_wall)))

        # bulk: exponential distances to absorption and scattering in the current medium
        absl = np.where(inside, np.float32(ABSLEN_GLASS), np.float32(ABSLEN_AIR))
        scal = np.where(inside, np.float32(SCATLEN_GLASS), np.float32(SCATLEN_AIR))
        d_abs, d_sc = -absl * np.log(u_abs), -scal * np.log(u_sc)
        step = np.minimum(t_geom, np.minimum(d_abs, d_sc))
        absorbed = d_abs == step
        scattered = ~absorbed & (d_sc == step)
        geometric = ~(absorbed | scattered)
        at_cube = geometric & hit_cube
        at_wall = geometric & ~hit_cube

        pos += step * d
        t += step * np.where(inside, np.float32(N_GLASS / C_LIGHT), np.float32(N_AIR / C_LIGHT))
        # put geometric hits exactly on their face, so the next slab test starts clean
        g = np.flatnonzero(geometric)
        outward = np.sign(d[axis[g], g])
        face = np.where(at_wall[g], np.float32(BOX_HALF),
                        np.where(inside[g], np.float32(CUBE_HALF), -np.float32(CUBE_HALF)))
        pos[axis[g], g] = outward * face

        m1 = np.where(inside, np.uint32(GLASS), np.uint32(AIR))
        m2 = m1.copy()
        nib = np.full(ids.size, NIBBLE["AB"], np.uint32)
        bnd = np.zeros(ids.size, np.uint32)

        if scattered.any():
            k = np.flatnonzero(scattered)
            cos_s = 2 * u_choice[k] - 1
            phi = np.float32(2 * math.pi) * _unit24(w[k, 3])
            sin_s = np.sqrt(np.maximum(0, 1 - cos_s * cos_s))
            nd = np.stack((sin_s * np.cos(phi), sin_s * np.sin(phi), cos_s))
            # Rayleigh-like: the new polarization is the old one projected off the new direction
            npol = pol[:, k] - _dot(pol[:, k], nd) * nd
            d[:, k], pol[:, k] = nd, _normalize(npol, fallback=_perpendicular(nd))
            nib[k] = NIBBLE["SC"]

        if at_cube.any():
            k = np.flatnonzero(at_cube)
            reflect, d[:, k], pol[:, k] = _fresnel(u_choice[k], d[:, k], pol[:, k], axis[k], inside[k])
            nib[k] = np.where(reflect, NIBBLE["BR"], NIBBLE["BT"])
            m2[k] = np.where(inside[k], AIR, GLASS)
            bnd[k] = BND_CUBE
            inside[k[~reflect]] ^= True

        if at_wall.any():
            k = np.flatnonzero(at_wall)
            nib[k] = np.where(u_choice[k] < DETECT_EFFICIENCY, NIBBLE["SD"], NIBBLE["SA"])
            m2[k] = ROCK
            bnd[k] = BND_WALL

        post[ids, r, :3] = pos.T
        post[ids, r, 3] = t
        rpol[ids, r] = pol.T
        meta[ids, r] = _meta(m1, m2, bnd, nib)

        alive = scattered | at_cube
        dead = ~alive
        direction[ids[dead]] = d[:, dead].T
        ids, pos, d, pol, t, inside = ids[alive], pos[:, alive], d[:, alive], pol[:, alive], t[alive], inside[alive]
    direction[ids] = d.T  # truncated after maxrec - 1 steps
    return Tracks(post, rpol, meta, wl, direction).summarize()


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


def compress(tr: Tracks, dom: _Domains) -> np.ndarray:
    """(n, maxrec, 2, 4) int16 records; slots beyond each photon's steps stay zero."""
    n, maxrec = tr.meta.shape
    fdom = dom.fdom.astype(np.float64)
    center = np.append(fdom[0, 0, :3], fdom[1, 0, 0])
    extent = np.array([fdom[0, 0, 3]] * 3 + [fdom[1, 0, 1]])
    rx = np.empty((n, maxrec, 2, 4), np.int16)
    # short = round_half_even(32767 (v - c) / E) in float64; outside the domain -> -32768
    s = tr.post.astype(np.float64)
    if center.any():
        s -= center
    s *= 32767.0
    s /= extent
    np.rint(s, out=s)
    np.putmask(s, ~(np.abs(s) <= 32767), -32768)  # NaN counts as outside
    rx[:, :, 0] = s
    q = rx.view(np.uint8).reshape(n, maxrec, 2, 8)[:, :, 1]
    p = tr.pol.astype(np.float64)
    p += 1.0
    p *= 127.0
    np.rint(p, out=p)
    q[:, :, :3] = np.clip(p, 0, 254)
    q[:, :, 3] = np.rint(255.0 * (tr.wavelength.astype(np.float64) - fdom[2, 0, 0]) / fdom[2, 0, 3])[:, None]
    q[:, :, 4:] = tr.meta.view(np.uint8).reshape(n, maxrec, 4)
    rx *= (tr.meta != 0)[:, :, None, None]  # a filled slot always has its flag nibble
    return rx


def final_photons(tr: Tracks, first_id: int) -> np.ndarray:
    """ox (n, 4, 4): final position/time, direction/weight, polarization/wavelength, flags."""
    n = len(tr.nstep)
    rows, last = np.arange(n), tr.nstep - 1
    ox = np.empty((n, 4, 4), np.float32)
    ox[:, 0] = tr.post[rows, last]
    ox[:, 1, :3], ox[:, 1, 3] = tr.direction, 1.0
    ox[:, 2, :3], ox[:, 2, 3] = tr.pol[rows, last], tr.wavelength
    q3 = ox.view(np.uint32)[:, 3]
    q3[:, 0], q3[:, 1], q3[:, 2], q3[:, 3] = tr.boundary, tr.sensor, first_id + rows, tr.flags
    return ox


# ---------------------------------------------------------------- event B


def _event_b(words, a: Tracks, mis: np.ndarray) -> Tracks:
    """B's tracks: A's, except misaligned photons re-propagated with re-drawn numbers."""
    b = a.copy()
    pending = np.flatnonzero(mis)
    for attempt in range(1, MAX_REDRAWS + 1):
        if pending.size == 0:
            break
        w = words[pending].copy()
        w[:, 1:] = _remix(w[:, 1:], attempt)  # same torch photon, new propagation numbers
        redo = propagate(w)
        done = (redo.seqhis != a.seqhis[pending]) | (attempt == MAX_REDRAWS)
        b.put(pending[done], redo.take(done))
        pending = pending[~done]
    return b


def _add_noise(b: Tracks, noise: np.ndarray, dom: _Domains) -> None:
    """Float noise within +-NOISE_BINS of a bin on B's record x, y, z, t."""
    bins = np.array([dom.pos_bin] * 3 + [dom.time_bin], np.float32)
    scale = np.float32(NOISE_BINS / 127.5) * bins
    b.post += (noise.astype(np.float32) - np.float32(127.5)) * scale


def _apply_faults(b: Tracks, a: Tracks, faults) -> None:
    for f in faults:
        rows = np.flatnonzero((a.seqhis == f.code) & (b.seqhis == f.code))
        if rows.size == 0:
            continue
        if f.kind == "pos":
            b.post[rows, :, :3] += np.float32(f.shift)
        elif f.kind == "time":
            b.post[rows, :, 3] += np.float32(f.shift)
        else:
            b.pol[rows] += np.float32(f.shift)


# ---------------------------------------------------------------- writing


def _check_int(name, value, lo, hi=None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise InputError(f"{name} = {value} must be {rng}")
    return value


class _Side:
    """The per-photon .npy files of one event folder, written through memory maps."""

    def __init__(self, path: Path, n: int, maxrec: int, dom: _Domains):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "fdom.npy", dom.fdom)
        np.save(path / "idom.npy", dom.idom)
        shapes = {"ox": (n, 4, 4), "rx": (n, maxrec, 2, 4), "ph": (n, 1, 2),
                  "ps": (n, 1, 4), "rs": (n, maxrec, 1, 4)}
        self.arrays = {name: np.lib.format.open_memmap(path / f"{name}.npy", mode="w+",
                                                       dtype=LAYOUT[name][0], shape=shape)
                       for name, shape in shapes.items()}
        self.his_counts, self.mat_counts = Counter(), Counter()

    def write(self, lo: int, hi: int, tr: Tracks, ox: np.ndarray, rx: np.ndarray) -> None:
        self.arrays["ox"][lo:hi] = ox
        self.arrays["rx"][lo:hi] = rx
        ph = self.arrays["ph"][lo:hi, 0]
        ph[:, 0], ph[:, 1] = tr.seqhis, tr.seqmat
        for counts, codes in ((self.his_counts, tr.seqhis), (self.mat_counts, tr.seqmat)):
            uniq, num = np.unique(codes, return_counts=True)
            counts.update(dict(zip(uniq.tolist(), num.tolist())))

    def index(self, chunk: int, bar) -> None:
        """ps/rs: rank of each photon's history and material sequence among the 32 most frequent."""
        lookups = [_rank_lookup(c) for c in (self.his_counts, self.mat_counts)]
        ph, ps, rs = self.arrays["ph"], self.arrays["ps"], self.arrays["rs"]
        for lo in range(0, len(ph), chunk):
            hi = min(lo + chunk, len(ph))
            sel = np.zeros((hi - lo, 4), np.uint8)
            for col, (codes, ranks) in enumerate(lookups):
                sel[:, col] = _ranks(np.asarray(ph[lo:hi, 0, col]), codes, ranks)
            ps[lo:hi, 0] = sel
            rs[lo:hi, :, 0] = sel[:, None, :]
            bar.update(hi - lo)

    def close(self) -> None:
        for arr in self.arrays.values():
            arr.flush()
        self.arrays.clear()


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


def synthesize(out, photons: int, seed: int = 0, *, misaligned: float = 0.005,
               faults=(), nan: int = 0, maxrec: int = 10, chunk: int = 1 << 18,
               progress: bool = True) -> tuple[Path, Path]:
    """Write event A to out/evt/box/torch/1 and B to out/evt/box/torch/-1; return (a_dir, b_dir).

    ``misaligned`` is the fraction of photons whose random numbers B re-draws (until its
    history differs from A's); ``faults`` are specs for :func:`parse_fault` (or Faults);
    ``nan`` photons, chosen by the seed, get NaN as B's final time ox[:, 0, 3].
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
    a_dir, b_dir = root / "1", root / "-1"
    dom = _Domains.make(maxrec)
    try:
        sides = (_Side(a_dir, photons, maxrec, dom), _Side(b_dir, photons, maxrec, dom))
    except OSError as exc:
        raise InputError(f"{out}: cannot write the event folders ({exc})") from None
    nan_ids = np.sort(np.random.default_rng([seed, 2]).choice(photons, size=nan, replace=False))

    with tqdm(total=photons, unit="photon", unit_scale=True, desc="synthesize A/B",
              disable=not progress) as bar:
        for lo in range(0, photons, chunk):
            hi = min(lo + chunk, photons)
            words = _physics_words(seed, lo, hi - lo, maxrec)
            a = propagate(words)
            mis = _unit24(words[:, 0, 1]) < np.float32(misaligned)
            b = _event_b(words, a, mis)
            _add_noise(b, _noise_bytes(seed, lo, hi - lo, maxrec), dom)
            ox_b = final_photons(b, lo)  # ox carries the noise but not the record faults
            local = nan_ids[(nan_ids >= lo) & (nan_ids < hi)] - lo
            ox_b[local, 0, 3] = np.nan
            _apply_faults(b, a, faults)
            sides[0].write(lo, hi, a, final_photons(a, lo), compress(a, dom))
            sides[1].write(lo, hi, b, ox_b, compress(b, dom))
            bar.update(hi - lo)
    with tqdm(total=2 * photons, unit="photon", unit_scale=True, desc="index histories",
              disable=not progress) as bar:
        for side in sides:
            side.index(chunk, bar)
            side.close()
    return a_dir, b_dir
