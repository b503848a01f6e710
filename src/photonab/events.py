"""Event folders in the 2019 Opticks layout, opened memory-mapped and validated.

An event is a folder of ``.npy`` files (docs/event-format.md, section 1). Nothing here reads a
whole per-photon array: arrays are ``np.load(mmap_mode="r")`` maps, sliced by ``--msli``,
and the decoders turn only the photons asked for into float32 values.

Files can change while they are read (a simulation still writing, a second job
regenerating them). Each file's identity (size, mtime, inode) is noted at open, the maps
are watched by cyext's SIGBUS guard, and :meth:`EventPair.check_unchanged` (called by
the engines before each chunk and at the end of a comparison) turns any change into an
:class:`~photonab.errors.InputChangedError` naming the file, or, where the caller
allows changing input, into a warning carried with the result (docs/reliability.md).
"""
from __future__ import annotations

import contextlib
import errno
import math
import mmap
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import interrupt
from .errors import InputChangedError, InputError

#: file -> (dtype, shape after the photon axis or full shape, per-photon?, required?)
LAYOUT = {
    "ox": (np.dtype("<f4"), (4, 4), True, True),
    "rx": (np.dtype("<i2"), (None, 2, 4), True, True),  # None = maxrec
    "ph": (np.dtype("<u8"), (1, 2), True, True),
    "ps": (np.dtype("u1"), (1, 4), True, False),
    "rs": (np.dtype("u1"), (None, 1, 4), True, False),
    "fdom": (np.dtype("<f4"), (3, 1, 4), False, True),
    "idom": (np.dtype("<i4"), (1, 1, 4), False, True),
    "gs": (np.dtype("<f4"), (6, 4), True, False),  # gensteps: per-genstep, loaded whole
}
PHOTON_ARRAYS = ("ox", "rx", "ph", "ps", "rs")

# ---------------------------------------------------------------- slicing (--msli)

def _msli_int(text: str, spec: str) -> int | None:
    from .counts import parse_count
    if text.strip() == "":
        return None
    try:
        return parse_count(text)
    except ValueError:
        raise InputError(f"--msli {spec!r}: {text!r} is not a count like 100, 100k or 1M") from None


def parse_msli(spec: str | slice | None) -> slice:
    """``'0:100k'`` -> ``slice(0, 100000)``; ``':1M'``, ``'::10'``; empty or None = all photons."""
    if spec is None or isinstance(spec, slice):
        return spec or slice(None)
    if not isinstance(spec, str):
        raise InputError(f"msli must be a slice text like '0:100k' or ':1M', or a slice object, "
                         f"not {type(spec).__name__} {spec!r} (for the first N photons: msli=':N')")
    parts = spec.split(":")
    if len(parts) == 1:  # a bare count means the first N photons, like ':N'
        parts = ["", parts[0]]
    if len(parts) > 3:
        raise InputError(f"--msli {spec!r}: expected start:stop[:step]")
    start, stop, *rest = (_msli_int(p, spec) for p in parts)
    step = rest[0] if rest else None
    if step == 0:
        raise InputError(f"--msli {spec!r}: step must be positive")
    return slice(start, stop, step)


# ---------------------------------------------------------------- reading .npy safely


class FileStamp(NamedTuple):
    """What says a file is the one that was opened: size, modification time, inode."""

    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, st: os.stat_result) -> "FileStamp":
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)

    def difference(self, now: "FileStamp") -> str | None:
        """How ``now`` differs from this stamp, in words; None when it does not."""
        if (now.inode, now.device) != (self.inode, self.device):
            return "replaced by another file: inode changed"
        if now.size != self.size:
            return f"size changed from {self.size} to {now.size} bytes"
        if now.mtime_ns != self.mtime_ns:
            return "modified in place: mtime changed"
        return None


