"""SEvt event folders (Opticks since 2022), opened memory-mapped and validated.

An SEvt event is an NPFold directory (``RUN/A000`` = Opticks on the GPU, ``RUN/B000``
= Geant4) of plain ``.npy`` files plus ``NPFold_meta.txt`` and ``NPFold_index.txt``
(docs/sevt.md, section 1). Every file is optional: which ones exist depends on the
``OPTICKS_EVENT_MODE`` the event was written with, and only what a table needs is
required (:meth:`SEvtEvent.require`). ``--msli`` slices the per-photon arrays
(``photon``, ``record``, ``seq``), never ``hit``.

The history nibbles mean different flags in different eras of the Opticks source;
:func:`detect_era` reads the era from the first slot of the histories (the source
flag) and :class:`SEvtPair` reports which flag table it used.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .errors import InputError
from .events import EventPair, advise_sequential, parse_msli, read_npy
from .flags import CURRENT_ERA, ERAS, LEGACY_ERA
from .seqhis import flag_table

#: event modes that write seq.npy (SEventConfig, docs/sevt.md section 1)
SEQ_EVENT_MODES = ("HitPhotonSeq", "HitSeq", "DebugLite", "DebugHeavy")
#: event modes that write each array
EVENT_MODES = {
    "photon": ("HitPhoton", "HitPhotonSeq", "DebugLite", "DebugHeavy"),
    "record": ("DebugLite", "DebugHeavy"),
    "seq": SEQ_EVENT_MODES,
    "hit": ("Hit", "HitPhoton", "HitPhotonSeq", "HitSeq", "DebugLite", "DebugHeavy"),
    "domain": ("DebugLite", "DebugHeavy"),
}
#: history slots of seq.npy (sseq::SLOTS): a record.npy cannot have more step points
SEQ_SLOTS = 32
F4, F8, U8 = np.dtype("<f4"), np.dtype("<f8"), np.dtype("<u8")
#: array -> (accepted dtypes, shape after the photon axis, or the full shape when whole)
ARRAYS = {
    "photon": ((F4,), (4, 4)),
    "record": ((F4, F8), (None, 4, 4)),  # None = maxrec; sevt.py also reads float64 records
    "seq": ((U8,), (2, 2)),
    "hit": ((F4,), (4, 4)),
    "domain": ((F4,), (2, 4, 4)),
}
PHOTON_ARRAYS = ("photon", "record", "seq")

LAYOUT_2019_FILES = ("ox.npy", "ph.npy", "rx.npy", "fdom.npy", "idom.npy")
LAYOUT_SEVT_FILES = ("photon.npy", "seq.npy", "record.npy", "hit.npy", "NPFold_index.txt",
                     "NPFold_meta.txt", "genstep.npy", "inphoton.npy")


def _describe(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "a broken symlink"
    if not path.exists():
        return "missing"
    if path.is_file():
        return "a file, not a folder"
    return "not a folder"


def detect_layout(path) -> str:
    """``"2019"`` (ox/rx/ph folders) or ``"sevt"`` (NPFold: photon/record/seq...), from the files present."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: event folder is {_describe(path)}")
    old = [f for f in LAYOUT_2019_FILES if (path / f).exists()]
    new = [f for f in LAYOUT_SEVT_FILES if (path / f).exists()]
    if old and new:
        raise InputError(f"{path}: holds files of both layouts ({', '.join(old)} of the 2019 layout, "
                         f"{', '.join(new)} of SEvt); cannot tell which event to read")
    if old:
        return "2019"
    if new:
        return "sevt"
    raise InputError(f"{path}: not an event folder: none of the 2019 layout files ({', '.join(LAYOUT_2019_FILES)}) "
                     f"nor of an SEvt folder ({', '.join(LAYOUT_SEVT_FILES)})")


# ---------------------------------------------------------------- NPFold_meta.txt

def parse_meta(text: str) -> dict[str, str]:
    """``key:value`` lines -> dict (first ':' splits; blank lines skipped; a line without ':'
    is kept as a key with an empty value)."""
    meta = {}
    for line in text.splitlines():
        line = line.rstrip("\r")
        if not line.strip():
            continue
        key, _, value = line.partition(":")
        meta[key.strip()] = value.strip()
    return meta


_PROFILE_STAMP = re.compile(r"^\s*\d{15,}(\s*,\s*\d+)*\s*$")  # sprof "stamp,vm,rss" or a bare microsecond stamp


def is_timestamp_key(key: str, value: str = "") -> bool:
    """Keys that differ from run to run by nature: ``t_*`` times and profile stamps."""
    k = key.lower()
    return (k.startswith("t_") or "stamp" in k or k.endswith("_t") or k.startswith("prof")
            or bool(_PROFILE_STAMP.match(value or "")))


