"""Text rendering of the QCF table (photonab.qcf.QCFTable) as Opticks' QCF prints it.

Summary lines first (``c2sum : ... c2n : ... c2per: ... C2CUT:`` and
``c2sum/c2n:c2per(C2CUT)  %5.2f/%d:%5.3f (%2d) pv[%4.3f,...]``), then the rows
``[start:stop]`` with QCF's columns (row index, label, row index, a b counts, c2,
first index in A and B), then the ``bzero`` and ``azero`` rows, then hits (as SABHit)
and the metadata keys that differ. Only rendering here: the numbers come from the model.
"""
from __future__ import annotations

import numpy as np

from .. import seqhis


def summary_lines(t) -> list[str]:
    pv = t.pvalue
    verdict = "> 0.05 : null-hyp " if pv > 0.05 else "< 0.05 : NOT:null-hyp "
    lines = [f"c2sum : {t.c2sum:10.4f} c2n : {float(t.c2n):10.4f} c2per: {t.c2per:10.4f}  C2CUT: {t.c2cut:4g} ",
             f"c2sum/c2n:c2per(C2CUT)  {t.c2sum:5.2f}/{t.c2n}:{t.c2per:5.3f} ({t.c2cut:2g}) "
             f"pv[{pv:4.3f},{verdict}] "]
    if t.rule != "qcf":
        lines.append(f"chi-square rule {t.rule}: rows with a > 0, b > 0 and a+b > {t.c2cut:g} (dropouts excluded)")
    q = t.qcf_float32
    if t.float32_differs:
        lines.append(f"QCF float32: c2sum/c2n:c2per {q['c2sum']:5.2f}/{q['c2n']}:{q['c2per']:5.3f} "
                     f"pv[{q['pvalue']:4.3f}] (photonab computes in float64, see docs/sevt.md)")
    return lines


def _rows(t, idx, width) -> list[str]:
    out = []
    for i in idx:
        out.append(f"{i:4d} {t.label(i):<{width}s} {i:4d} {t.a[i]:7d} {t.b[i]:7d} {t.c2[i]:8.4f} "
                   f"{t.file_row('a', i):7d} {t.file_row('b', i):7d}")
    return out


def render_hits(h) -> str:
    if h is None:
        return "hits: no hit.npy in A nor B"
    miss = "".join(f" ({side} has no hit.npy: 0)" for side, p in (("A", h.present_a), ("B", h.present_b)) if not p)
    return (f"hits  a : ( {h.a:7d} +- {int(h.a_err):4d} )  b : ( {h.b:7d} +- {int(h.b_err):4d} )  "
            f"a/b : ( {h.ab:6.3f} +- {h.ab_err_linear:6.3f} linear, {h.ab_err_quadrature:6.3f} quadrature )  "
            f"b/a : ( {h.ba:6.3f} +- {h.ba_err_linear:6.3f} linear, {h.ba_err_quadrature:6.3f} quadrature )"
            f"{miss}")


def render_qcf(t, limit: int | None = 25, start: int = 0, rows=None, footer: str | None = None) -> str:
    """The QCF table as text: summary, rows [start:start+limit] (or the row numbers ``rows``,
    then ``footer`` says what they leave out), bzero, azero, hits, metadata."""
    stop = len(t) if limit is None else min(len(t), start + limit)
    shown = list(range(start, stop)) if rows is None else [int(i) for i in rows]
    every = sorted(set(shown) | set(t.bzero.tolist()) | set(t.azero.tolist()))
    width = max([len(t.label(i)) for i in every] + [5])
    head = (f"{'':4s} {'label':<{width}s} {'':4s} {'a':>7s} {'b':>7s} {'c2':>8s} {'first_a':>7s} {'first_b':>7s}")
    lines = [f"QCF  a {t.paths[0] or '-'}  b {t.paths[1] or '-'}  flags {t.era} ({t.era_source})",
             f"a.q {t.n_a} b.q {t.n_b}  histories {len(t)}"]
    lines += [f"note: {n}" for n in t.notes]
    lines += summary_lines(t)
    span = f"[{start}:{stop}]" if rows is None else f"[{len(shown)} of {len(t)}]"
    lines += ["", f"{span}  ## A-B history frequency chi2 comparison", head] + _rows(t, shown, width)
    if rows is not None:
        if footer:
            lines.append(footer)
    elif stop < len(t):
        lines.append(f"... {len(t) - stop} more histories")
    for name, rows, desc in (("bzero", t.bzero, "in A but not B"), ("azero", t.azero, "in B but not A")):
        lines += ["", f"[{name}]  ## {desc}"]
        lines += _rows(t, rows.tolist(), width) if len(rows) else ["(none)"]
    lines += ["", render_hits(t.hits)]
    if t.meta_diff:
        lines += ["", "NPFold_meta.txt keys that differ (timestamps aside):"]
        kw = max(len(k) for k, _, _ in t.meta_diff)
        lines += [f"  {k:<{kw}s} : {'-' if va is None else va} : {'-' if vb is None else vb}"
                  for k, va, vb in t.meta_diff]
    return "\n".join(lines)


# ---------------------------------------------------------------- a whole SEvt comparison


