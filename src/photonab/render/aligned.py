"""Text of the aligned SEvt comparison (photonab.aligned): the chance-alignment check, one
table per deviation kind (pos, time, mom, pol, wl, photon), and the chased photons side by
side. Columns as the 2019 deviation tables (docs/tables.md), values in physical units
(docs/aligned.md). Only rendering here: the numbers come from the model.
"""
from __future__ import annotations

import numpy as np

from ..cuts import LEVELS

LABEL_WIDTH = 40


def _label(text: str) -> str:
    return text if len(text) <= LABEL_WIDTH else text[:LABEL_WIDTH - 3] + "..."


def _num(x: float, width: int = 9) -> str:
    if np.isnan(x):
        return f"{'-':>{width}}"
    return f"{x:>{width}.4g}" if abs(x) >= 1e4 or (0 < abs(x) < 1e-3) else f"{x:>{width}.4f}"


def render_check(check) -> str:
    """One line: photons with equal histories photon by photon against chance."""
    line = (f"alignment: {check.n_aligned} of {check.n} photons ({100 * check.fraction:.2f}%) have the same "
            f"history in A and B; chance alone gives about {check.expected:.0f} ({100 * check.expected_fraction:.2f}%), "
            f"at most {check.possible}; score {check.score:.3f} (0 chance, 1 aligned), z {check.z:.1f}")
    return line + ("" if check.message is None else f"\nWARNING: {check.message}")


def render_aligned_table(table, limit: int | None = 10, skip=()) -> str:
    unit = f" [{table.unit}]" if table.unit else ""
    cuts = " ".join(f"{c:.4g}" for c in table.cuts.values)
    head = (f"{table.table} deviations{unit}  cuts (warn err fatal) {cuts}  aligned photons {table.nitem_total}  "
            f"level {table.level}  rc {table.rc}")
    cols = (f"{'idx':>5} {'code':>18}  {'label':<{LABEL_WIDTH}} {'nitem':>9} {'nwarn':>7} {'nerr':>7} {'nfatal':>7}"
            f" {'fwarn':>6} {'ferr':>6} {'ffatal':>6} {'nnan':>6} {'mx':>9} {'mn':>9} {'avg':>9}  {'level':<7}"
            f" {'worst':>9}")
    labels = table.labels()
    codes = table.aggregate.hex()
    tokens = set(skip.split() if isinstance(skip, str) else (skip or ()))
    kept = [i for i in range(len(table)) if not (tokens & set(labels[i].split()))]
    shown = kept if limit is None else kept[:limit]
    agg = table.aggregate
    lines = [head, cols]
    for i in shown:
        nd, fd = agg.ndisc[i], table.fdisc[i]
        lines.append(f"{i:>5} {codes[i]:>18}  {_label(labels[i]):<{LABEL_WIDTH}} {agg.nitem[i]:>9} "
                     f"{nd[0]:>7} {nd[1]:>7} {nd[2]:>7} {fd[0]:>6.3f} {fd[1]:>6.3f} {fd[2]:>6.3f} {agg.nnan[i]:>6}"
                     f" {_num(table.mx[i])} {_num(table.mn[i])} {_num(table.avg[i])}  "
                     f"{LEVELS[table.level_index[i]]:<7} {int(agg.argmax[i]):>9}")
    hidden = len(table) - len(shown)
    if hidden:
        bad = sum(1 for i in set(range(len(table))) - set(shown) if table.level_index[i] >= 2)
        by_skip, by_rows = len(table) - len(kept), len(kept) - len(shown)
        how = (f"{by_skip} hidden by --skip" + (f", {by_rows} by --rows" if by_rows else "")) if by_skip \
            else "--rows to show more"
        line = f"  ... {hidden} more histories ({how})"
        if bad:
            line += f"; {bad} of them at ERROR/FATAL"
        lines.append(line)
    return "\n".join(lines)


def render_photons(found, records: int = 3) -> str:
    """Chased photons (photonab.aligned.PhotonChase): rank, photon, deviation, history, and
    the first ``records`` photons' step points of A and B side by side."""
    from ..aligned import UNITS
    unit = UNITS.get(found.table, "")
    unit = f" [{unit}]" if unit and unit != "mixed" else ""
    if not len(found):
        return f"chase {found.table}: no aligned photon found"
    labels = found.labels()
    lines = [f"chase {found.table}: the {len(found)} most deviant aligned photons",
             f"{'rank':>5} {'photon':>10} {'deviation' + unit:>16}  history"]
    for k, (i, d) in enumerate(zip(found.index, found.deviation)):
        lines.append(f"{k:>5} {int(i):>10} {d:>16.6g}  {labels[k]}")
    for k in range(min(records, len(found))):
        lines.append(f"photon {int(found.index[k])} ({labels[k]}):")
        if found.record_a is not None:
            both = found.side_by_side(k)
            for side, j in (("A", 0), ("B", 1)):
                pts = "  ".join(f"({p[0, 0]:.3f},{p[0, 1]:.3f},{p[0, 2]:.3f},{p[0, 3]:.4f})" for p in both[:, j])
                lines.append(f"  {side} x,y,z,t: {pts}")
        if found.photon_a is not None:
            for side, ph in (("A", found.photon_a[k]), ("B", found.photon_b[k])):
                lines.append(f"  {side} photon: pos ({ph[0, 0]:.4f},{ph[0, 1]:.4f},{ph[0, 2]:.4f}) t {ph[0, 3]:.5f} "
                             f"mom ({ph[1, 0]:.5f},{ph[1, 1]:.5f},{ph[1, 2]:.5f}) "
                             f"pol ({ph[2, 0]:.5f},{ph[2, 1]:.5f},{ph[2, 2]:.5f}) wl {ph[2, 3]:.3f}")
    return "\n".join(lines)


def render_aligned(result, rows: int | None = 10, skip=()) -> str:
    """The aligned tables of an AlignedResult, after the chance check and its notes."""
    parts = [render_check(result.check) + "".join(f"\nnote: {n}" for n in result.notes)]
    parts += [render_aligned_table(t, rows, skip) for t in result.tables.values()]
    worst = [w for w in result.worst.values() if len(w)]
    if worst:
        parts.append("worst photons of the worst rows (WARNING or above):\n" +
                     "\n".join(render_photons(w, records=1) for w in worst))
    return "\n\n".join(parts)
