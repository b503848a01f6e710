"""Compare event A with event B: the history table and the four deviation tables.

``compare(pair)`` runs an engine and returns a :class:`Comparison`, which prints as
text, converts to JSON, and chases the photons behind a bad row.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import report, seqhis
from .cuts import LEVELS, OX_CUTS, RECORD_TABLES, TABLES, Cuts
from .engines import get_engine
from .engines.base import HistoryCounts, no_progress
from .engines.compiled import import_cyext
from .errors import InputError
from .events import EventPair, changed_input_warning
from .tables import DeviationTable, HistoryTable


def tqdm_progress(total, desc):
    """Progress factory drawing a tqdm bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=f"{desc:>12}", unit="photon" if desc in ("histories", "deviations") else "row",
                unit_scale=True, disable=None, leave=False, dynamic_ncols=True)


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

    @property
    def rc(self) -> int:
        """Return code: one bit per failing deviation table (rpost 1, rtime 2, rpol 4, ox 8)."""
        return sum(t.rc for t in self.tables.values())

    def __getitem__(self, table: str) -> DeviationTable:
        return self.tables[table]

    def same_tables(self, other: "Comparison") -> bool:
        """Identical history counts and deviation aggregates (engines must agree exactly)."""
        h, o = self.history, other.history
        return (np.array_equal(h.codes, o.codes) and np.array_equal(h.a, o.a) and np.array_equal(h.b, o.b)
                and self.tables.keys() == other.tables.keys()
                and all(self.tables[t].raw.equals(other.tables[t].raw) for t in self.tables))

    def render(self, rows: int = 10, history_rows: int = 20, skip=()) -> str:
        text = report.render_comparison(self, rows=rows, history_rows=history_rows, skip=skip)
        warning = changed_input_warning(self.pair.changed)  # docs/reliability.md
        return text if warning is None else f"{warning}\n\n{text}\n\n{warning}"

    def __str__(self):
        return self.render()

    def __repr__(self):
        levels = " ".join(f"{t}:{tab.level}" for t, tab in self.tables.items())
        return (f"<Comparison {self.engine} n={self.pair.n} histories={len(self.history)} "
                f"c2p={self.history.c2p:.3f} {levels} rc={self.rc}>")

    def _repr_pretty_(self, p, cycle):  # IPython shows the tables, not the repr
        p.text(repr(self) if cycle else self.render())

    def to_dict(self, rows=None, history_rows=None, skip=()) -> dict:
        deviations = {t: tab.to_dict(rows, skip) for t, tab in self.tables.items()}
        file_rows = self.pair.a.file_rows
        for table in deviations.values():  # worst_photon counts sliced photons; say the file row too
            for row in table["rows"]:
                row["worst_file_row"] = file_rows[row["worst_photon"]] if row["worst_photon"] >= 0 else -1
        return {"a": str(self.pair.a.path), "b": str(self.pair.b.path), "photons": self.pair.n,
                "msli": report.format_slice(self.pair.a.msli), "engine": self.engine, "rc": self.rc,
                "seconds": self.seconds, "history": self.history.to_dict(history_rows, skip),
                "deviations": deviations, "input_changed": list(self.pair.changed)}

    def to_json(self, path=None, **kw) -> str:
        return report.write_json(self.to_dict(**kw), path)

    def chase(self, table: str, history=None, *, row: int | None = None, limit: int = 10,
              level: str | None = "WARNING", n_threads=None) -> "report.Chase":
        """The most deviant aligned photons of one history in ``table``: give the history
        as a label (``'TO BT BR BT SA'``) or code, or as ``row`` of the table; neither =
        every history. Only photons at or beyond cut ``level`` (None = any deviation),
        with their decoded A and B records."""
        if row is not None:
            rows = self.tables[table]
            if not 0 <= row < len(rows):
                raise InputError(f"{table} has rows 0..{len(rows) - 1}, not {row}")
            history = int(rows.codes[row])
        return chase(self.pair, self.cuts, table, history, limit=limit, level=level, n_threads=n_threads)


def compare(pair: EventPair, engine: str = "cython", *, tables=TABLES, ox_cuts=OX_CUTS, n_threads=None,
            progress=False, allow_changing_input=False) -> Comparison:
    """Compare A with B with the named engine (``cython``, ``numpy``, ``select``).

    ``progress`` True draws tqdm bars on stderr; a callable ``progress(total, desc)``
    returning a bar (with ``update`` and context-manager use) is used as is. An input
    that changes during the comparison raises InputChangedError, or with
    ``allow_changing_input`` gives tables with a warning (docs/reliability.md).
    """
    tables = tuple(dict.fromkeys(tables))  # each table once, in the order asked
    if not tables:
        raise InputError(f"no table asked for; tables are {', '.join(TABLES)}")
    for t in tables:
        if t not in TABLES:
            raise InputError(f"unknown table {t!r}; tables are {', '.join(TABLES)}")
    bar = tqdm_progress if progress is True else (progress or no_progress)
    eng = get_engine(engine, n_threads=n_threads) if isinstance(engine, str) else engine
    cuts = Cuts.for_domains(pair.domains, ox=ox_cuts)
    seconds = {}
    with pair.reading(allow_changing_input):
        t0 = time.perf_counter()
        counts = eng.histories(pair, progress=bar)
        seconds["histories"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        aggregates = eng.deviations(pair, counts.groups(), cuts, tables=tables, progress=bar)
        seconds["deviations"] = time.perf_counter() - t0
    return Comparison(pair, eng.name, cuts, counts, HistoryTable(counts),
                      {t: DeviationTable(aggregates[t]) for t in tables}, seconds)


TABLE_NUMBER = {t: k for k, t in enumerate(import_cyext().CHASE_TABLES)}  # the chase kernel's table numbers


def chase(pair: EventPair, cuts: Cuts, table: str, history=None, *, limit: int = 10,
          level: str | None = "WARNING", n_threads=None) -> "report.Chase":
    """See :meth:`Comparison.chase`."""
    cy = import_cyext()
    if table not in TABLES:
        raise InputError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
    code = seqhis.code(history) if isinstance(history, str) else (None if history is None else int(history))
    if limit < 0:
        raise InputError(f"chase limit must be >= 0, got {limit}")
    if level is None:
        min_dev = 0.0
    else:
        if level not in LEVELS[1:]:
            raise InputError(f"level must be one of {', '.join(LEVELS[1:])} or None, got {level!r}")
        k = LEVELS.index(level) - 1
        if table in RECORD_TABLES:
            min_dev = float(cuts[table].thresholds()[k])
        else:  # ox: beyond cut when d > cut
            min_dev = float(np.nextafter(cuts.ox.values[k], np.inf))
    index = np.zeros(limit, np.int64)
    dev = np.zeros(limit, np.float64)
    values = "ox" if table == "ox" else "rx"
    k, found = cy.chase(index, dev, TABLE_NUMBER[table], np.uint64(code or 0), code is None, min_dev,
                        getattr(pair.a, values), getattr(pair.b, values), pair.a.seqhis, pair.b.seqhis,
                        0, pair.n, n_threads)
    pair.check_readable()  # a map shrank under the kernel: its photons are not the data
    return report.Chase(pair, table, code, level, index[:k], dev[:k] * cuts[table].bin, found)
