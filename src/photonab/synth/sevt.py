"""Synthetic SEvt event folders (A000 = the GPU side, B000 = Geant4), as Opticks writes
them since 2022 (docs/sevt.md): photon.npy, record.npy, seq.npy, hit.npy, domain.npy,
genstep.npy, NPFold_meta.txt and NPFold_index.txt.

The photons come from the same optical toy as the 2019 pairs (docs/synth.md), with up
to 32 record points: photons that scatter inside the glass cube at an angle beyond the
critical one stay trapped by total internal reflection and bounce until they are
absorbed or run out of points, which gives histories longer than 16 steps (beyond the
first seqhis word).

- ``aligned=True``: B consumes the same random numbers as A (Opticks' aligned running),
  so photon i is the same photon on both sides, up to a float noise on B's positions
  and times and the few photons (``misaligned``) that B re-draws into another history.
- ``aligned=False``: B draws its own numbers; only the statistics agree (the QCF case).

On both sides ``dropouts`` photons of history ``TO BT BT SD`` get another last flag, so
that a history appears on one side only: A's become ``TO BT BT EX`` (EFFICIENCY_CULL:
A culls detections B keeps), B's ``TO BT BT NA`` (NAN_ABORT: B aborts photons A
detects). The first ``dropouts`` such photons in index order are changed on each side
(B's chosen among the photons A did not change), fewer when there are not enough.

Flags, nibbles and labels follow the flag table of ``era`` (``photonab.flags.ERAS``).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .. import atomic, seqhis
from ..errors import InputError
from ..flags import CURRENT_ERA, ERAS
from .checks import check_finite, check_fraction, check_int
from .migrations import MANIFEST
from .pair import _event_b
from .physics import _raw_words, _unit24, propagate
from .scene import BND_CUBE, CUBE_HALF, TORCH_Z, WORDS

#: eras whose flag table has the dropout flags (SEvt folders exist from 2022 on)
SEVT_ERAS = tuple(era for era, table in ERAS.items() if "EFFICIENCY_CULL" in table.flag_bit)
SLOTS = 32  # sseq::SLOTS: points a two-word seqhis holds
HIT_MASK = "SURFACE_DETECT"  # OPTICKS_HIT_MASK default "SD"
DROPOUT_HISTORY = "TO BT BT SD"
DROPOUT_FLAGS = {"A": "EFFICIENCY_CULL", "B": "NAN_ABORT"}  # the last flag a dropout photon gets
NOISE_MM, NOISE_NS = 1e-3, 1e-5  # B's float noise (aligned): uniform within +-this
BLOCK = 1 << 14  # photons per block: a block of float32 records is BLOCK x maxrec x 64 bytes
#: E, tmax, wavelength centre and extent of domain.npy (the Opticks defaults)
DOMAIN_EXTENT, DOMAIN_TMAX, DOMAIN_WL = 1000.0, 10.0, (440.0, 380.0)
FILES = ("genstep.npy", "photon.npy", "record.npy", "seq.npy", "hit.npy", "domain.npy")

# random streams (per event index k: stream 1000 k + offset)
_PHYSICS_A, _PHYSICS_B, _NOISE_B = 10, 11, 12

# the toy's step names, by the nibble it records them with (photonab.seqhis' table)
_TOY_NAMES = {nib: name for nib, (name, _) in enumerate(seqhis.FLAGS, start=1)}


def run_folder(out, name: str = "synth", version: int = 0) -> Path:
    """``OUT/ALL{version}_{name}``: the folder of the A000/B000 event folders."""
    return Path(out) / f"ALL{version}_{name}"


def event_folders(out, index: int = 0, name: str = "synth", version: int = 0) -> tuple[Path, Path]:
    """``OUT/ALL0_synth/A000`` and ``B000`` (index zero-padded to three digits)."""
    run = run_folder(out, name, version)
    return run / f"A{index:03d}", run / f"B{index:03d}"


def synthesize_sevt(out, photons: int, seed: int = 0, *, aligned: bool = True, era: str = CURRENT_ERA,
                    maxrec: int = SLOTS, misaligned: float = 0.002, dropouts: int = 15, events: int = 1,
                    name: str = "synth", noise_mm: float = NOISE_MM, noise_ns: float = NOISE_NS,
                    records: bool = True, progress: bool = True) -> list[tuple[Path, Path]]:
    """Write ``events`` SEvt pairs ``OUT/ALL0_{name}/A{k:03d}`` and ``B{k:03d}``; return their folders.

    Parameters
    ----------
    out : folder to write under (created when missing).
    photons : photons per event (the same N on both sides).
    seed : the output depends only on the arguments; event k draws from its own streams.
    aligned : B uses A's random numbers (photon by photon comparable) or its own.
    era : flag table (``photonab.flags.ERAS``) of the nibbles, labels and flag bits.
    maxrec : record points per photon, 1..32 (record.npy's second axis; histories are
        cut there, as Opticks cuts them at MaxBounce + 1 points).
    misaligned : aligned only: fraction of photons B re-draws until their history differs.
    dropouts : photons per side turned into a history of that side only (see the module).
    noise_mm, noise_ns : aligned only: B's uniform float noise on record positions, times.
    records : write record.npy (maxrec x 64 bytes per photon: 2 GB per side at 1M photons
        and maxrec 32); False leaves it out, as an event mode without records does (the
        histories, photons and hits are the same either way).

    Every event folder is written under a temporary name and renamed into place when
    complete; the migrations and dropouts actually made are listed in
    ``OUT/ALL0_{name}/synth.json``.
    """
    photons = check_int("photons", photons, 1)
    seed = check_int("seed", seed, 0)
    maxrec = check_int("maxrec", maxrec, 1, SLOTS)
    dropouts = check_int("dropouts", dropouts, 0)
    events = check_int("events", events, 1, 1000)
    misaligned = check_fraction("misaligned", misaligned)
    noise_mm, noise_ns = check_finite("noise_mm", noise_mm), check_finite("noise_ns", noise_ns)
    if era not in SEVT_ERAS:
        raise InputError(f"era {era!r}: SEvt folders are written with the flag table of "
                         f"{' or '.join(SEVT_ERAS)} (photonab.flags.ERAS)")
    if not isinstance(name, str) or not name or "/" in name:
        raise InputError(f"name {name!r}: expected a folder-name part like 'synth'")
    table = Flags(era)
    settings = dict(aligned=bool(aligned), misaligned=misaligned, dropouts=dropouts, maxrec=maxrec,
                    noise_mm=noise_mm, noise_ns=noise_ns)
    if not records:
        settings["records"] = False  # (the manifest of a full pair stays as it was)
    folders, record = [], []
    try:
        run_folder(out, name).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot write the event folders ({exc})") from None
    for k in range(events):
        a_dir, b_dir = event_folders(out, k, name)
        record.append(_write_pair(a_dir, b_dir, photons, seed, k, table, settings, progress))
        folders.append((a_dir, b_dir))
    manifest = {"generator": "photonab.synth.sevt.synthesize_sevt", "layout": "sevt", "era": era,
                "photons": photons, "seed": seed, **settings, "events": record}
    atomic.write_text(run_folder(out, name) / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return folders


class Flags:
    """The toy's steps in the flags of one era: flag bits, nibbles, labels."""

    def __init__(self, era: str):
        self.era = era
        self.table = ERAS[era]
        bits = self.table.flag_bit
        # toy nibble (photonab.seqhis) -> flag value of this era
        self.flag_of_toy = np.zeros(16, np.uint32)
        for nib, name in _TOY_NAMES.items():
            if name in bits:
                self.flag_of_toy[nib] = bits[name]
        self.hitmask = bits[HIT_MASK]
        self.dropout = {side: bits[flag] for side, flag in DROPOUT_FLAGS.items()}

    def label(self, nibbles) -> str:
        """Label of one photon's nibble sequence (0 = empty slot)."""
        return " ".join(self.table.abbr.get(int(n), "??") for n in nibbles if n)


