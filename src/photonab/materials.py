"""Material histories: the seqmat code ``ph[:, 0, 1]``, one material index per step.

seqmat is built like seqhis (one nibble per step, lowest first), but a nibble is the
material index of the step: 1-based into the geometry's material list, 0 = no step.
The material table counts photons per seqmat code in A and B with the history
table's arithmetic (ordering, chi-square, ratios: :class:`photonab.tables.HistoryTable`)
and labels a code by material names where the event folder provides them, otherwise
by the indices, e.g. ``1 2 2 3`` (docs/analysis.md, section 3).

Material names: the original read them from its geocache, ``GItemList/GMaterialLib.txt``
(one name per line, material k on line k), with optional abbreviations in
``GMaterialLib/GPropertyLibMetadata.json`` (``{"abbrev": {name: abbr}}``). photonab looks
for that file, or a plain ``GMaterialLib.txt`` or ``materials.txt`` of the same form, in
the event folder and then in its parent (the folder holding both tags).

Counting: :func:`count_histories_and_materials` counts seqhis and seqmat in one
compiled pass over ``ph`` (``cyext.count_two``): the two words of a photon share a cache
line, so the material table costs no extra pass.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engines.base import HistoryCounts
from .errors import InputError
from .tables import HistoryTable

#: where material names are looked for, relative to the event folder and its parent
MATERIAL_FILES = ("GItemList/GMaterialLib.txt", "GMaterialLib.txt", "materials.txt")
#: abbreviations, relative to the folder holding GItemList/
ABBREV_FILE = "GMaterialLib/GPropertyLibMetadata.json"
#: the original's c2/ndf levels (WARNING, ERROR, FATAL) and its dropout rule
C2MAX = (1.5, 2.0, 2.5)
MAX_STEPS = 16
_CHUNK = 1 << 22


# ---------------------------------------------------------------- names


@dataclass(frozen=True)
class MaterialNames:
    """Material names of a geometry: ``names[k - 1]`` is material index k."""

    names: tuple[str, ...]
    path: Path | None = None
    abbreviations: tuple[str, ...] | None = None  # same order as names

    def __len__(self):
        return len(self.names)

    def name(self, index: int, abbreviate: bool = False) -> str:
        """Name of material ``index`` (its number when out of the list)."""
        table = self.abbreviations if abbreviate and self.abbreviations else self.names
        return table[index - 1] if 1 <= index <= len(table) else str(index)

    def index(self, token: str) -> int:
        """Material index of a name, an abbreviation or a number (names case-insensitive)."""
        tok = str(token).strip()
        if tok.isdigit():
            k = int(tok)
            if not 0 < k < 16:
                raise InputError(f"material {tok!r}: a seqmat nibble is 1..15")
            return k
        for table in (self.names, self.abbreviations or ()):
            for k, n in enumerate(table, start=1):
                if n.lower() == tok.lower():
                    return k
        where = f" in {self.path}" if self.path else ""
        raise InputError(f"unknown material {tok!r}{where}; materials are {', '.join(self.names)}")


def read_material_names(path) -> MaterialNames:
    """Read a ``GMaterialLib.txt`` (one material name per line, material k on line k).

    Abbreviations are read from ``GMaterialLib/GPropertyLibMetadata.json`` beside the
    ``GItemList`` folder when the file sits in one and the JSON exists.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read material names ({exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = tuple(line.strip() for line in lines)
    if not names or any(not n for n in names):
        raise InputError(f"{path}: material names must be one non-empty name per line")
    if len(set(names)) != len(names):
        raise InputError(f"{path}: material names repeat")
    abbreviations = None
    meta = path.parent.parent / ABBREV_FILE if path.parent.name == "GItemList" else None
    if meta is not None and meta.is_file():
        try:
            js = json.loads(meta.read_text())
            js = js.get("abbrev", js)
            abbreviations = tuple(str(js.get(n, n)) for n in names)
        except (OSError, ValueError, AttributeError) as exc:
            raise InputError(f"{meta}: cannot read material abbreviations ({exc})") from None
    return MaterialNames(names, path, abbreviations)


def find_material_names(folder) -> MaterialNames | None:
    """Material names for an event folder (:data:`MATERIAL_FILES` in it, then in its
    parent), or None when neither has them."""
    folder = Path(folder)
    for root in (folder, folder.parent):
        for rel in MATERIAL_FILES:
            if (root / rel).is_file():
                return read_material_names(root / rel)
    return None


def _names(names, folder=None) -> MaterialNames | None:
    if names == "auto":
        return None if folder is None else find_material_names(folder)
    if names is None or isinstance(names, MaterialNames):
        return names
    if isinstance(names, (str, Path)):
        return read_material_names(names)
    return MaterialNames(tuple(names))


# ---------------------------------------------------------------- labels


def material_steps(code) -> list[int]:
    """Material index of each step, first step first."""
    code, out = int(code), []
    while code:
        out.append(code & 0xF)
        code >>= 4
    return out


def material_label(code, names: MaterialNames | None = None, abbreviate: bool = False) -> str:
    """``0x3221`` -> ``'Air Glass Glass Rock'`` with names, ``'1 2 2 3'`` without."""
    steps = material_steps(code)
    if names is None:
        return " ".join(str(k) for k in steps)
    return " ".join(names.name(k, abbreviate) for k in steps)


def material_code(label: str, names: MaterialNames | None = None) -> int:
    """Parse a material label (names, abbreviations or indices per step) back to its code."""
    tokens = label.split()
    if not tokens or len(tokens) > MAX_STEPS:
        raise InputError(f"material history {label!r}: expected 1..{MAX_STEPS} steps")
    code = 0
    for k, tok in enumerate(tokens):
        nib = (names or MaterialNames(())).index(tok)
        code |= nib << (4 * k)
    return code


def contains_materials(codes, materials, names: MaterialNames | None = None) -> np.ndarray:
    """Bool per code: does its material history pass through any of ``materials``
    (names, abbreviations or indices; a string is split on spaces and commas)?"""
    if isinstance(materials, str):
        materials = materials.replace(",", " ").split()
    codes = np.asarray(codes, dtype=np.uint64)
    out = np.zeros(codes.shape, dtype=bool)
    wanted = {(names or MaterialNames(())).index(m) for m in materials or ()}
    for k in range(MAX_STEPS):
        nib = (codes >> np.uint64(4 * k)) & np.uint64(0xF)
        for w in wanted:
            out |= nib == np.uint64(w)
    return out


# ---------------------------------------------------------------- counting


def count_materials(pair, *, chunk: int = _CHUNK, n_threads=None) -> HistoryCounts:
    """Photons per seqmat code in A and B (compiled ``HistoryCounter`` on the strided
    ``ph[:, 0, 1]`` views: no copy)."""
    from .engines.compiled import import_cyext
    counter = import_cyext().HistoryCounter()
    for start in range(0, pair.n, chunk):
        counter.add(pair.a.seqmat, pair.b.seqmat, start, min(start + chunk, pair.n), n_threads)
    codes, counts = counter.result()
    return HistoryCounts.from_unsorted(codes, counts[:, 0], counts[:, 1])


def count_histories_and_materials(pair, *, chunk: int = _CHUNK, n_threads=None) -> tuple[HistoryCounts, HistoryCounts]:
    """(seqhis counts, seqmat counts) of A and B in one compiled pass over ``ph``."""
    from .engines.compiled import import_cyext
    cyext = import_cyext()
    his, mat = cyext.HistoryCounter(), cyext.HistoryCounter()
    a, b = pair.a, pair.b
    for start in range(0, pair.n, chunk):
        cyext.count_two(his, mat, a.seqhis, b.seqhis, a.seqmat, b.seqmat, start,
                        min(start + chunk, pair.n), n_threads)
    out = []
    for counter in (his, mat):
        codes, counts = counter.result()
        out.append(HistoryCounts.from_unsorted(codes, counts[:, 0], counts[:, 1]))
    return out[0], out[1]


def count_materials_reference(pair) -> HistoryCounts:
    """Numpy reference of :func:`count_materials`."""
    sa, sb = np.asarray(pair.a.seqmat), np.asarray(pair.b.seqmat)
    codes = np.union1d(sa, sb)
    a = np.searchsorted(codes, sa)
    b = np.searchsorted(codes, sb)
    return HistoryCounts(codes.astype(np.uint64), np.bincount(a, minlength=len(codes)).astype(np.int64),
                         np.bincount(b, minlength=len(codes)).astype(np.int64))


# ---------------------------------------------------------------- the table


class MaterialTable(HistoryTable):
    """Photons per material history in A and B: the history table's arithmetic and
    level (a+b descending then code, chi-square rows with a+b > 30, c2/ndf against
    c2max, at least ERROR for a dropout row; docs/verdict.md), labelled by material
    names (docs/analysis.md)."""

    table = "materials"

    def __init__(self, counts: HistoryCounts, names: MaterialNames | None = None, c2max=C2MAX):
        super().__init__(counts, c2max)
        self.names = names

    def labels(self, rows=None, abbreviate: bool = False) -> list[str]:
        """Material label of every row (or of ``rows``)."""
        codes = self.codes if rows is None else self.codes[rows]
        return [material_label(c, self.names, abbreviate) for c in codes]

    def skip_mask(self, skip) -> np.ndarray:
        """True for rows whose material history passes through any of ``skip``."""
        if hasattr(skip, "mask"):  # a photonab.analysis.View (the CLI's --skip/--order)
            return skip.mask(self)
        return contains_materials(self.codes, skip, self.names)

    def __repr__(self):
        return (f"<MaterialTable {len(self)} material histories, c2/ndf {self.c2p:.3f}, "
                f"level {self.level}>")


def material_table(pair, *, names="auto", engine: str = "cython", c2max=C2MAX, **kw) -> MaterialTable:
    """The material table of an :class:`~photonab.events.EventPair`.

    ``names``: "auto" (:func:`find_material_names` on A's folder), a path to a names
    file, a :class:`MaterialNames`, a sequence of names, or None (indices).
    ``engine``: "cython" (compiled pass) or "numpy" (reference).
    """
    if engine not in ("cython", "numpy"):
        raise InputError(f"unknown material engine {engine!r}; engines are cython, numpy")
    counts = count_materials(pair, **kw) if engine == "cython" else count_materials_reference(pair)
    return MaterialTable(counts, _names(names, pair.a.path), c2max)
