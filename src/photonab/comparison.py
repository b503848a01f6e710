"""Compare event A with event B: the history table and the four deviation tables.

``compare(pair)`` runs an engine and returns a :class:`Comparison`: the tables, their
levels and the return code (docs/verdict.md). It prints as text, converts to JSON
(:mod:`photonab.render`) and chases the photons behind a bad row (:mod:`photonab.chase`).

Start-up (docs/kernels.md, "Start-up and the whole process"): ``from photonab import
compare`` loads this module, the cuts and the tables (the defaults of ``compare``) and
numpy with cyext; the engines, the events and the chase load when a comparison runs.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .cuts import OX_CUTS, TABLES, Cuts
from .errors import InputError
from .tables import C2MAX, DeviationTable, HistoryTable, check_c2max

if TYPE_CHECKING:  # imported where used, when a comparison runs (module docstring)
    from .chase import Chase
    from .engines.base import Engine, HistoryCounts
    from .events import EventPair

#: tables beyond the deviation tables that ``tables`` may ask for (docs/analysis.md)
EXTRA_TABLES = ("materials",)


def tqdm_progress(total, desc):
    """Progress factory drawing a tqdm bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm
    unit = "photon" if desc in ("photons", "histories", "deviations") else "row"
    return tqdm(total=total, desc=f"{desc:>12}", unit=unit, unit_scale=True, disable=None, leave=False,
                dynamic_ncols=True)


def format_slice(s: slice) -> str:
    """``slice(0, 100000)`` -> ``'0:100000'``; the full slice -> ``''``."""
    if s.start is None and s.stop is None and s.step in (None, 1):
        return ""
    parts = ["" if v is None else str(v) for v in (s.start, s.stop)]
    return ":".join(parts + ([str(s.step)] if s.step not in (None, 1) else []))


@dataclass
class Comparison:
    """The result of comparing A with B."""

    pair: EventPair
    engine: str
    cuts: Cuts
    history_counts: HistoryCounts
    history: HistoryTable
    tables: dict[str, DeviationTable]
    seconds: dict[str, float] = field(default_factory=dict)
    #: the engine object that made the tables (chases go through it)
    runner: Engine | None = field(default=None, repr=False, compare=False)
    #: the material table (``tables`` with "materials"), the migration table, the --select pattern
    materials: object = None
    migration: object = None
    select: str | None = None

    @property
    def rc(self) -> int:
        """Return code: one bit per failing table (rpost 1, rtime 2, rpol 4, ox 8, history 16;
        the material table shares the history bit, docs/verdict.md)."""
        rc = self.history.rc | (self.materials.rc if self.materials is not None else 0)
        return rc + sum(t.rc for t in self.tables.values())

    @property
    def aligned(self) -> int:
        """Photons with the same history in A and B."""
        if not self.tables:  # only the material table asked for
            return self.history.aligned
        return next(iter(self.tables.values())).nitem_total

    @property
    def msli(self) -> str:
        return format_slice(self.pair.a.msli)

    def __getitem__(self, table: str) -> DeviationTable:
        return self.tables[table]

    def same_tables(self, other: "Comparison") -> bool:
        """Identical history counts and deviation aggregates (engines must agree exactly)."""
        h, o = self.history, other.history
        return (np.array_equal(h.codes, o.codes) and np.array_equal(h.a, o.a) and np.array_equal(h.b, o.b)
                and self.tables.keys() == other.tables.keys()
                and all(self.tables[t].raw.equals(other.tables[t].raw) for t in self.tables))

    def render(self, rows: int | None = 10, history_rows: int | None = 20, skip=()) -> str:
        from .render.text import render_comparison
        return render_comparison(self, rows=rows, history_rows=history_rows, skip=skip)

    def __str__(self):
        return self.render()

    def __repr__(self):
        levels = " ".join(f"{t}:{tab.level}" for t, tab in self.tables.items())
        return (f"<Comparison {self.engine} n={self.pair.n} histories={len(self.history)} "
                f"c2p={self.history.c2p:.3f} history:{self.history.level} {levels} rc={self.rc}>")

    def _repr_pretty_(self, p, cycle):  # IPython shows the tables, not the repr
        p.text(repr(self) if cycle else self.render())

    def to_dict(self) -> dict:
        """Every number of every table (docs/json.md), NaN and inf as None."""
        from .render.json import comparison_dict, plain
        return plain(comparison_dict(self))

    def to_json(self, path=None) -> str | None:
        """Strict JSON text of :meth:`to_dict`; with ``path`` written there instead, the
        rows streamed in bounded memory, and None returned (docs/json.md)."""
        from .render.json import comparison_dict, write_json
        return write_json(comparison_dict(self), path)

    def chase(self, table: str, history=None, *, row: int | None = None, limit: int = 10,
              level: str | None = "WARNING", engine=None) -> Chase:
        """The most deviant aligned photons of one history in ``table``: give the history
        as a label (``'TO BT BR BT SA'``) or code, or as ``row`` of the table; neither =
        every history. Only photons at or beyond cut ``level`` (None = any deviation),
        with their decoded A and B records. Found by the comparison's engine unless
        ``engine`` (a name or an engine) is given."""
        if table not in self.tables:
            raise InputError(f"table {table!r} was not computed; this comparison has {', '.join(self.tables)}")
        if row is not None:
            rows = self.tables[table]
            if not isinstance(row, (int, np.integer)) or not 0 <= row < len(rows):
                raise InputError(f"{table} has rows 0..{len(rows) - 1}, not {row!r}")
            history = int(rows.codes[row])
        from . import chase as _chase
        eng = engine if engine is not None else (self.runner or self.engine)
        return _chase.chase(self.pair, self.cuts, table, history, limit=limit, level=level, engine=eng)


