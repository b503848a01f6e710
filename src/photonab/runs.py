"""A run of events: compare many A/B pairs into one combined history table and combined
deviation tables, plus a summary line per event.

Events are compared one after the other with the same engine (each streams its photons
in bounded memory); their aggregates are combined by history code. The ox sums of the
combined tables are added in event order, so the result is the same on every run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import seqhis
from .comparison import Comparison, check_tables, compare, engine_for
from .cuts import OX_CUTS, TABLES
from .engines.base import DeviationAggregate, HistoryCounts
from .engines.reference import RECORD_MIN_START
from .errors import InputError
from .events import EventPair
from .tables import C2MAX, DeviationTable, HistoryTable, check_c2max


def parse_tags(text: str) -> list[str]:
    """'1-3,7' -> ['1', '2', '3', '7'] (tags of A; B is the negative tag)."""
    tags = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            if sep:
                first, last = int(lo), int(hi)
                if last < first:
                    raise ValueError
                tags += [str(t) for t in range(first, last + 1)]
            else:
                tags.append(str(int(part)))
        except ValueError:
            raise InputError(f"--tags {text!r}: {part!r} is not a tag or a range like 1-10") from None
    if not tags:
        raise InputError(f"--tags {text!r}: no tags")
    return tags


def union_codes(parts) -> np.ndarray:
    """The distinct codes of several uint64 arrays, ascending: ``np.unique`` of their
    concatenation by one sort (numpy 2's hash-based unique takes 1.4 s for 2M codes, the
    sort 0.18 s)."""
    codes = np.sort(np.concatenate(parts))
    return codes[np.concatenate([[True], codes[1:] != codes[:-1]])] if len(codes) else codes


def combine_histories(counts: list[HistoryCounts]) -> HistoryCounts:
    codes = union_codes([c.codes for c in counts])
    a, b = np.zeros(len(codes), np.int64), np.zeros(len(codes), np.int64)
    for c in counts:
        pos = np.searchsorted(codes, c.codes)
        a[pos] += c.a
        b[pos] += c.b
    return HistoryCounts(codes, a, b)


def combine_aggregates(aggs: list[DeviationAggregate]) -> tuple[DeviationAggregate, np.ndarray]:
    """One aggregate over several events (same table and cuts) and, per history, the
    event of its most deviant photon (the earliest event on ties)."""
    first = aggs[0]
    codes = union_codes([a.codes for a in aggs])
    G = len(codes)
    is_float = first.table == "ox"  # the record tables count stored integers
    mx = np.full(G, -np.inf) if is_float else np.full(G, -1, np.int64)
    mn = np.full(G, np.inf) if is_float else np.full(G, RECORD_MIN_START, np.int64)
    total = np.zeros(G) if is_float else np.zeros(G, np.int64)
    nitem, nnan = np.zeros(G, np.int64), np.zeros(G, np.int64)
    ndisc = np.zeros((G, 3), np.int64)
    argmax, worst_event = np.full(G, -1, np.int64), np.full(G, -1, np.int64)
    for event, a in enumerate(aggs):  # event order: the fixed association of the ox sums
        pos = np.searchsorted(codes, a.codes)
        nitem[pos] += a.nitem
        nnan[pos] += a.nnan
        ndisc[pos] += a.ndisc
        total[pos] += a.sum
        mn[pos] = np.minimum(mn[pos], a.min)
        better = (a.max > mx[pos]) & (a.argmax >= 0)
        mx[pos] = np.where(better, a.max, mx[pos])
        argmax[pos] = np.where(better, a.argmax, argmax[pos])
        worst_event[pos] = np.where(better, event, worst_event[pos])
    slot_max, worst_slot = _combine_slots(aggs, codes, mx)
    return DeviationAggregate(first.table, codes, nitem, ndisc, nnan, mx, mn, total, argmax, first.cuts,
                              slot_max, worst_slot), worst_event


def _combine_slots(aggs: list[DeviationAggregate], codes: np.ndarray, mx: np.ndarray):
    """The per-slot maxima of several events (their np.maximum; events with fewer slots
    count 0 beyond theirs) and the lowest slot reaching the combined row max (-1 none);
    (None, None) for ox, or when an event has none."""
    if any(a.slot_max is None for a in aggs):
        return None, None
    maxrec = max(a.slot_max.shape[1] for a in aggs)
    slot_max = np.zeros((len(codes), maxrec), np.uint16)
    for a in aggs:
        pos = np.searchsorted(codes, a.codes)
        r = a.slot_max.shape[1]
        slot_max[pos, :r] = np.maximum(slot_max[pos, :r], a.slot_max)
    reaches = slot_max.astype(np.int64) == np.asarray(mx, np.int64)[:, None]
    worst_slot = np.where(reaches.any(axis=1), reaches.argmax(axis=1), -1).astype(np.int64)
    return slot_max, worst_slot


@dataclass
class RunComparison:
    """Combined tables of a run of events, and each event's own comparison."""

    events: list[Comparison]
    history: HistoryTable
    tables: dict[str, DeviationTable]
    #: the combined material table (``tables`` with "materials") and the --select pattern
    materials: object = None
    select: str | None = None
    #: the combined migration table (photonab.migration.combine_migrations), or None
    migration: object = None

    @property
    def rc(self) -> int:
        """Return code (docs/verdict.md): the bits of the combined tables, and of every
        event's own tables, so that one bad event fails the run."""
        rc = self.history.rc | (self.materials.rc if self.materials is not None else 0)
        rc += sum(t.rc for t in self.tables.values())
        for event in self.events:
            rc |= event.rc
        return rc

    @property
    def aligned(self) -> int:
        return sum(e.aligned for e in self.events)

    def __getitem__(self, table: str) -> DeviationTable:
        return self.tables[table]

    def event_lines(self) -> list[dict]:
        """One summary per event: photons, c2/ndf, level per table, worst row, rc."""
        out = []
        for k, c in enumerate(self.events):
            worst = max(((t, tab) for t, tab in c.tables.items()), key=lambda item: item[1].level_index.max(initial=0))
            rows = worst[1].worst_rows("WARNING")
            row = f"{worst[0]} {seqhis.label(worst[1].codes[rows[0]])}" if len(rows) else "-"
            out.append({"event": k, "a": str(c.pair.a.path), "b": str(c.pair.b.path), "photons": c.pair.n,
                        "aligned": c.aligned, "c2p": c.history.c2p,
                        "levels": {"history": c.history.level, **{t: tab.level for t, tab in c.tables.items()}},
                        "worst_row": row, "rc": c.rc})
        return out

    def render(self, rows: int | None = 10, history_rows: int | None = 20, skip=()) -> str:
        from .render.text import render_run
        return render_run(self, rows=rows, history_rows=history_rows, skip=skip)

    def __str__(self):
        return self.render()

    def __repr__(self):
        return (f"<RunComparison {len(self.events)} events, history:{self.history.level} "
                + " ".join(f"{t}:{tab.level}" for t, tab in self.tables.items()) + f" rc={self.rc}>")

    def to_dict(self) -> dict:
        """Every number of every table (docs/json.md), NaN and inf as None."""
        from .render.json import plain, run_dict
        return plain(run_dict(self))

    def to_json(self, path=None) -> str | None:
        """As Comparison.to_json."""
        from .render.json import run_dict, write_json
        return write_json(run_dict(self), path)


