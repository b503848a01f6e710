"""Text rendering of the QCF table (photonab.qcf.QCFTable) as Opticks' QCF prints it.

Summary lines first (``c2sum : ... c2n : ... c2per: ... C2CUT:`` and
``c2sum/c2n:c2per(C2CUT)  %5.2f/%d:%5.3f (%2d) pv[%4.3f,...]``), then the rows
``[start:stop]`` with QCF's columns (row index, label, row index, a b counts, c2,
first index in A and B), then the ``bzero`` and ``azero`` rows, then hits (as SABHit)
and the metadata keys that differ. Only rendering here: the numbers come from the model.
"""
from __future__ import annotations

import math


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


def render_qcf(t, limit: int | None = 25, start: int = 0) -> str:
    """The QCF table as text: summary, rows [start:start+limit], bzero, azero, hits, metadata."""
    stop = len(t) if limit is None else min(len(t), start + limit)
    shown = list(range(start, stop))
    every = sorted(set(shown) | set(t.bzero.tolist()) | set(t.azero.tolist()))
    width = max([len(t.label(i)) for i in every] + [5])
    head = (f"{'':4s} {'label':<{width}s} {'':4s} {'a':>7s} {'b':>7s} {'c2':>8s} {'first_a':>7s} {'first_b':>7s}")
    lines = [f"QCF  a {t.paths[0] or '-'}  b {t.paths[1] or '-'}  flags {t.era} ({t.era_source})",
             f"a.q {t.n_a} b.q {t.n_b}  histories {len(t)}"]
    lines += [f"note: {n}" for n in t.notes]
    lines += summary_lines(t)
    lines += ["", f"[{start}:{stop}]  ## A-B history frequency chi2 comparison", head] + _rows(t, shown, width)
    if stop < len(t):
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