def meta_differences(meta_a: dict, meta_b: dict) -> list[tuple[str, str | None, str | None]]:
    """(key, A value, B value) for keys whose values differ (or that only one side has),
    timestamps aside (:func:`is_timestamp_key`), in key order of A then B."""
    out = []
    for key in list(meta_a) + [k for k in meta_b if k not in meta_a]:
        va, vb = meta_a.get(key), meta_b.get(key)
        if va == vb or is_timestamp_key(key, va or vb or ""):
            continue
        out.append((key, va, vb))
    return out


# ---------------------------------------------------------------- one event

def _npy_dtype(path: Path):
    """The dtype of a .npy header, or None when the header cannot be read (read_npy then says why)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            return read(fh)[2]
    except Exception:
        return None


class SEvtEvent:
    """One SEvt folder, memory-mapped. Per-photon arrays are already ``--msli``-sliced.

    Attributes ``photon``, ``record``, ``seq``, ``hit``, ``domain`` are the arrays (None
    when the file is absent); ``meta`` the parsed ``NPFold_meta.txt``; ``index`` the
    keys of ``NPFold_index.txt``. ``need`` names arrays that must be present (e.g.
    ``("seq",)`` for the history table).
    """

    layout = "sevt"

    def __init__(self, path, msli=None, need=()):
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputError(f"{self.path}: event folder is {_describe(self.path)}")
        self.msli = parse_msli(msli)
        meta_file = self.path / "NPFold_meta.txt"
        self.meta = parse_meta(meta_file.read_text(errors="replace")) if meta_file.is_file() else {}
        index_file = self.path / "NPFold_index.txt"
        self.index = ([k.strip() for k in index_file.read_text(errors="replace").splitlines() if k.strip()]
                      if index_file.is_file() else [])
        arrays = {}
        for name, (dtypes, tail) in ARRAYS.items():
            file = self.path / f"{name}.npy"
            if not file.exists() and not file.is_symlink():
                arrays[name] = None
                continue
            found = _npy_dtype(file) if file.is_file() else None
            dtype = found if found is not None and found in dtypes else dtypes[0]  # a wrong dtype: read_npy names the expected one
            arrays[name] = read_npy(file, dtype, tail, whole=(name == "domain"))
            if name != "domain":
                advise_sequential(arrays[name])
        rec = arrays["record"]
        if rec is not None:
            maxrec = rec.shape[1]
            if not 1 <= maxrec <= SEQ_SLOTS:
                raise InputError(f"{self.path / 'record.npy'}: maxrec {maxrec} (shape {rec.shape}) must be in "
                                 f"1..{SEQ_SLOTS}, the history slots of seq.npy")
        # seq.npy (the histories) first: the other arrays are checked against it
        counts = {n: len(arrays[n]) for n in ("seq", "photon", "record") if arrays[n] is not None}
        if len(set(counts.values())) > 1:
            first, *rest = counts.items()
            bad = next((k, v) for k, v in rest if v != first[1])
            raise InputError(f"{self.path / (bad[0] + '.npy')}: {bad[1]} photons but {first[0]}.npy has {first[1]}")
        self.n_total = next(iter(counts.values()), 0)
        hit = arrays["hit"]
        if hit is not None and arrays["photon"] is not None and len(hit) > self.n_total:
            raise InputError(f"{self.path / 'hit.npy'}: {len(hit)} hits but photon.npy has only {self.n_total} "
                             "photons (hits are a subset of the photons)")
        for name in PHOTON_ARRAYS:
            if arrays[name] is not None:
                arrays[name] = arrays[name][self.msli]
        self.photon, self.record, self.seq = arrays["photon"], arrays["record"], arrays["seq"]
        self.hit, self.domain = arrays["hit"], arrays["domain"]
        for name in need:
            self.require(name)

    def require(self, name: str, purpose: str | None = None):
        """The array ``name``, or an InputError saying which event modes write it."""
        arr = getattr(self, name)
        if arr is not None:
            return arr
        file = self.path / f"{name}.npy"
        why = f" (needed for {purpose})" if purpose else ""
        listed = " although NPFold_index.txt lists it (an incomplete copy?)" if f"{name}.npy" in self.index else ""
        modes = ", ".join(EVENT_MODES.get(name, ()))
        raise InputError(f"{file}: missing{listed}{why}; it is written when OPTICKS_EVENT_MODE is one of "
                         f"{modes}")

    def __repr__(self):
        have = [n for n in ARRAYS if getattr(self, n) is not None]
        return f"SEvtEvent({str(self.path)!r}, n={self.n}, arrays={have})"

    def __len__(self):
        return self.n

    @property
    def n(self) -> int:
        """Photons after ``--msli`` (0 when no per-photon array is present)."""
        return len(range(self.n_total)[self.msli])

    @property
    def file_rows(self) -> range:
        """Row in the files of each (``--msli``-sliced) photon index."""
        return range(self.n_total)[self.msli]

    @property
    def maxrec(self) -> int | None:
        return None if self.record is None else int(self.record.shape[1])

    @property
    def seqhis(self) -> np.ndarray:
        """(N, 2) uint64 view of the history words: slots 0-15 in column 0, 16-31 in column 1."""
        return self.require("seq", "the history table")[:, 0]

    @property
    def n_hits(self) -> int | None:
        return None if self.hit is None else len(self.hit)


# ---------------------------------------------------------------- eras

#: first-slot nibbles that are source flags (CK, SI, TO) in each SEvt-era flag table
_SOURCES = {era: {t.nibble[s] for s in ("CK", "SI", "TO")} for era, t in ERAS.items()}
#: photons read to detect an era (evenly spaced over the event)
ERA_SAMPLE = 1 << 16
#: ... read as this many runs of contiguous photons (ERA_SAMPLE / ERA_BLOCKS each)
ERA_BLOCKS = 64


def detect_era(seqhis_lo, candidates=("2020-12", "2025-06")) -> tuple[str | None, str]:
    """The era whose source flags (CK, SI, TO) explain the first history slot of the most photons.

    Returns ``(era, evidence)``; ``era`` is None when the data cannot tell (no photons,
    or only CK/SI sources, whose nibbles are the same in every era). TORCH is nibble 0xd
    before 2025-06 and 3 from then on. Reads at most ERA_SAMPLE photons, in ERA_BLOCKS evenly spaced runs.
    """
    lo = np.asarray(seqhis_lo)
    step = max(1, math.ceil(len(lo) / ERA_SAMPLE))
    if step > 1:  # ERA_BLOCKS evenly spaced runs of contiguous photons: a strided read would fault in every page
        run = ERA_SAMPLE // ERA_BLOCKS
        starts = np.linspace(0, len(lo) - run, ERA_BLOCKS).astype(np.intp)
        sample = np.concatenate([np.asarray(lo[s:s + run]) for s in starts])
    else:
        sample = np.asarray(lo)
    first = np.bincount((np.asarray(sample, np.uint64) & np.uint64(0xF)).astype(np.intp), minlength=16)
    recorded = int(first[1:].sum())
    if recorded == 0:
        return None, "no recorded histories"
    score = {era: int(sum(first[n] for n in _SOURCES[era])) for era in candidates}
    best = max(score.values())
    winners = [e for e in candidates if score[e] == best]
    frac = best / recorded
    sample = f"{recorded} sampled photons" if step > 1 else f"{recorded} photons"
    if len(winners) > 1:
        return None, f"first slots are CK/SI only ({sample}): the TORCH nibble that tells the eras apart is absent"
    era = winners[0]
    return era, (f"first slot is a source flag of the {era} table (TO = {ERAS[era].nibble['TO']:x}) "
                 f"for {100 * frac:.1f}% of {sample}")


# ---------------------------------------------------------------- a pair

class SEvtPair:
    """SEvt event A (Opticks) and event B (Geant4) of one comparison.

    ``era`` is the flag table used to decode both histories: given (``era=``), or
    detected from the data (:func:`detect_era`), or CURRENT_ERA when the data cannot
    tell; ``era_source`` says which ("given", "detected", "default") and ``era_evidence``
    why. ``meta_diff`` lists the NPFold_meta.txt keys that differ (timestamps aside).
    When A and B differ in photon count, QCF compares the first ``n`` = min of both;
    ``notes`` says so.
    """

    layout = "sevt"

    def __init__(self, a: SEvtEvent, b: SEvtEvent, era: str | None = None):
        self.a, self.b = a, b
        self.notes: list[str] = []
        if a.n != b.n:
            self.notes.append(f"A and B differ in photon count ({a.n} in {a.path}, {b.n} in {b.path}); "
                              f"histories are compared over the first {min(a.n, b.n)} of each, as QCF does")
        if a.maxrec is not None and b.maxrec is not None and a.maxrec != b.maxrec:
            self.notes.append(f"A and B differ in maxrec: {a.path / 'record.npy'} has {a.maxrec}, "
                              f"{b.path / 'record.npy'} has {b.maxrec}")
        if era is not None:
            self.era, self.era_source, self.era_evidence = flag_table(era).era, "given", "--flags"
        else:
            self.era, self.era_source, self.era_evidence = self._detect_era()
        self.meta_diff = meta_differences(a.meta, b.meta)

    def _detect_era(self):
        found = {}
        for side, ev in (("A", self.a), ("B", self.b)):
            if ev.seq is not None and len(ev.seq):
                found[side] = detect_era(ev.seq[:, 0, 0])
        eras = {side: e for side, (e, _) in found.items() if e is not None}
        if len(set(eras.values())) > 1:
            raise InputError(f"A and B histories look like different flag eras: {self.a.path / 'seq.npy'} "
                             f"{eras['A']} ({found['A'][1]}), {self.b.path / 'seq.npy'} {eras['B']} "
                             f"({found['B'][1]}); give the era to use (--flags ERA)")
        if eras:
            side, era = next(iter(eras.items()))
            return era, "detected", f"{side}: {found[side][1]}"
        why = "; ".join(f"{s}: {e}" for s, (_, e) in found.items()) or "no seq.npy"
        return CURRENT_ERA, "default", why

    @classmethod
    def open(cls, a_dir, b_dir, msli=None, era=None, need=()) -> "SEvtPair":
        return cls(SEvtEvent(a_dir, msli, need), SEvtEvent(b_dir, msli, need), era)

    @property
    def n(self) -> int:
        """Photons compared: the smaller of the two (sliced) events."""
        return min(self.a.n, self.b.n)

    def seqhis(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) uint64 history words of A and of B, both cut to :attr:`n` photons."""
        n = self.n
        return self.a.seqhis[:n], self.b.seqhis[:n]

    def __repr__(self):
        return f"SEvtPair(a={self.a.path}, b={self.b.path}, n={self.n}, flags={self.era})"


