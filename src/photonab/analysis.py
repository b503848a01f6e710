"""Wiring of the analysis modules into a comparison: ``--skip`` items, ``--order``,
``--cmx``, ``--select``, the material table and the migration table (docs/analysis.md,
section 5 "On the command line").

A :class:`View` says which rows a text view shows and in which order; it is passed
where the renderers take ``skip`` (a plain string is read as a View with only
``--skip``). The hidden-row counters of docs/verdict.md count the rows a View hides,
whichever of its options hid them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .flags import ERAS, LEGACY_ERA
from .patterns import HistoryPattern, iter_selected, parse_pattern

#: row orders of the history and material tables (docs/analysis.md, section 5)
ORDERS = ("sum", "max", "a", "b")
#: flags that start a history (slot 0): an item starting with one of them is a pattern
SOURCE_FLAGS = ("CERENKOV", "SCINTILLATION", "TORCH", "G4GUN")
_MAT_PREFIX = "mat:"


def _steps_of(era: str) -> tuple[set[str], set[str]]:
    table = ERAS[era]
    steps = {a.upper() for a in table.nibble}
    sources = {table.abbr[nib].upper() for nib, name in enumerate(table.names, start=1) if name in SOURCE_FLAGS}
    return steps, sources


@dataclass
class SkipRule:
    """``--skip`` parsed (docs/analysis.md, section 5): ``steps`` (rows passing through
    any of them are hidden), ``pattern`` (rows whose history matches are hidden) and
    ``materials`` (material-table rows passing through any of them are hidden)."""

    text: str = ""
    steps: tuple[str, ...] = ()
    pattern: HistoryPattern | None = None
    materials: tuple[str, ...] = ()
    era: str = LEGACY_ERA

    def __bool__(self):
        return bool(self.steps or self.pattern is not None or self.materials)

    def history_mask(self, codes) -> np.ndarray:
        """True for history codes (uint64) that this rule hides."""
        codes = np.asarray(codes, np.uint64)
        out = np.zeros(len(codes), bool)
        if self.steps:
            table = ERAS[self.era]
            wanted = [table.nibble[s] for s in self.steps]
            for k in range(16):
                nib = (codes >> np.uint64(4 * k)) & np.uint64(0xF)
                for w in wanted:
                    out |= nib == np.uint64(w)
        if self.pattern is not None:
            out |= self.pattern.match(codes)
        return out

    def material_mask(self, table) -> np.ndarray:
        """True for rows of a MaterialTable that this rule hides."""
        from .materials import contains_materials
        if not self.materials:
            return np.zeros(len(table.codes), bool)
        return contains_materials(table.codes, list(self.materials), table.names)


def _is_material(item: str, names) -> bool:
    if names is None:
        return False
    try:
        for tok in item.split():
            if tok.isdigit():
                return False
            names.index(tok)
    except InputError:
        return False
    return True


def parse_skip(text, era: str = LEGACY_ERA, material_names=None) -> SkipRule:
    """Read a ``--skip`` value. Items are separated by ``,``; each item, in this order:

    1. ``mat:M1 M2`` -> materials (names, abbreviations or indices);
    2. one step abbreviation (any case), or several whose first is not a source flag
       (TO, CK, SI, GN): steps, e.g. ``SC``, ``SC AB RE`` -> rows passing through any of them;
    3. every token a material name or abbreviation of the event folder's list -> materials;
    4. otherwise a history pattern (docs/analysis.md, section 1): ``TO BT BT SA``,
       ``TO BR ..``, ``.6ccd`` -> rows whose history matches.
    """
    if isinstance(text, SkipRule):
        return text
    if text is None:
        text = ""
    if not isinstance(text, str):  # a sequence of step tokens (the old API)
        text = " ".join(str(t) for t in text)
    steps_known, sources = _steps_of(era)
    steps, materials, patterns = [], [], []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        tokens = item.split()
        if item.lower().startswith(_MAT_PREFIX):
            rest = item[len(_MAT_PREFIX):].split()
            if not rest:
                raise InputError(f"--skip {text!r}: '{item}' names no material")
            materials += rest
        elif all(t.upper() in steps_known for t in tokens) and (len(tokens) == 1 or tokens[0].upper() not in sources):
            steps += [t.upper() for t in tokens]
        elif _is_material(item, material_names):
            materials += tokens
        else:
            patterns.append(item)
    pattern = None
    if patterns:
        try:
            pattern = parse_pattern(", ".join(patterns), era)
        except InputError as exc:
            raise InputError(f"--skip {text!r}: {exc}") from None
    if materials:  # check the names now, not when a table is drawn
        from .materials import MaterialNames
        for m in materials:
            (material_names or MaterialNames(())).index(m)
    return SkipRule(text, tuple(dict.fromkeys(steps)), pattern, tuple(materials), era)


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise InputError(f"--order {order!r}: orders are {', '.join(ORDERS)}")
    return order


def row_order(a, b, codes, order: str = "sum") -> np.ndarray:
    """Row numbers of a history or material table in ``order`` (ties: docs/analysis.md):

    - ``sum``: a+b descending, then code ascending (the tables' own order);
    - ``max``: max(a, b) descending, then a+b descending, then code;
    - ``a``: a descending, then b descending, then code (the original's default);
    - ``b``: b descending, then a descending, then code.
    """
    check_order(order)
    a, b, codes = np.asarray(a, np.int64), np.asarray(b, np.int64), np.asarray(codes, np.uint64)
    if order == "sum":
        return np.lexsort((codes, -(a + b)))
    if order == "max":
        return np.lexsort((codes, -(a + b), -np.maximum(a, b)))
    if order == "a":
        return np.lexsort((codes, -b, -a))
    return np.lexsort((codes, -a, -b))


@dataclass
class View:
    """What a text view shows: rows hidden by ``--skip`` (:class:`SkipRule`) and by
    ``--cmx`` (history rows with c2 < cmx), the order of the history and material
    tables, and the migration rows to show. Renderers take it as ``skip``."""

    skip: SkipRule = field(default_factory=SkipRule)
    order: str = "sum"
    cmx: float | None = None
    migration_rows: int | None = 10

    def __post_init__(self):
        check_order(self.order)
        if self.cmx is not None and not np.isfinite(self.cmx):
            raise InputError(f"--cmx {self.cmx}: give a finite chi-square")

    @property
    def option(self) -> str:
        """The option name(s) that hide rows, for the footers."""
        names = [n for n, on in (("--skip", bool(self.skip)), ("--cmx", self.cmx is not None)) if on]
        return "/".join(names) or "--skip"

    def option_for(self, table) -> str:
        """The option name(s) that hide rows of ``table`` (--cmx hides only history rows)."""
        from .materials import MaterialTable
        from .tables import HistoryTable
        if isinstance(table, HistoryTable) and not isinstance(table, MaterialTable):
            return self.option
        return "--skip"

    def __bool__(self):
        return bool(self.skip) or self.cmx is not None

    def mask(self, table) -> np.ndarray:
        """True for the rows of ``table`` (history, material or deviation) that are hidden."""
        from .materials import MaterialTable
        from .tables import HistoryTable
        if isinstance(table, MaterialTable):
            out = self.skip.material_mask(table)
        else:
            out = self.skip.history_mask(table.codes)
        if self.cmx is not None and isinstance(table, HistoryTable) and not isinstance(table, MaterialTable):
            out = out | (table.c2 < self.cmx)
        return out

    def order_of(self, table) -> np.ndarray:
        """Row numbers in display order."""
        from .tables import HistoryTable
        if isinstance(table, HistoryTable) and self.order != "sum":
            return row_order(table.a, table.b, table.codes, self.order)
        return np.arange(len(table))


def as_view(skip) -> View | None:
    """A View for a renderer's ``skip`` argument (None when it is not one and is empty)."""
    if isinstance(skip, View):
        return skip
    return None


# ---------------------------------------------------------------- --select


def select_counts(counts, pattern: HistoryPattern, what: str = "--select", required: bool = True):
    """The rows of HistoryCounts whose code matches ``pattern`` (an InputError when none
    and ``required``)."""
    from .engines.base import HistoryCounts
    keep = pattern.match(counts.codes)
    if required and not keep.any():
        raise InputError(f"{what} {pattern.text!r}: no history of A or B matches")
    return HistoryCounts(counts.codes[keep], counts.a[keep], counts.b[keep])


def select_aggregate(agg, pattern: HistoryPattern):
    """A DeviationAggregate with only the histories matching ``pattern``."""
    return agg.rows(pattern.match(agg.codes))


def selected_material_counts(pair, pattern: HistoryPattern, codes, *, n_threads=None):
    """Photons per seqmat code among the photons whose history matches ``pattern`` (A by
    A's, B by B's): the pattern is matched on the distinct codes and the photons marked
    by the compiled selection kernel, chunk by chunk; the seqmat of the marked photons
    is counted with numpy."""
    from .engines.base import HistoryCounts
    sides = []
    for event in (pair.a, pair.b):
        parts_c, parts_n = [], []
        for idx in iter_selected(event.seqhis, pattern, codes=codes, era=pattern.era, n_threads=n_threads):
            if len(idx):
                u, n = np.unique(np.asarray(event.seqmat[idx]), return_counts=True)
                parts_c.append(u)
                parts_n.append(n)
        if parts_c:
            c = np.concatenate(parts_c)
            u, inv = np.unique(c, return_inverse=True)
            sides.append((u, np.bincount(inv, weights=np.concatenate(parts_n)).astype(np.int64)))
        else:
            sides.append((np.zeros(0, np.uint64), np.zeros(0, np.int64)))
    codes_all = np.union1d(sides[0][0], sides[1][0]).astype(np.uint64)
    a = np.zeros(len(codes_all), np.int64)
    b = np.zeros(len(codes_all), np.int64)
    a[np.searchsorted(codes_all, sides[0][0])] = sides[0][1]
    b[np.searchsorted(codes_all, sides[1][0])] = sides[1][1]
    return HistoryCounts(codes_all, a, b)


def selected_aligned(pair, pattern: HistoryPattern, codes, *, n_threads=None) -> int:
    """Aligned photons (same history in A and B) whose history matches ``pattern``."""
    pat = pattern if pattern is not None else None
    return sum(len(idx) for idx in iter_selected(pair.a.seqhis, pat, pair.b.seqhis, pat, migrated=-1,
                                                 codes=codes, n_threads=n_threads))


def select_migrations(table, pair, pattern: HistoryPattern, codes, *, first: int, n_threads=None):
    """The migration table restricted to the pairs whose A history or B history matches
    ``pattern``: rows filtered on their codes, and the migrated photons counted (and the
    first ``first`` listed) by two compiled selection passes (A side, B side) whose
    indices are united chunk by chunk."""
    from .migration import MigrationTable
    keep = pattern.match(table.codes_a) | pattern.match(table.codes_b)
    n_sel, lowest = 0, []
    sa, sb = pair.a.seqhis, pair.b.seqhis
    gen_a = iter_selected(sa, pattern, sb, None, migrated=1, codes=codes, era=pattern.era, n_threads=n_threads)
    gen_b = iter_selected(sa, None, sb, pattern, migrated=1, codes=codes, era=pattern.era, n_threads=n_threads)
    for ia, ib in zip(gen_a, gen_b):  # the same chunk boundaries
        both = np.union1d(ia, ib)
        n_sel += len(both)
        room = first - sum(len(x) for x in lowest)
        if room > 0:
            lowest.append(both[:room])
    counts = table.counts[keep]
    rest = n_sel - int(counts.sum())
    # pairs beyond the table's kept rows (only when it overflowed its bound) are not filtered:
    # their number is an upper bound then (docs/analysis.md, section 5)
    other_pairs = table.other_pairs if rest else 0
    return MigrationTable(table.n, n_sel, np.concatenate(lowest) if lowest else np.zeros(0, np.int64),
                          table.codes_a[keep], table.codes_b[keep], counts, table.first[keep],
                          other_pairs, rest, table.era, table.max_pairs, table.passes + 2)


def trim_migrations(table, top: int | None):
    """The first ``top`` rows of a migration table, the rest summed into other_pairs/other_photons."""
    from .migration import MigrationTable
    if top is None or top >= len(table):
        return table
    return MigrationTable(table.n, table.n_migrated, table.first_migrated, table.codes_a[:top],
                          table.codes_b[:top], table.counts[:top], table.first[:top],
                          table.other_pairs + len(table) - top,
                          table.other_photons + int(table.counts[top:].sum()), table.era, table.max_pairs,
                          table.passes)


def histories_and_materials(engine, pair, progress):
    """(seqhis counts, seqmat counts): the cython engine counts both in one compiled
    pass (``materials.count_histories_and_materials`` kernel, block by block with the
    input checks of the engine); other engines count the histories their own way and
    the materials with the numpy reference."""
    from .engines.base import HistoryCounts
    from .materials import count_materials_reference
    if getattr(engine, "name", None) == "cython":
        cyext = engine.cyext
        his, mat = cyext.HistoryCounter(), cyext.HistoryCounter()
        a, b = pair.a, pair.b
        engine.stream(pair, progress, "histories", lambda start, stop: cyext.count_two(
            his, mat, a.seqhis, b.seqhis, a.seqmat, b.seqmat, start, stop, engine.n_threads))
        out = []
        for counter in (his, mat):
            codes, counts = counter.result()
            out.append(HistoryCounts.from_unsorted(codes, counts[:, 0], counts[:, 1]))
        return out[0], out[1]
    counts = engine.histories(pair, progress=progress)
    return counts, count_materials_reference(pair)