def nibble_of(flags: np.ndarray) -> np.ndarray:
    """``FFS(flag) & 0xF`` for uint32 flags (0 for 0): the sseq nibble."""
    flags = np.asarray(flags, np.uint32)
    out = np.zeros(flags.shape, np.uint64)
    for bit in range(15, -1, -1):  # the lowest set bit wins
        out[(flags & np.uint32(1 << bit)) != 0] = (bit + 1) & 0xF
    return out


def pack_seq(nibbles: np.ndarray) -> np.ndarray:
    """(n, slots <= 32) nibbles -> (n, 2) uint64: slot s in word s // 16 at bits 4 (s % 16)."""
    n, slots = nibbles.shape
    out = np.zeros((n, 2), np.uint64)
    for s in range(slots):
        out[:, s // 16] |= nibbles[:, s].astype(np.uint64) << np.uint64(4 * (s % 16))
    return out


# ---------------------------------------------------------------- one pair


def _words(seed, stream, lo, n, maxrec):
    """(n, maxrec, WORDS) uint32 draws of photons lo..lo+n of one stream (counter-positioned)."""
    return _raw_words(seed, stream, lo, n, maxrec * WORDS // 2).view(np.uint32).reshape(n, maxrec, WORDS)


def _points(tr, maxrec):
    """Dense (n, maxrec) arrays of one side's record points from the compact slots."""
    n = tr.n
    pos = np.zeros((n, maxrec, 3), np.float32)
    t = np.zeros((n, maxrec), np.float32)
    pol = np.zeros((n, maxrec, 3), np.float32)
    nib = np.zeros((n, maxrec), np.uint8)
    bnd = np.zeros((n, maxrec), np.uint32)
    for r, s in enumerate(tr.slots[:maxrec]):
        pos[s.ids, r] = s.pos.T
        t[s.ids, r] = s.t
        pol[s.ids, r] = s.pol.T
        nib[s.ids, r] = s.meta >> np.uint32(24)
        bnd[s.ids, r] = (s.meta >> np.uint32(16)) & np.uint32(0xFF)
    nstep = (nib != 0).sum(axis=1)
    # momentum at a point: the direction to the next point; at the last, the final direction
    mom = np.zeros_like(pos)
    step = pos[:, 1:] - pos[:, :-1]
    norm = np.sqrt((step.astype(np.float64) ** 2).sum(axis=2))
    has_next = (nib[:, 1:] != 0) & (norm > 0)
    mom[:, :-1][has_next] = (step[has_next] / norm[has_next][:, None]).astype(np.float32)
    rows = np.arange(n)
    mom[rows, nstep - 1] = tr.direction.T
    return {"pos": pos, "t": t, "pol": pol, "nib": nib, "bnd": bnd, "mom": mom, "nstep": nstep}


def _choose_dropouts(tr, nstep, quota, taken=None):
    """Indices (in the block) of the first ``quota`` photons with the dropout history."""
    code = seqhis.code(DROPOUT_HISTORY)
    ok = (tr.seqhis == np.uint64(code)) & (nstep == seqhis.nstep(code))
    if taken is not None:
        ok[taken] = False
    return np.flatnonzero(ok)[:quota]


def _encode(p, tr, flags: Flags, lo: int, dropout_rows, dropout_flag):
    """photon (n,4,4), record (n,maxrec,4,4) float32 and seq (n,2,2) uint64 of one side."""
    n, maxrec = p["nib"].shape
    flag = flags.flag_of_toy[p["nib"]]  # (n, maxrec) uint32, 0 beyond the last point
    rows = np.arange(n)
    last = p["nstep"] - 1
    flag[dropout_rows, last[dropout_rows]] = dropout_flag
    flagmask = np.bitwise_or.accumulate(flag, axis=1) * (flag != 0)
    record = np.zeros((n, maxrec, 4, 4), np.float32)
    record[..., 0, :3], record[..., 0, 3] = p["pos"], p["t"]
    record[..., 1, :3] = p["mom"]
    record[..., 2, :3], record[..., 2, 3] = p["pol"], (tr.wavelength[:, None] * (flag != 0))
    u = record.view(np.uint32)
    # orient: the photon meets the cube face against its outward normal (it enters the cube)
    axis = np.abs(p["pos"]).argmax(axis=2)
    prev = np.zeros_like(p["pos"])
    prev[:, 1:] = p["mom"][:, :-1]
    along = np.take_along_axis(prev, axis[..., None], 2)[..., 0] * np.take_along_axis(p["pos"], axis[..., None], 2)[..., 0]
    orient = (p["bnd"] == BND_CUBE) & (along < 0)
    u[..., 3, 0] = (orient.astype(np.uint32) << np.uint32(31)) | (p["bnd"] << np.uint32(16)) | (flag & 0xFFFF)
    index = np.arange(lo, lo + n, dtype=np.uint64)
    detect = flag == flags.hitmask
    u[..., 3, 1] = np.where(detect, tr.sensor[:, None], 0)  # sensor id + 1 (wall face 1..6), 0 elsewhere
    u[..., 3, 1] |= ((index >> np.uint64(32)).astype(np.uint32) << np.uint32(24))[:, None] * (flag != 0)
    u[..., 3, 2] = (index & np.uint64(0xFFFFFFFF)).astype(np.uint32)[:, None] * (flag != 0)
    u[..., 3, 3] = flagmask
    u[..., 1, 3] = detect.astype(np.uint32) << np.uint32(16)  # hitcount_iindex: one hit, instance 0
    photon = record[rows, last].copy()
    pu = photon.view(np.uint32)
    pu[:, 1, 3] = ((flagmask[rows, last] & flags.hitmask) == flags.hitmask).astype(np.uint32) << np.uint32(16)
    pu[:, 3, 1] = tr.sensor * (pu[:, 1, 3] != 0) | ((index >> np.uint64(32)).astype(np.uint32) << np.uint32(24))
    pu[:, 3, 2] = (index & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    seq = np.zeros((n, 2, 2), np.uint64)
    seq[:, 0] = pack_seq(nibble_of(flag))
    seq[:, 1] = pack_seq(p["bnd"].astype(np.uint64) & np.uint64(0xF))
    return photon, record, seq


def _noise(p, seed, stream, lo, n, maxrec, noise_mm, noise_ns):
    """B's float noise on record positions and times (in place), uniform within +-noise."""
    w = _words(seed, stream, lo, n, maxrec)
    u = (_unit24(w) * np.float32(2) - np.float32(1))  # (n, maxrec, 4) in (-1, 1)
    live = p["nib"] != 0
    p["pos"] += (u[..., :3] * np.float32(noise_mm)) * live[..., None]
    p["t"] += u[..., 3] * np.float32(noise_ns) * live


def _domain(n, maxrec, hits) -> np.ndarray:
    dom = np.zeros((2, 4, 4), np.float32)
    dom[0, 0] = (0, 0, 0, 0)
    dom[0, 1] = (DOMAIN_EXTENT, DOMAIN_EXTENT, DOMAIN_EXTENT, DOMAIN_TMAX)
    dom[0, 2] = (0, 0, 0, DOMAIN_WL[0])
    dom[0, 3] = (1, 1, 1, DOMAIN_WL[1])
    cfg = dom[1].view(np.uint32)
    cfg[0] = (1, n, maxrec - 1, 0)  # max_genstep, max_photon, max_bounce
    cfg[1] = (maxrec, 0, 1, 0)  # max_record, max_rec, max_seq
    cfg[2] = (1, n, n, hits)  # num_genstep, num_seed, num_photon, num_hit
    cfg[3] = (n, 0, n, 0)  # num_record, num_rec, num_seq
    return dom


def _genstep(n, flags: Flags) -> np.ndarray:
    """One torch genstep: q0 (gentype, trackid, matline, numphoton) int32, q1 (start xyz, t)."""
    gs = np.zeros((1, 6, 4), np.float32)
    gs.view(np.int32)[0, 0] = (flags.table.flag_bit["TORCH"], 0, 0, n)
    gs[0, 1] = (0, 0, TORCH_Z, 0)
    gs[0, 2] = (0, 0, 1, 0)  # torch axis
    gs[0, 3] = (0, 0, 0, CUBE_HALF)  # target: the cube
    return gs


def _meta(side, n, hits, maxrec, flags, seed, k, settings, t_begin) -> str:
    lines = {
        "source": "photonab.synth.sevt", "GEOM": "synth_box", "simulator": "opticks-toy" if side == "A" else "geant4-toy",
        "index": k, "era": flags.era, "aligned": int(settings["aligned"]), "seed": seed,
        "MaxBounce": maxrec - 1, "MaxRecord": maxrec, "NumGenstepCollected": 1, "NumPhotonCollected": n,
        "NumHit": hits, "hitmask": flags.hitmask, "site": "SEvt::endMeta",
        "t_BeginOfEvent": t_begin, "t_EndOfEvent": int(time.time() * 1e6),
    }
    return "".join(f"{key}:{value}\n" for key, value in lines.items())


def _write_pair(a_dir, b_dir, n, seed, k, flags: Flags, settings, progress) -> dict:
    from tqdm import tqdm

    maxrec, aligned = settings["maxrec"], settings["aligned"]
    t_begin = int(time.time() * 1e6)
    stream = 1000 * k
    quota = {"A": settings["dropouts"], "B": settings["dropouts"]}
    moved, dropped = Counter(), {"A": Counter(), "B": Counter()}
    hits = {"A": [], "B": []}
    with atomic.atomic_folder(a_dir) as tmp_a, atomic.atomic_folder(b_dir) as tmp_b:
        maps = {}
        for side, folder in (("A", tmp_a), ("B", tmp_b)):
            maps[side] = {
                "photon": np.lib.format.open_memmap(folder / "photon.npy", "w+", np.float32, (n, 4, 4)),
                "seq": np.lib.format.open_memmap(folder / "seq.npy", "w+", np.uint64, (n, 2, 2)),
            }
            if settings.get("records", True):
                maps[side]["record"] = np.lib.format.open_memmap(folder / "record.npy", "w+", np.float32,
                                                                 (n, maxrec, 4, 4))
        with tqdm(total=n, unit="photon", unit_scale=True, desc=f"synthesize SEvt {k:03d}",
                  disable=not progress) as bar:
            for lo in range(0, n, BLOCK):
                m = min(BLOCK, n - lo)
                words = _words(seed, stream + _PHYSICS_A, lo, m, maxrec)
                a = propagate(words)
                if aligned:
                    mis = _unit24(words[:, 0, 1]) < np.float32(settings["misaligned"])
                    b = _event_b(words, a, mis)
                else:
                    b = propagate(_words(seed, stream + _PHYSICS_B, lo, m, maxrec))
                pts = {"A": _points(a, maxrec), "B": _points(b, maxrec)}
                if aligned:
                    _noise(pts["B"], seed, stream + _NOISE_B, lo, m, maxrec, settings["noise_mm"],
                           settings["noise_ns"])
                rows_a = _choose_dropouts(a, pts["A"]["nstep"], quota["A"])
                rows_b = _choose_dropouts(b, pts["B"]["nstep"], quota["B"], taken=rows_a)
                out = {}
                for side, tr, rows in (("A", a, rows_a), ("B", b, rows_b)):
                    quota[side] -= rows.size
                    photon, record, seq = _encode(pts[side], tr, flags, lo, rows, flags.dropout[side])
                    maps[side]["photon"][lo:lo + m] = photon
                    if "record" in maps[side]:
                        maps[side]["record"][lo:lo + m] = record
                    maps[side]["seq"][lo:lo + m] = seq
                    fm = photon.view(np.uint32)[:, 3, 3]
                    hits[side].append(photon[(fm & flags.hitmask) == flags.hitmask])
                    out[side] = (seq, pts[side])
                    for i in rows:
                        dropped[side][flags.label(_seq_nibbles(seq[i, 0]))] += 1
                differ = np.flatnonzero((out["A"][0][:, 0] != out["B"][0][:, 0]).any(axis=1)) if aligned else ()
                for i in differ:
                    moved[flags.label(_seq_nibbles(out["A"][0][i, 0])),
                          flags.label(_seq_nibbles(out["B"][0][i, 0]))] += 1
                bar.update(m)
        nhit = {}
        for side, folder in (("A", tmp_a), ("B", tmp_b)):
            for arr in maps[side].values():
                arr.flush()
            del arr
            maps[side].clear()
            hit = np.concatenate(hits[side]) if hits[side] else np.zeros((0, 4, 4), np.float32)
            nhit[side] = len(hit)
            np.save(folder / "hit.npy", hit)
            np.save(folder / "genstep.npy", _genstep(n, flags))
            np.save(folder / "domain.npy", _domain(n, maxrec, len(hit)))
            written = [f for f in FILES if f != "record.npy" or settings.get("records", True)]
            (folder / "NPFold_index.txt").write_text("".join(f"{f}\n" for f in written))
            (folder / "NPFold_meta.txt").write_text(
                _meta(side, n, len(hit), maxrec, flags, seed, k, settings, t_begin))
    # A and B photons that differ in history, by (A label, B label); in an unaligned pair
    # nearly every photon differs, so only the dropouts and hit counts are listed
    migrations = [{"a": x, "b": y, "photons": c} for (x, y), c in sorted(moved.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {"index": k, "a": str(a_dir.relative_to(a_dir.parent.parent)),
            "b": str(b_dir.relative_to(b_dir.parent.parent)), "hits": nhit,
            "dropouts": {side: dict(c) for side, c in dropped.items()},
            "migrations": migrations if aligned else None}


def _seq_nibbles(words) -> list[int]:
    """The 32 slot nibbles of one seqhis[2]."""
    return [int((int(words[s // 16]) >> (4 * (s % 16))) & 0xF) for s in range(SLOTS)]