def check_tables(tables) -> tuple[str, ...]:
    """Each table asked for once, in the order asked; an InputError for anything else."""
    if isinstance(tables, str):
        raise InputError(f"tables must be a sequence of table names such as ({tables!r},), not the string "
                         f"{tables!r}; tables are {', '.join(TABLES)}")
    try:
        tables = tuple(dict.fromkeys(tables))
    except TypeError:
        raise InputError(f"tables must be a sequence of table names ({', '.join(TABLES)}), not {tables!r}") from None
    if not tables:
        raise InputError(f"no table asked for; tables are {', '.join(TABLES)}")
    for t in tables:
        if t not in TABLES + EXTRA_TABLES:
            raise InputError(f"unknown table {t!r}; tables are {', '.join(TABLES + EXTRA_TABLES)}")
    return tables


def check_photons(pair: EventPair) -> None:
    """Nothing compared is not a pass: a pair with no photon (after --msli) is an input error."""
    if pair.n:
        return
    msli = format_slice(pair.a.msli)
    if msli:
        raise InputError(f"{pair.a.path}: nothing to compare: --msli {msli} leaves 0 of the {pair.a.n_total} photons")
    raise InputError(f"{pair.a.path / 'ph.npy'}: nothing to compare: the events have no photons")


@contextlib.contextmanager
def engine_for(engine, n_threads=None):
    """The engine object for ``engine``: one made here by name is closed at the end (a
    dask engine stops its cluster); an engine object passed in is left open."""
    from .engines import get_engine
    from .engines.base import Engine
    if isinstance(engine, str):
        made = get_engine(engine, n_threads=n_threads)
        try:
            yield made
        finally:
            close = getattr(made, "close", None)
            if close is not None:
                close()
        return
    if not isinstance(engine, Engine):
        from .engines import ALL_ENGINES
        raise InputError(f"engine must be a name ({', '.join(ALL_ENGINES)}) or an engine object with "
                         f"histories, deviations and chase, not {engine!r}")
    yield engine


