"""The tables as text, in the original analysis' layout: one line per history, counts
then deviations, the level at the end of the line (columns: docs/tables.md).

Rows hidden by ``--rows``/``--hist-rows`` or by ``--skip`` never hide why an event
failed: every view says how many ERROR/FATAL rows it hides and which option hid them.
"""
from __future__ import annotations

import numpy as np

from .. import seqhis
from ..comparison import Comparison, format_slice
from ..cuts import LEVELS
from ..events import changed_input_warning
from ..tables import DeviationTable, HistoryTable

LABEL_WIDTH = 32

__all__ = ["render_history", "render_deviation", "render_comparison", "render_run", "render_chase",
           "render_materials", "render_migration", "render_migrated", "render_distribution",
           "format_slice", "LABEL_WIDTH"]


def _label(code) -> str:
    text = seqhis.label(code)
    return text if len(text) <= LABEL_WIDTH else text[:LABEL_WIDTH - 3] + "..."


def _num(x: float, width: int = 9) -> str:
    if np.isnan(x):
        return f"{'-':>{width}}"
    return f"{x:>{width}.4g}" if abs(x) >= 1e4 or (0 < abs(x) < 1e-3) else f"{x:>{width}.4f}"


def _rows(table, shown) -> list[dict]:
    """One dict of column values per shown row: only those rows are computed (a table of a
    million histories shows ten)."""
    cols = table.row_values(shown)
    return [{k: None if v is None else v[k_row] for k, v in cols.items()} for k_row in range(len(shown))]


def _ratio(r: dict, name: str) -> str:
    """``a/b`` (or ``b/a``) +- its error, '-' where undefined, 15 wide."""
    text = "-" if np.isnan(r[name]) else f"{r[name]:.3f}+-{r[name + '_err']:.3f}"
    return f"{text:>15}"


def _history_level(r: dict) -> str:
    return LEVELS[r["level_index"]] + (" dropout" if r["dropout"] else "")


def _hidden_line(table, limit, skip, rows_option: str) -> str | None:
    """The footer of a view: rows it hides, and the failing ones among them, by option."""
    h = table.hidden(limit, skip)
    if not h["rows"]:
        return None
    skip_option = skip.option_for(table) if hasattr(skip, "option_for") else "--skip"  # a View: also --cmx
    if h["skip"]:
        how = f"{h['skip']} hidden by {skip_option}" + (f", {h['limit']} by {rows_option}" if h["limit"] else "")
    else:
        how = f"{rows_option} to show more"
    line = f"  ... {h['rows']} more histories ({how})"
    if h["failing"]:
        parts = [f"{h[k]} by {opt}" for k, opt in (("failing_skip", skip_option), ("failing_limit", rows_option))
                 if h[k]]
        line += f"; {h['failing']} of them at ERROR/FATAL ({', '.join(parts)})"
    return line


def render_history(table: HistoryTable, limit: int | None = 20, skip=()) -> str:
    head = (f"history table  A:{table.n_a} B:{table.n_b} photons  {len(table)} histories  "
            f"c2/ndf {table.c2sum:.2f}/{table.ndf} = {table.c2p:.3f}  p-value {table.pvalue:.3g}  "
            f"level {table.level}  rc {table.rc}" + _order_note(skip))
    lines = [head] + [f"  {reason}" for reason in table.reasons]
    lines.append(f"{'idx':>5} {'code':>16}  {'label':<{LABEL_WIDTH}} {'a':>9} {'b':>9} {'a-b':>8} {'c2':>8}"
                 f" {'a/b':>15} {'b/a':>15} {'nstep':>5}  level")
    shown = table.shown(limit, skip)
    for i, r in zip(shown, _rows(table, shown)):
        lines.append(f"{i:>5} {int(r['codes']):>16x}  {_label(r['codes']):<{LABEL_WIDTH}} {r['a']:>9} "
                     f"{r['b']:>9} {int(r['a'] - r['b']):>8} {r['c2']:>8.2f} {_ratio(r, 'ab')} {_ratio(r, 'ba')} "
                     f"{r['nstep']:>5}  {_history_level(r)}")
    footer = _hidden_line(table, limit, skip, "--hist-rows")
    return "\n".join(lines + ([footer] if footer else []))