def path_problem(path: Path, want: str = "file") -> str | None:
    """Why ``path`` is not the plain file (``want="file"``) or the folder (``"folder"``)
    wanted, naming what it is; None when it is what is wanted."""
    import stat
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop"
        if os.path.islink(path):
            return f"is a broken symlink (to {os.readlink(path)})"
        if isinstance(exc, FileNotFoundError):
            return "missing file" if want == "file" else "event folder does not exist"
        return f"cannot be looked at ({exc.strerror or exc})"
    wanted = stat.S_ISREG(mode) if want == "file" else stat.S_ISDIR(mode)
    if wanted:
        return None
    kind = ("a directory" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a file" if stat.S_ISREG(mode) else "not a plain file")
    return f"is {kind}, not a plain file" if want == "file" else f"is {kind}, not an event folder"


def read_npy(path: Path, dtype: np.dtype, tail: tuple, *, whole: bool = False) -> np.ndarray:
    """Open one ``.npy`` memory-mapped, checking header, dtype, shape, order and size.

    ``tail`` is the expected shape after the first axis (or the full shape for
    whole-loaded arrays); ``None`` entries are free. Every failure names the file.
    """
    return open_npy(path, dtype, tail, whole=whole)[0]


def open_npy(path: Path, dtype: np.dtype, tail: tuple, *, whole: bool = False
             ) -> tuple[np.ndarray, FileStamp, int]:
    """:func:`read_npy`, also giving the file's stamp at open and the bytes its header
    promises (what :class:`Event` watches while the file is read)."""
    path = Path(path)
    problem = path_problem(path, "file")
    if problem:
        raise InputError(f"{path}: {problem}")
    try:
        with open(path, "rb") as fh:
            stamp = FileStamp.of(os.fstat(fh.fileno()))
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            header = read_header(fh)
            offset = fh.tell()
    except Exception as exc:  # numpy raises ValueError/OSError with low-level wording
        raise InputError(f"{path}: not a valid .npy file ({exc})") from None
    shape, fortran, file_dtype = header
    if fortran and len(shape) > 1:
        raise InputError(f"{path}: array is Fortran-ordered; save it C-ordered (np.ascontiguousarray)")
    if file_dtype != dtype:
        raise InputError(f"{path}: dtype {file_dtype.str} but expected {dtype.str} ({dtype.name})")
    expect = tail if whole else (None,) + tuple(tail)
    if len(shape) != len(expect) or any(e is not None and s != e for s, e in zip(shape, expect)):
        pretty = "(" + ", ".join("N" if i == 0 and not whole else ("*" if e is None else str(e))
                                 for i, e in enumerate(expect)) + ")"
        raise InputError(f"{path}: shape {shape} but expected {pretty}")
    need = offset + math.prod(shape) * dtype.itemsize  # Python ints: a corrupt shape cannot wrap
    have = stamp.size
    if have < need:
        raise InputError(f"{path}: truncated: {have} bytes on disk, header promises {need}")
    try:
        if math.prod(shape) == 0:
            arr = np.zeros(shape, dtype)
        else:
            arr = np.load(path, mmap_mode="r") if not whole else np.load(path)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from None
    try:
        change = stamp.difference(FileStamp.of(os.stat(path)))
    except OSError:
        change = "removed"
    if change is not None:  # the header read and the map may be of two versions
        raise InputChangedError(f"{path}: changed while being opened ({change}); rerun once it is complete")
    return arr, stamp, need


# ---------------------------------------------------------------- watching inputs


def _cyext_guard():
    """cyext when it has the SIGBUS guard, else None (the maps are then read unguarded)."""
    try:
        import cyext
    except ImportError:
        return None
    return cyext if hasattr(cyext, "guard_register") else None


def _mapping(arr):
    """The mmap behind a memory-mapped array, None for in-memory arrays."""
    mm = getattr(arr, "_mmap", None)
    return mm if isinstance(mm, mmap.mmap) else None


def guard_map(mm: mmap.mmap) -> int:
    """Watch a map with cyext's SIGBUS guard for as long as it lives; its slot, -1 if unguarded."""
    cy = _cyext_guard()
    if cy is None or mm is None or len(mm) == 0:
        return -1
    address = np.frombuffer(mm, np.uint8).ctypes.data
    slot = cy.guard_register(address, len(mm))
    if slot >= 0:
        weakref.finalize(mm, cy.guard_unregister, slot)
    return slot


@dataclass
class WatchedFile:
    """One input file of an event: its stamp at open, the bytes its header promises, and
    (for memory-mapped arrays) the map and its guard slot."""

    path: Path
    stamp: FileStamp
    need: int
    mm: mmap.mmap | None = None
    slot: int = -1

    def damage(self) -> str | None:
        """Why the mapped data can no longer be trusted, in words; None when it can."""
        if self.slot >= 0 and _cyext_guard().guard_faults(self.slot):
            return "shrank under its memory map: reads past its new end hit a bus error, caught"
        if self.mm is not None:
            try:
                size = self.mm.size()  # fstat of the mapped file, whatever its name is now
            except (OSError, ValueError):
                return None
            if size < self.need:
                return f"truncated to {size} bytes, its header promises {self.need}"
        return None

    def change(self) -> str | None:
        """How the file at this path differs from the one opened, in words; None if it does not."""
        try:
            return self.stamp.difference(FileStamp.of(os.stat(self.path)))
        except OSError:
            return "removed"


def advise_sequential(arr: np.ndarray) -> None:
    """Tell the kernel a map is read front to back: larger read-ahead, and its pages may
    be reclaimed early, which is what a stream over an event bigger than RAM wants."""
    mm = getattr(arr, "_mmap", None)
    if mm is not None and hasattr(mmap, "MADV_SEQUENTIAL"):
        try:
            mm.madvise(mmap.MADV_SEQUENTIAL)
        except (OSError, ValueError):  # an advice, never a reason to fail
            pass


# ---------------------------------------------------------------- domains and decoders


@dataclass(frozen=True)
class Domains:
    """Compression domains from ``fdom.npy`` / ``idom.npy``."""

    center: np.ndarray  # float32 (3,)
    extent: np.float32
    t0: np.float32
    tmax: np.float32
    wl_low: np.float32
    wl_range: np.float32
    maxrec: int
    maxbounce: int

    @classmethod
    def from_arrays(cls, fdom: np.ndarray, idom: np.ndarray, path: Path) -> "Domains":
        extent, tmax, wl_range = fdom[0, 0, 3], fdom[1, 0, 1], fdom[2, 0, 3]
        for name, v in (("extent fdom[0,0,3]", extent), ("tmax fdom[1,0,1]", tmax),
                        ("wavelength range fdom[2,0,3]", wl_range)):
            if not np.isfinite(v) or v <= 0:
                raise InputError(f"{path / 'fdom.npy'}: {name} = {v} must be finite and > 0")
        maxrec = int(idom[0, 0, 3])
        if maxrec <= 0 or maxrec > 16:
            raise InputError(f"{path / 'idom.npy'}: maxrec idom[0,0,3] = {maxrec} must be in 1..16")
        return cls(fdom[0, 0, :3].copy(), extent, fdom[1, 0, 0], tmax, fdom[2, 0, 0], wl_range,
                   maxrec, int(idom[0, 0, 2]))

    # Bins of one stored count, float64, as the exact arithmetic of section 5 uses them.
    @property
    def pos_bin(self) -> float:
        return float(self.extent) / 32767.0

    @property
    def time_bin(self) -> float:
        return float(self.tmax) / 32767.0

    pol_bin: float = field(default=1.0 / 127.0, init=False)

    # Compression "eps" of section 2, the unit of the cuts.
    @property
    def eps_pos(self) -> float:
        return float(self.extent) * 2.0 / 65535.0

    @property
    def eps_t(self) -> float:
        return float(self.tmax) * 2.0 / 65535.0

    eps_pol: float = field(default=2.0 / 255.0, init=False)


class Event:
    """One event folder, memory-mapped. Per-photon arrays are already ``--msli``-sliced.

    Attributes ``ox``, ``rx``, ``ph`` (and ``ps``, ``rs``, ``gs`` when present) are the
    raw arrays; ``seqhis`` is ``ph[:, 0, 0]``. Decoded float32 values come from
    :meth:`positions`, :meth:`times`, :meth:`polarizations`, :meth:`wavelengths` for
    just the photons asked for.
    """

    def __init__(self, path, msli=None):
        self.path = Path(path)
        problem = path_problem(self.path, "folder")
        if problem:
            raise InputError(f"{self.path}: {problem}")
        self.msli = parse_msli(msli)
        self.files: list[WatchedFile] = []
        self.fdom = self._open(self.path / "fdom.npy", *LAYOUT["fdom"][:2], whole=True)
        self.idom = self._open(self.path / "idom.npy", *LAYOUT["idom"][:2], whole=True)
        self.domains = Domains.from_arrays(self.fdom, self.idom, self.path)
        maxrec = self.domains.maxrec
        arrays = {}
        for name, (dtype, tail, _per_photon, required) in LAYOUT.items():
            if name in ("fdom", "idom"):
                continue
            file = self.path / f"{name}.npy"
            if not required and not os.path.lexists(file):
                arrays[name] = None
                continue
            tail = tuple(maxrec if t is None else t for t in tail)
            arrays[name] = self._open(file, dtype, tail)
            advise_sequential(arrays[name])
        n_full = len(arrays["ph"])
        for name in PHOTON_ARRAYS:
            if arrays[name] is not None and len(arrays[name]) != n_full:
                raise InputError(f"{self.path / (name + '.npy')}: {len(arrays[name])} photons but "
                                 f"ph.npy has {n_full}")
        self.n_total = n_full
        for name in PHOTON_ARRAYS:
            if arrays[name] is not None:
                arrays[name] = arrays[name][self.msli]
        self.ox, self.rx, self.ph = arrays["ox"], arrays["rx"], arrays["ph"]
        self.ps, self.rs, self.gs = arrays["ps"], arrays["rs"], arrays["gs"]

    def _open(self, path: Path, dtype, tail, whole: bool = False) -> np.ndarray:
        arr, stamp, need = open_npy(path, dtype, tail, whole=whole)
        mm = _mapping(arr)
        self.files.append(WatchedFile(path, stamp, need, mm, guard_map(mm)))
        return arr

    def damage(self) -> list[tuple[Path, str]]:
        """Files whose mapped data can no longer be trusted (truncated, or read past a
        new end), with why; whatever read them must be discarded."""
        return [(f.path, why) for f in self.files if (why := f.damage()) is not None]

    def changes(self) -> list[tuple[Path, str]]:
        """Files replaced, resized or modified since they were opened, with how."""
        return [(f.path, how) for f in self.files if (how := f.change()) is not None]

    def __repr__(self):
        return f"Event({str(self.path)!r}, n={self.n}, maxrec={self.maxrec})"

    def __len__(self):
        return self.n

    @property
    def n(self) -> int:
        return len(self.ph)

    @property
    def maxrec(self) -> int:
        return self.domains.maxrec

    @property
    def file_rows(self) -> range:
        """Row in the files of each (``--msli``-sliced) photon index."""
        return range(self.n_total)[self.msli]

    @property
    def seqhis(self) -> np.ndarray:
        return self.ph[:, 0, 0]

    @property
    def seqmat(self) -> np.ndarray:
        return self.ph[:, 0, 1]

    # -- decoders: float32 arithmetic, as the original did; only for what is asked

    def positions(self, sel=slice(None)) -> np.ndarray:
        """Decoded record positions (k, maxrec, 3) float32 in mm."""
        s = np.asarray(self.rx[sel][..., 0, :3], dtype=np.float32)
        d = self.domains
        return s * d.extent / np.float32(32767) + d.center

    def times(self, sel=slice(None)) -> np.ndarray:
        """Decoded record times (k, maxrec) float32 in ns."""
        s = np.asarray(self.rx[sel][..., 0, 3], dtype=np.float32)
        d = self.domains
        return s * d.tmax / np.float32(32767) + d.t0

    def _record_bytes(self, sel) -> np.ndarray:
        q = np.ascontiguousarray(self.rx[sel][..., 1, :])
        return q.view(np.uint8)  # (k, maxrec, 8) bytes: px py pz wl, material/flag bytes

    def polarizations(self, sel=slice(None)) -> np.ndarray:
        """Decoded record polarizations (k, maxrec, 3) float32."""
        u = self._record_bytes(sel)[..., :3].astype(np.float32)
        return u / np.float32(127) - np.float32(1)

    def wavelengths(self, sel=slice(None)) -> np.ndarray:
        """Decoded record wavelengths (k, maxrec) float32 in nm."""
        u = self._record_bytes(sel)[..., 3].astype(np.float32)
        d = self.domains
        return u * d.wl_range / np.float32(255) + d.wl_low


def tag_folders(base, pfx, det, src, tag) -> tuple[Path, Path]:
    """``{base}/{pfx}/evt/{det}/{src}/{tag}`` and ``-{tag}``, like the original tools."""
    tag = str(tag).lstrip("-")
    root = Path(base) / pfx / "evt" / det / src
    return root / tag, root / f"-{tag}"


class EventPair:
    """Event A (GPU, tag N) and event B (Geant4 reference, tag -N) of one comparison."""

    #: False: a change of an input during a run is an error; True: a warning (``changed``)
    allow_changing_input: bool = False

    def __init__(self, a: Event, b: Event):
        self.a, self.b = a, b
        self.changed: list[str] = []  # changes seen and allowed, for the warning of the result
        if a.n_total != b.n_total or a.n != b.n:  # a slice must not hide a mismatch
            raise InputError(f"A and B differ in photon count: {a.path / 'ph.npy'} has {a.n_total}, "
                             f"{b.path / 'ph.npy'} has {b.n_total}")
        if a.maxrec != b.maxrec:
            raise InputError(f"A and B differ in maxrec: {a.path / 'idom.npy'} has {a.maxrec}, "
                             f"{b.path / 'idom.npy'} has {b.maxrec}")
        if a.fdom.tobytes() != b.fdom.tobytes():  # bytes: a NaN in an unused slot is still equal
            raise InputError(f"A and B differ in domains: {a.path / 'fdom.npy'} != {b.path / 'fdom.npy'}; "
                             "records compressed on different domains cannot be compared")

    @classmethod
    def open(cls, a_dir, b_dir, msli=None) -> "EventPair":
        return cls(Event(a_dir, msli), Event(b_dir, msli))

    @classmethod
    def from_tag(cls, base, pfx, det, src, tag, msli=None) -> "EventPair":
        """Open the pair at :func:`tag_folders`."""
        return cls.open(*tag_folders(base, pfx, det, src, tag), msli)

    @property
    def n(self) -> int:
        return self.a.n

    @property
    def domains(self) -> Domains:
        return self.a.domains

    def __repr__(self):
        return f"EventPair(a={self.a.path}, b={self.b.path}, n={self.n})"

    # -- inputs that change while they are read (docs/reliability.md)

    def check_unchanged(self, allow_changing_input: bool | None = None) -> list[str]:
        """Raise :class:`InputChangedError` when an input was truncated under its map (always)
        or replaced, resized or modified since it was opened (unless allowed, by the
        argument or else by ``self.allow_changing_input``: then the change is noted in
        ``changed`` and returned).

        A few ``stat`` calls: cheap enough for the engines to call before every chunk.
        """
        self.check_readable()
        allow = self.allow_changing_input if allow_changing_input is None else allow_changing_input
        changes = self.a.changes() + self.b.changes()
        if changes and not allow:
            path, how = changes[0]
            raise InputChangedError(f"{path}: changed while being read ({how}), so the tables could mix two "
                                    "versions of the data and none was computed; rerun once the file is "
                                    "complete, or pass --allow-changing-input (allow_changing_input=True) "
                                    "to get them with a warning")
        changes = [f"{path}: {how}" for path, how in changes]
        self.changed += [c for c in changes if c not in self.changed]
        return changes

    def check_readable(self) -> None:
        """Raise :class:`InputChangedError` when an input was truncated under its map, or
        pages past a new end were read (as zeros, by the SIGBUS guard): whatever was
        computed from the maps since is not the data and must be discarded."""
        if interrupt.pending():  # a Ctrl-C that Python dropped in a finalizer (photonab.interrupt)
            raise KeyboardInterrupt
        damaged = self.a.damage() + self.b.damage()
        if damaged:
            path, why = damaged[0]
            raise InputChangedError(f"{path}: changed while being read ({why}); the result was discarded "
                                    "and no table computed; rerun once the file is complete")

    def checked(self, chunks):
        """``chunks`` (e.g. photon ranges) as they are, with :meth:`check_unchanged` before
        each one and after the last: an engine's chunk loop reads ``for c in pair.checked(...)``."""
        for chunk in chunks:
            self.check_unchanged()
            yield chunk
        self.check_unchanged()

    @contextlib.contextmanager
    def reading(self, allow_changing_input: bool = False):
        """A comparison of this pair: inputs are checked when it ends, and an error
        raised while an input was changing is reported as that change (the data the
        error came from is not the data that was opened)."""
        before = self.allow_changing_input
        self.allow_changing_input = bool(allow_changing_input)
        try:
            try:
                yield self
            except Exception as exc:
                if isinstance(exc, InputChangedError):
                    raise
                try:  # an input that changed explains the error: say which, and the error
                    self.check_unchanged(allow_changing_input=False)
                except InputChangedError as changed:
                    raise InputChangedError(f"{changed}; the error it caused: {exc}") from exc
                raise
            self.check_unchanged()
        finally:
            self.allow_changing_input = before


def changed_input_warning(changes) -> str | None:
    """The loud line a result carries when inputs changed while they were read (and the
    caller allowed it); None when nothing changed."""
    changes = list(changes)
    if not changes:
        return None
    return ("WARNING: INPUT CHANGED WHILE BEING READ (--allow-changing-input): these tables may mix two "
            "versions of the data: " + "; ".join(changes))