def compare_run(pairs, engine="cython", *, tables=TABLES, ox_cuts=OX_CUTS, c2max=C2MAX, n_threads=None, msli=None,
                progress=False, allow_changing_input=False, select=None, migration=True,
                migration_first: int = 25) -> RunComparison:
    """Compare every (A, B) of ``pairs`` (EventPair or (a_dir, b_dir)) and combine them;
    an engine made by name is closed at the end. ``migration`` adds the combined
    migration table (the run's first ``migration_first`` migrated photons listed).

    Events must share their domains (fdom), so that stored counts mean the same length,
    time and angle in every event's rows.
    """
    tables = check_tables(tables)
    c2max = check_c2max(c2max)
    results = []
    with engine_for(engine, n_threads) as eng:
        for item in pairs:
            pair = item if isinstance(item, EventPair) else EventPair.open(*item, msli=msli)
            if results and pair.a.fdom.tobytes() != results[0].pair.a.fdom.tobytes():
                raise InputError(f"{pair.a.path / 'fdom.npy'}: domains differ from the run's first event "
                                 f"{results[0].pair.a.path}; combined tables need one set of domains")
            results.append(compare(pair, eng, tables=tables, ox_cuts=ox_cuts, c2max=c2max, progress=progress,
                                   allow_changing_input=allow_changing_input, select=select,
                                   migration=migration, migration_first=migration_first,
                                   select_required=False))  # the pattern must match the run, not each event
    if not results:
        raise InputError("a run needs at least one event pair")
    for r in results:  # an event compared early may have changed since (docs/reliability.md)
        r.pair.check_unchanged(allow_changing_input)
    counts = combine_histories([r.history_counts for r in results])
    if select is not None and not len(counts.codes):
        raise InputError(f"--select {select!r}: no history of A or B matches in any of the run's {len(results)} events")
    history = HistoryTable(counts, c2max, sum(r.aligned for r in results))
    combined = {}
    for t in results[0].tables:
        agg, worst_event = combine_aggregates([r.tables[t].raw for r in results])
        combined[t] = DeviationTable(agg, worst_event=worst_event)
    materials = None
    if results[0].materials is not None:  # combined by material code, names of the first event
        from .materials import MaterialTable
        materials = MaterialTable(combine_histories([HistoryCounts.from_unsorted(r.materials.codes, r.materials.a,
                                                                                  r.materials.b) for r in results]),
                                  results[0].materials.names, c2max)
    migrations = None
    if migration:
        from .migration import combine_migrations
        from .patterns import parse_pattern
        migrations = combine_migrations([r.migration for r in results],
                                        [(r.pair.a.seqhis, r.pair.b.seqhis) for r in results],
                                        first=migration_first, n_threads=n_threads,
                                        pattern=None if select is None else parse_pattern(select))
    return RunComparison(results, history, combined, materials, results[0].select, migrations)