def render_deviation(table: DeviationTable, limit: int | None = 10, skip=()) -> str:
    unit = f" [{table.unit}]" if table.unit else ""
    cuts = " ".join(f"{c:.4g}" for c in table.cuts.values)
    head = (f"{table.table} deviations{unit}  cuts (warn err fatal) {cuts}  aligned photons {table.nitem_total}  "
            f"level {table.level}  rc {table.rc}")
    nan_col = table.table == "ox"
    cols = (f"{'idx':>5} {'code':>16}  {'label':<{LABEL_WIDTH}} {'nitem':>9} {'nwarn':>7} {'nerr':>7} {'nfatal':>7}"
            f" {'fwarn':>6} {'ferr':>6} {'ffatal':>6}" + (f" {'nnan':>6}" if nan_col else "") +
            f" {'mx':>9} {'mn':>9} {'avg':>9}  {'level':<7} {'worst':>9}")
    slot_col = table.has_slots
    if slot_col:  # the record tables: the slot of the row's max (docs/tables.md)
        cols += f" {'slot':>4}"
    lines = [head, cols]
    shown = table.shown(limit, skip)
    for i, r in zip(shown, _rows(table, shown)):
        nd, fd = r["ndisc"], r["fdisc"]
        worst = str(r["argmax"])
        if r["worst_event"] is not None:  # a run's combined table: event:photon
            worst = f"{r['worst_event']}:{worst}"
        lines.append(f"{i:>5} {int(r['codes']):>16x}  {_label(r['codes']):<{LABEL_WIDTH}} {r['nitem']:>9} "
                     f"{nd[0]:>7} {nd[1]:>7} {nd[2]:>7} {fd[0]:>6.3f} {fd[1]:>6.3f} {fd[2]:>6.3f}"
                     + (f" {r['nnan']:>6}" if nan_col else "") +
                     f" {_num(r['mx'])} {_num(r['mn'])} {_num(r['avg'])}  "
                     f"{LEVELS[r['level_index']]:<7} {worst:>9}")
        if slot_col:
            ws = int(r["worst_slot"])
            lines[-1] += f" {ws if ws >= 0 else '-':>4}"
    footer = _hidden_line(table, limit, skip, "--rows")
    return "\n".join(lines + ([footer] if footer else []))


def _hidden_failing(result, rows, history_rows, skip) -> str | None:
    """One line: the ERROR/FATAL rows the views hide, by option (None when none is hidden)."""
    by_skip = by_rows = 0
    extra = [(result.materials, history_rows)] if getattr(result, "materials", None) is not None else []
    for table, limit in [(result.history, history_rows)] + extra + [(t, rows) for t in result.tables.values()]:
        h = table.hidden(limit, skip)
        by_skip, by_rows = by_skip + h["failing_skip"], by_rows + h["failing_limit"]
    if not by_skip + by_rows:
        return None
    parts = [f"{n} by {opt}" for n, opt in ((by_skip, getattr(skip, "option", "--skip")),
                                             (by_rows, "--rows/--hist-rows")) if n]
    return f"{by_skip + by_rows} ERROR/FATAL rows hidden ({', '.join(parts)}); --json has every row"


def _verdict(result) -> str:
    levels = [f"history:{result.history.level}"]
    if getattr(result, "materials", None) is not None:
        levels.append(f"materials:{result.materials.level}")
    levels += [f"{t}:{tab.level}" for t, tab in result.tables.items()]
    return f"{' '.join(levels)}  rc {result.rc}"