# ---------------------------------------------------------------- run folders

_EVENT_DIR = re.compile(r"^([AB])(\d{3,})$")


def event_dirs(run, index: int) -> tuple[Path, Path]:
    """``RUN/A{index:03d}``, ``RUN/B{index:03d}`` (Opticks' sstr::FormatIndex_)."""
    if int(index) < 0:
        raise InputError(f"event index {index} must be >= 0")
    run = Path(run)
    return run / f"A{int(index):03d}", run / f"B{int(index):03d}"


def run_indices(run) -> list[int]:
    """Indices with both ``A{i:03d}`` and ``B{i:03d}`` under a run folder, ascending.

    Raises InputError when the run folder holds no pair or an event without its partner.
    """
    run = Path(run)
    if not run.is_dir():
        raise InputError(f"{run}: run folder is {_describe(run)}")
    seen: dict[str, set[int]] = {"A": set(), "B": set()}
    for p in run.iterdir():
        m = _EVENT_DIR.match(p.name)
        if m and p.is_dir():
            seen[m.group(1)].add(int(m.group(2)))
    lonely = sorted(seen["A"] ^ seen["B"])
    if lonely:
        names = ", ".join(("A" if i in seen["A"] else "B") + f"{i:03d}" for i in lonely)
        raise InputError(f"{run}: events without a partner: {names} (expected A{{i:03d}} beside B{{i:03d}})")
    both = sorted(seen["A"] & seen["B"])
    if not both:
        raise InputError(f"{run}: no A000/B000 event pairs in this run folder")
    return both


