"""A run of events: compare many A/B pairs into one combined history table and combined
deviation tables, plus a summary line per event.

Events are compared one after the other with the same engine (each streams its photons
in bounded memory); their aggregates are combined by history code. The ox sums of the
combined tables are added in event order, so the result is the same on every run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import report, seqhis
from .comparison import Comparison, compare
from .cuts import OX_CUTS, TABLES
from .engines import get_engine
from .engines.base import DeviationAggregate, HistoryCounts
from .engines.reference import RECORD_MIN_START
from .errors import InputError
from .events import EventPair, changed_input_warning
from .tables import DeviationTable, HistoryTable


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


def combine_histories(counts: list[HistoryCounts]) -> HistoryCounts:
    codes = np.unique(np.concatenate([c.codes for c in counts]))
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
    codes = np.unique(np.concatenate([a.codes for a in aggs]))
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
    return DeviationAggregate(first.table, codes, nitem, ndisc, nnan, mx, mn, total, argmax, first.cuts), worst_event


@dataclass
class RunComparison:
    """Combined tables of a run of events, and each event's own comparison."""

    events: list[Comparison]
    history: HistoryTable
    tables: dict[str, DeviationTable]

    @property
    def rc(self) -> int:
        return sum(t.rc for t in self.tables.values())

    def __getitem__(self, table: str) -> DeviationTable:
        return self.tables[table]

    def event_lines(self) -> list[dict]:
        out = []
        for k, c in enumerate(self.events):
            worst = max(((t, tab) for t, tab in c.tables.items()), key=lambda item: item[1].level_index.max(initial=0))
            rows = worst[1].worst_rows("WARNING")
            row = f"{worst[0]} {seqhis.label(worst[1].codes[rows[0]])}" if len(rows) else "-"
            out.append({"event": k, "a": str(c.pair.a.path), "photons": c.pair.n, "c2p": c.history.c2p,
                        "levels": {t: tab.level for t, tab in c.tables.items()}, "worst_row": row, "rc": c.rc})
        return out

    def render(self, rows: int | None = 10, history_rows: int | None = 20, skip=()) -> str:
        names = list(self.tables)
        lines = [f"run of {len(self.events)} events, {sum(c.pair.n for c in self.events)} photons",
                 f"{'event':>5} {'photons':>10} {'c2/ndf':>8} " + " ".join(f"{t:>7}" for t in names) +
                 f" {'rc':>3}  worst row   (A folder)"]
        for e in self.event_lines():
            lines.append(f"{e['event']:>5} {e['photons']:>10} {e['c2p']:>8.3f} " +
                         " ".join(f"{e['levels'][t]:>7}" for t in names) + f" {e['rc']:>3}  {e['worst_row']}"
                         f"   ({e['a']})")
        parts = ["\n".join(lines), "combined " + report.render_history(self.history, history_rows, skip)]
        parts += ["combined " + report.render_deviation(t, rows, skip) for t in self.tables.values()]
        parts.append(f"summary: {' '.join(f'{t}:{tab.level}' for t, tab in self.tables.items())}  rc {self.rc}")
        warning = changed_input_warning(c for e in self.events for c in e.pair.changed)  # docs/reliability.md
        return "\n\n".join(parts if warning is None else [warning, *parts, warning])

    def __str__(self):
        return self.render()

    def to_dict(self, rows=None, history_rows=None, skip=()) -> dict:
        return {"events": self.event_lines(), "rc": self.rc, "history": self.history.to_dict(history_rows, skip),
                "deviations": {t: tab.to_dict(rows, skip) for t, tab in self.tables.items()},
                "input_changed": [c for e in self.events for c in e.pair.changed]}

    def to_json(self, path=None, **kw) -> str:
        return report.write_json(self.to_dict(**kw), path)


def compare_run(pairs, engine="cython", *, tables=TABLES, ox_cuts=OX_CUTS, n_threads=None, msli=None,
                progress=False, allow_changing_input=False) -> RunComparison:
    """Compare every (A, B) of ``pairs`` (EventPair or (a_dir, b_dir)) and combine them.

    Events must share their domains (fdom), so that stored counts mean the same length,
    time and angle in every event's rows.
    """
    eng = get_engine(engine, n_threads=n_threads) if isinstance(engine, str) else engine
    results = []
    for item in pairs:
        pair = item if isinstance(item, EventPair) else EventPair.open(*item, msli=msli)
        if results and pair.a.fdom.tobytes() != results[0].pair.a.fdom.tobytes():
            raise InputError(f"{pair.a.path / 'fdom.npy'}: domains differ from the run's first event "
                             f"{results[0].pair.a.path}; combined tables need one set of domains")
        results.append(compare(pair, eng, tables=tables, ox_cuts=ox_cuts, progress=progress,
                               allow_changing_input=allow_changing_input))
    if not results:
        raise InputError("a run needs at least one event pair")
    for r in results:  # an event compared early may have changed since (docs/reliability.md)
        r.pair.check_unchanged(allow_changing_input)
    history = HistoryTable(combine_histories([r.history_counts for r in results]))
    combined = {}
    for t in tables:
        agg, worst_event = combine_aggregates([r.tables[t].raw for r in results])
        combined[t] = DeviationTable(agg, worst_event=worst_event)
    return RunComparison(results, history, combined)