def render_comparison(cmp: Comparison, rows: int | None = 10, history_rows: int | None = 20, skip=()) -> str:
    pair = cmp.pair
    msli = cmp.msli
    head = [f"A: {pair.a.path}", f"B: {pair.b.path}",
            f"photons {pair.n}" + (f" (msli {msli} of {pair.a.n_total})" if msli else "") +
            f"  maxrec {pair.a.maxrec}  engine {cmp.engine}  aligned {cmp.aligned} "
            f"({100.0 * cmp.aligned / max(1, pair.n):.1f}%)"]
    if cmp.select is not None:
        head.append(f"--select {cmp.select!r}: every table holds only the matching histories")
    if cmp.history.none_aligned:
        head.append("no photon aligned: every history differs photon by photon (history FATAL)")
    hidden = _hidden_failing(cmp, rows, history_rows, skip)
    if hidden:
        head.append(hidden)
    parts = ["\n".join(head), render_history(cmp.history, history_rows, skip)]
    if cmp.materials is not None:
        parts.append(render_materials(cmp.materials, history_rows, skip))
    if cmp.migration is not None:
        parts.append(render_migration(cmp.migration, getattr(skip, "migration_rows", 10)))
    parts += [render_deviation(t, rows, skip) for t in cmp.tables.values()]
    parts.append(f"summary: {_verdict(cmp)}" + (f"; {hidden}" if hidden else ""))
    return _with_change_warning(parts, cmp.pair.changed)


def _with_change_warning(parts: list[str], changes) -> str:
    """The parts, between two loud warnings when an input changed while it was read
    and the user allowed it (docs/reliability.md)."""
    warning = changed_input_warning(changes)
    return "\n\n".join(parts if warning is None else [warning, *parts, warning])


def render_run(run, rows: int | None = 10, history_rows: int | None = 20, skip=()) -> str:
    names = ["history"] + list(run.tables)
    lines = [f"run of {len(run.events)} events, {sum(c.pair.n for c in run.events)} photons, "
             f"{run.aligned} aligned",
             f"{'event':>5} {'photons':>10} {'c2/ndf':>8} " + " ".join(f"{t:>7}" for t in names) +
             f" {'rc':>3}  worst row   (A folder)"]
    for e in run.event_lines():
        lines.append(f"{e['event']:>5} {e['photons']:>10} {e['c2p']:>8.3f} " +
                     " ".join(f"{e['levels'][t]:>7}" for t in names) + f" {e['rc']:>3}  {e['worst_row']}"
                     f"   ({e['a']})")
    if run.history.none_aligned:
        lines.append("no photon aligned in any event: every history differs photon by photon (history FATAL)")
    hidden = _hidden_failing(run, rows, history_rows, skip)
    if hidden:
        lines.append(hidden)
    parts = ["\n".join(lines), "combined " + render_history(run.history, history_rows, skip)]
    if run.materials is not None:
        parts.append("combined " + render_materials(run.materials, history_rows, skip))
    parts += ["combined " + render_deviation(t, rows, skip) for t in run.tables.values()]
    if run.migration is not None:
        parts.append("combined " + render_migration(run.migration, getattr(skip, "migration_rows", 10)))
    summary = f"summary: {_verdict(run)}"
    failing_events = [str(e["event"]) for e in run.event_lines() if e["rc"]]
    if failing_events:
        summary += f"  (events failing on their own: {', '.join(failing_events)})"
    parts.append(summary + (f"; {hidden}" if hidden else ""))
    return _with_change_warning(parts, [c for e in run.events for c in e.pair.changed])