def open_run(run, index: int = 0, msli=None, era=None, need=()) -> SEvtPair:
    """The pair ``RUN/A{index:03d}``, ``RUN/B{index:03d}``."""
    a_dir, b_dir = event_dirs(run, index)
    for d in (a_dir, b_dir):
        if not d.is_dir():
            raise InputError(f"{d}: event folder is {_describe(d)} (run folder {run}, index {index})")
    return SEvtPair.open(a_dir, b_dir, msli, era, need)


def open_pair(a_dir, b_dir, msli=None, era=None, need=()):
    """An :class:`EventPair` (2019 layout) or an :class:`SEvtPair`, from the files present.

    A and B must have the same layout; ``era`` (flag table) and ``need`` apply to SEvt
    pairs (the 2019 layout always uses LEGACY_ERA).
    """
    la, lb = detect_layout(a_dir), detect_layout(b_dir)
    if la != lb:
        raise InputError(f"A and B have different layouts: {a_dir} is {_layout_name(la)}, "
                         f"{b_dir} is {_layout_name(lb)}")
    if la == "2019":
        if era is not None and flag_table(era).era != LEGACY_ERA:
            raise InputError(f"--flags {era}: the 2019 layout is decoded with the {LEGACY_ERA} flags")
        return EventPair.open(a_dir, b_dir, msli)
    return SEvtPair.open(a_dir, b_dir, msli, era, need)


def _layout_name(layout: str) -> str:
    return "the 2019 layout (ox/rx/ph)" if layout == "2019" else "an SEvt folder (photon/record/seq)"