def shown_rows(t, limit: int | None, skip=()) -> tuple[list[int], dict]:
    """Rows a view shows (not hidden by ``skip`` tokens, the first ``limit``) and what it hides:
    rows and dropout rows (ERROR) by option. Dropouts are always printed in [bzero]/[azero]."""
    tokens = set(skip.split() if isinstance(skip, str) else (skip or ()))
    n = len(t)
    skipped = np.zeros(n, bool)
    if tokens:
        skipped[:] = seqhis.labels_share(t.lo, tokens, t.era, hi=t.hi)
    kept = np.flatnonzero(~skipped)  # array-wide: a table of 2M histories shows 20 rows
    shown = kept if limit is None else kept[:limit]
    dropout = np.zeros(n, bool)
    dropout[t.bzero], dropout[t.azero] = True, True
    beyond = kept[len(shown):]
    hidden = {"skip": int(skipped.sum()), "limit": len(beyond),
              "failing_skip": int(np.count_nonzero(skipped & dropout)),
              "failing_limit": int(np.count_nonzero(dropout[beyond]))}
    return shown.tolist(), hidden


def _footer(hidden: dict) -> str | None:
    n = hidden["skip"] + hidden["limit"]
    if not n:
        return None
    how = (f"{hidden['skip']} hidden by --skip" + (f", {hidden['limit']} by --hist-rows" if hidden["limit"] else "")
           if hidden["skip"] else "--hist-rows to show more")
    line = f"... {n} more histories ({how})"
    bad = hidden["failing_skip"] + hidden["failing_limit"]
    if bad:
        line += f"; {bad} of them dropouts at ERROR (listed under [bzero]/[azero])"
    return line


def render_verdict(cmp) -> str:
    """The history level line of a comparison or run, and why."""
    t = cmp.qcf
    c2 = "c2per -" if not t.c2n else f"c2per {t.c2per:.3f} on ndf = c2n {t.c2n}"
    lines = [f"history level {cmp.history_level}  rc {cmp.history_rc}  ({c2}; c2max "
             f"{','.join(f'{x:g}' for x in cmp.c2max)}; a dropout is at least ERROR)"]
    lines += [f"  {r}" for r in cmp.reasons]
    return "\n".join(lines)


def _layout_lines(cmp) -> list[str]:
    pair = cmp.pair
    msli = cmp.msli
    n_files = f" (msli {msli} of {pair.a.n_total})" if msli else ""
    return ["layout sevt (SEvt folders: seq/photon/record.npy)",
            f"A: {pair.a.path}", f"B: {pair.b.path}",
            f"photons {pair.n}{n_files}  engine {cmp.engine}  "
            f"flags {pair.era} ({pair.era_source}: {pair.era_evidence})"]


def _summary(cmp) -> str:
    return "summary: " + " ".join(f"{k}:{v}" for k, v in cmp.levels.items()) + f"  rc {cmp.rc}"


def render_sevt_comparison(cmp, rows: int | None = 10, history_rows: int | None = 20, skip=()) -> str:
    """An SEvtComparison as text: layout, flags, the QCF table, the history verdict, then the
    aligned tables (with --aligned) or why there are none, and the summary line."""
    from ..aligned import NOT_ALIGNED_MESSAGE
    shown, hidden = shown_rows(cmp.qcf, history_rows, skip)
    parts = ["\n".join(_layout_lines(cmp)), render_qcf(cmp.qcf, rows=shown, footer=_footer(hidden)),
             render_verdict(cmp)]
    if cmp.aligned is None:
        parts.append(NOT_ALIGNED_MESSAGE)
    else:
        from .aligned import render_aligned
        parts.append(render_aligned(cmp.aligned, rows, skip))
    parts.append(_summary(cmp))
    return "\n\n".join(parts)


def render_sevt_run(run, history_rows: int | None = 20, skip=()) -> str:
    """An SEvtRun as text: one QCF summary line per event, then the combined table of the summed counts."""
    lines = [f"layout sevt  run {run.run or '-'}: {len(run.events)} events, {run.qcf.n_a} photons, "
             f"flags {run.qcf.era} ({run.qcf.era_source})",
             f"{'event':>5} {'photons':>10} {'hists':>6} {'c2sum':>10} {'c2n':>5} {'c2per':>7} {'pvalue':>7} "
             f"{'bzero':>5} {'azero':>5} {'hits a':>8} {'hits b':>8} {'level':>7} {'rc':>3}  (A folder)"]
    for e in run.event_lines():
        c2per = "-" if not e["c2n"] else f"{e['c2per']:.3f}"
        ha = "-" if e["hits_a"] is None else e["hits_a"]
        hb = "-" if e["hits_b"] is None else e["hits_b"]
        lines.append(f"{e['event']:>5} {e['photons']:>10} {e['histories']:>6} {e['c2sum']:>10.2f} {e['c2n']:>5} "
                     f"{c2per:>7} {e['pvalue']:>7.3f} {e['bzero']:>5} {e['azero']:>5} {ha:>8} {hb:>8} "
                     f"{e['level']:>7} {e['rc']:>3}  ({e['a']})")
    shown, hidden = shown_rows(run.qcf, history_rows, skip)
    parts = ["\n".join(lines), "combined " + render_qcf(run.qcf, rows=shown, footer=_footer(hidden)),
             "combined " + render_verdict(run)]
    summary = f"summary: history:{run.history_level}  rc {run.rc}"
    failing = [str(e["event"]) for e in run.event_lines() if e["rc"]]
    if failing:
        summary += f"  (events failing on their own: {', '.join(failing)})"
    parts.append(summary)
    return "\n\n".join(parts)