def compare(pair: EventPair, engine="cython", *, tables=TABLES, ox_cuts=OX_CUTS, c2max=C2MAX, n_threads=None,
            progress=False, allow_changing_input=False, select=None, migration=True,
            migration_first: int = 25, select_required: bool = True) -> Comparison:
    """Compare A with B with the named engine (``cython``, ``numpy``, ``select``, ``dask``)
    or an engine object (made by name, it is closed when the comparison ends).

    ``c2max`` are the history table's c2/ndf levels (WARNING, ERROR, FATAL).
    ``progress`` True draws tqdm bars on stderr; a callable ``progress(total, desc)``
    returning a bar (with ``update`` and context-manager use) is used as is. An input
    that changes during the comparison raises InputChangedError, or with
    ``allow_changing_input`` gives tables with a warning (docs/reliability.md).

    ``tables`` may also hold ``"materials"`` (the material table, docs/analysis.md);
    ``select`` (a history pattern) restricts every table to the matching histories (an
    InputError when none matches, unless ``select_required`` is False: empty tables, as
    for one event of a run whose other events match); ``migration`` adds the migration table (its first ``migration_first`` photons).
    """
    from .engines.base import no_progress
    from .events import EventPair
    if not isinstance(pair, EventPair):
        raise InputError(f"compare wants an EventPair (photonab.EventPair.open(a_dir, b_dir)), not {pair!r}")
    tables = check_tables(tables)
    c2max = check_c2max(c2max)
    check_photons(pair)
    from . import analysis
    want_materials = "materials" in tables
    tables = tuple(t for t in tables if t in TABLES)
    pattern = None if select is None else analysis.parse_pattern(select)
    bar = tqdm_progress if progress is True else (progress or no_progress)
    cuts = Cuts.for_domains(pair.domains, ox=ox_cuts)
    with engine_for(engine, n_threads) as eng, pair.reading(allow_changing_input):
        seconds = {}
        t0 = time.perf_counter()
        # the kernels take every aligned history; --select keeps the matching rows afterwards
        one_pass, migrated = getattr(eng, "histories_and_deviations", None), None
        if one_pass is not None and tables and not want_materials:  # ph read once (docs/kernels.md)
            counts, aggregates, migrated = one_pass(pair, cuts, tables=tables, progress=bar,
                                                    migrated=migration_first if migration else None)
            seconds["histories and deviations"] = time.perf_counter() - t0
        else:
            if want_materials:
                counts, mat_counts = analysis.histories_and_materials(eng, pair, bar)
            else:
                counts = eng.histories(pair, progress=bar)
            seconds["histories"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            aggregates = eng.deviations(pair, counts.groups(), cuts, tables=tables, progress=bar) if tables else {}
            seconds["deviations"] = time.perf_counter() - t0
        all_codes = counts.codes
        if pattern is not None:
            counts = analysis.select_counts(counts, pattern, required=select_required)
            aggregates = {t: analysis.select_aggregate(agg, pattern) for t, agg in aggregates.items()}
        extra = _extras(pair, eng, pattern, all_codes, mat_counts if want_materials else None, c2max,
                        migration, migration_first, n_threads, seconds, migrated)
    deviations = {t: DeviationTable(aggregates[t]) for t in tables}
    if deviations:
        aligned = next(iter(deviations.values())).nitem_total
    elif pattern is None and extra["migration"] is not None:
        aligned = extra["migration"].n_aligned
    else:
        aligned = analysis.selected_aligned(pair, pattern, all_codes, n_threads=n_threads)
    return Comparison(pair, eng.name, cuts, counts, HistoryTable(counts, c2max, aligned), deviations, seconds,
                      runner=eng, select=None if pattern is None else pattern.text, **extra)


def _extras(pair, eng, pattern, codes, mat_counts, c2max, migration, first, n_threads, seconds,
            migrated=None) -> dict:
    """The material and migration tables of :func:`compare` (docs/analysis.md, section 5);
    ``migrated``: the migration table's first pass, when the engine's one pass made it."""
    from . import analysis
    from .migration import count_migrations, count_migrations_reference
    threads = getattr(eng, "n_threads", n_threads)
    out = {"materials": None, "migration": None}
    if mat_counts is not None:
        from .materials import MaterialTable, find_material_names  # only with the material table
        if pattern is not None:
            mat_counts = analysis.selected_material_counts(pair, pattern, codes, n_threads=threads)
        out["materials"] = MaterialTable(mat_counts, find_material_names(pair.a.path), c2max)
    if migration:
        t0 = time.perf_counter()
        count = count_migrations_reference if eng.name in ("numpy", "select") else count_migrations
        kw = {} if count is count_migrations_reference else {"n_threads": threads, "counted": migrated}
        table = count(pair.a.seqhis, pair.b.seqhis, first=first, **kw)
        if pattern is not None:
            table = analysis.select_migrations(table, pair, pattern, codes, first=first, n_threads=threads)
        out["migration"] = table
        seconds["migration"] = time.perf_counter() - t0
    return out


def chase(pair: EventPair, cuts: Cuts, table: str, history=None, *, limit: int = 10,
          level: str | None = "WARNING", engine="cython", n_threads=None) -> Chase:
    """See :func:`photonab.chase.chase`."""
    from . import chase as _chase
    return _chase.chase(pair, cuts, table, history, limit=limit, level=level, engine=engine, n_threads=n_threads)