def render_chase(found, records: int = 3) -> str:
    what = "all histories" if found.code is None else seqhis.label(found.code)
    if getattr(found, "pattern", None) is not None:  # chase --history PATTERN (photonab.chase.chase_pattern)
        what = f"{found.pattern!r} ({len(found.codes)} histories)"
    beyond = found.level or "any deviation"
    unit = f" [{found.unit}]" if found.unit else ""
    if not len(found):
        of = f" (of {found.aligned} aligned)" if found.aligned is not None else ""
        return f"chase {found.table} {what}: no aligned photon at or beyond {beyond}{of}"
    lines = [f"chase {found.table} {what}: {found.found} aligned photons at or beyond "
             f"{beyond}; the {len(found)} most deviant:",
             f"{'rank':>5} {'photon':>10} {'file row':>10} {'deviation' + unit:>14}"]
    for k, (i, f, d) in enumerate(zip(found.index, found.file_index, found.deviation)):
        lines.append(f"{k:>5} {i:>10} {f:>10} {d:>14.5g}")
    for k in range(min(records, len(found))):
        rec = found.records(k)
        lines.append(f"photon {found.index[k]} ({seqhis.label(int(found.pair.a.seqhis[found.index[k]]))}):")
        for side in ("a", "b"):
            r = rec[side]
            steps = "  ".join(f"({p[0]:.3f},{p[1]:.3f},{p[2]:.3f},{t:.3f})" for p, t in zip(r["position"], r["time"]))
            lines.append(f"  {side.upper()} x,y,z,t: {steps}")
        if found.table == "rpol":
            for side in ("a", "b"):
                pol = "  ".join(f"({p[0]:.3f},{p[1]:.3f},{p[2]:.3f})" for p in rec[side]["polarization"])
                lines.append(f"  {side.upper()} pol: {pol}")
        if found.table == "ox":
            for side in ("a", "b"):
                lines.append(f"  {side.upper()} ox: {np.array2string(rec[side]['ox'].ravel(), precision=4)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- analysis views (docs/analysis.md)


def _order_note(view) -> str:
    order = getattr(view, "order", "sum")
    words = {"sum": "a+b", "max": "max(a,b)", "a": "a", "b": "b"}[order]
    return f"  order {order} ({words} descending)"


def _short(text: str, width: int = LABEL_WIDTH) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def render_materials(table, limit: int | None = 20, skip=()) -> str:
    """The material table beside the history table: photons per seqmat code in A and B."""
    names = "material names from " + str(table.names.path) if table.names is not None and table.names.path \
        else ("material names given" if table.names is not None else "material indices (no material names found)")
    head = (f"material table  A:{table.n_a} B:{table.n_b} photons  {len(table)} material histories  "
            f"c2/ndf {table.c2sum:.2f}/{table.ndf} = {table.c2p:.3f}  p-value {table.pvalue:.3g}  "
            f"level {table.level}  rc {table.rc} (shares the history bit)" + _order_note(skip))
    width = 40
    lines = [head, f"  {names}"] + [f"  {reason}" for reason in table.reasons]
    lines.append(f"{'idx':>5} {'code':>16}  {'materials':<{width}} {'a':>9} {'b':>9} {'a-b':>8} {'c2':>8}"
                 f" {'a/b':>15} {'b/a':>15}  level")
    shown = table.shown(limit, skip)
    labels = table.labels(shown, abbreviate=True) if len(shown) else []
    for i, label, r in zip(shown, labels, _rows(table, shown)):
        lines.append(f"{i:>5} {int(r['codes']):>16x}  {_short(label, width):<{width}} {r['a']:>9} "
                     f"{r['b']:>9} {int(r['a'] - r['b']):>8} {r['c2']:>8.2f} {_ratio(r, 'ab')} {_ratio(r, 'ba')}"
                     f"  {_history_level(r)}")
    footer = _hidden_line(table, limit, skip, "--hist-rows")
    return "\n".join(lines + ([footer] if footer else []))


def _photon(index, event=None) -> str:
    """A photon index, as event:photon in a run's tables."""
    return str(int(index)) if event is None else f"{int(event)}:{int(index)}"


def render_migration(table, limit: int | None = 10) -> str:
    """Migrated photons (history differs between A and B) and the most frequent pairs."""
    events = table.first_migrated_event
    first = " ".join(_photon(i, None if events is None else events[k]) for k, i in enumerate(table.first_migrated))
    head = [f"migration: {table.n_migrated} of {table.n} photons ({100.0 * table.fraction:.3f}%) have a different "
            f"history in A and B, in {table.n_pairs} (A history -> B history) pairs",
            f"  first {len(table.first_migrated)} migrated photons: {first or '-'}"]
    if not len(table):
        return "\n".join(head)
    shown = range(len(table)) if limit is None else range(min(limit, len(table)))
    head.append(f"{'idx':>5} {'photons':>9} {'first':>9} {'A code':>12} {'B code':>12}  A history -> B history")
    la, lb = table.row_labels(shown)  # the shown rows' labels only
    for r in shown:
        where = _photon(table.first[r], None if table.first_event is None else table.first_event[r])
        head.append(f"{r:>5} {int(table.counts[r]):>9} {where:>9} {int(table.codes_a[r]):>12x} "
                    f"{int(table.codes_b[r]):>12x}  {la[r]} -> {lb[r]}")
    rest_pairs = len(table) - len(shown) + table.other_pairs
    rest_photons = int(table.counts[len(shown):].sum()) + table.other_photons
    if rest_pairs:
        head.append(f"  ... {rest_pairs} more pairs with {rest_photons} photons (--migration-rows N to show more; "
                    "--json has every row)")
    return "\n".join(head)


def render_migrated(found, records: bool = True) -> str:
    """``chase --migrated``: the photons of the matching migrations, A and B records side by side."""
    lines = [f"chase --migrated {found.migration!r}: {found.found} migrated photons; the first {len(found)}:"]
    if not len(found):
        return lines[0].rstrip(":") + "."
    lines.append(f"{'photon':>10} {'file row':>10}  A history -> B history")
    la, lb = found.labels_a, found.labels_b
    for k in range(len(found)):
        lines.append(f"{int(found.indices[k]):>10} {int(found.file_rows[k]):>10}  {la[k]} -> {lb[k]}")
    if records:
        for k in range(len(found)):
            na, nb = len(la[k].split()), len(lb[k].split())
            lines.append(f"photon {int(found.indices[k])}: slot  A {la[k]:<28} | B {lb[k]}")
            for slot in range(max(na, nb)):
                def rec(side, n):
                    if slot >= n:
                        return f"{'':<45}"
                    p = getattr(found, f"positions_{side}")[k, slot]
                    t = getattr(found, f"times_{side}")[k, slot]
                    step = (la if side == "a" else lb)[k].split()[slot]
                    return f"{step:<3}({p[0]:9.3f},{p[1]:9.3f},{p[2]:9.3f},{t:7.3f})"
                lines.append(f"  {slot:>4}  {rec('a', na)} | {rec('b', nb)}")
    return "\n".join(lines)


def render_distribution(dist) -> str:
    """``photonab hist``: bins, photons and chi-square of each histogram."""
    lines = [f"hist {dist.quantity} at slot {dist.slot} of {dist.pattern!r}: A {dist.n_a} photons, "
             f"B {dist.n_b} photons with a step at that slot"]
    for h in dist.histograms:
        unit = f" {h.unit}" if h.unit else ""
        lines.append(f"  {h.component:<5} {len(h.a)} bins {h.edges[0]:.4g}..{h.edges[-1]:.4g}{unit}  "
                     f"c2/ndf {h.c2sum:.2f}/{h.ndf} = {h.c2p:.3f}  p-value {h.pvalue:.3g}  "
                     f"(A {h.n_a}, B {h.n_b} in the bins; under {h.under[0]}/{h.under[1]}, "
                     f"over {h.over[0]}/{h.over[1]}, outside the domain {h.outside[0]}/{h.outside[1]})")
    if len(dist.histograms) > 1:
        lines.append(f"  combined c2p {dist.c2p:.3f}")
    return "\n".join(lines)
