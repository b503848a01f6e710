"""Text rendering of the tables, and the photons behind a bad row (:class:`Chase`).

The layout follows the original analysis: one line per history, counts then
deviations, the level at the end of the line.
"""
from __future__ import annotations

import json

import numpy as np

from . import atomic, seqhis
from .errors import InputError
from .cuts import LEVELS
from .tables import DeviationTable, HistoryTable

LABEL_WIDTH = 32


def write_json(data: dict, path=None) -> str:
    """JSON text of ``data``, also written to ``path`` when given."""
    text = json.dumps(data, indent=1)
    if path is not None:
        try:
            atomic.write_text(path, text)  # whole or not at all (docs/reliability.md)
        except OSError as exc:
            raise InputError(f"{path}: cannot write the JSON report ({exc.strerror or exc})") from None
    return text


def format_slice(s: slice) -> str:
    """``slice(0, 100000)`` -> ``'0:100000'``; the full slice -> ``''``."""
    if s.start is None and s.stop is None and s.step in (None, 1):
        return ""
    parts = ["" if v is None else str(v) for v in (s.start, s.stop)]
    return ":".join(parts + ([str(s.step)] if s.step not in (None, 1) else []))


def _label(code) -> str:
    text = seqhis.label(code)
    return text if len(text) <= LABEL_WIDTH else text[:LABEL_WIDTH - 3] + "..."


def _num(x: float, width: int = 9) -> str:
    if np.isnan(x):
        return f"{'-':>{width}}"
    return f"{x:>{width}.4g}" if abs(x) >= 1e4 or (0 < abs(x) < 1e-3) else f"{x:>{width}.4f}"


def render_history(table: HistoryTable, limit: int | None = 20, skip=()) -> str:
    s = table.summary()
    head = (f"history table  A:{s['photons_a']} B:{s['photons_b']} photons  {s['histories']} histories  "
            f"c2/ndf {s['c2sum']:.2f}/{s['ndf']} = {s['c2p']:.3f}  p-value {s['pvalue']:.3g}")
    cols = (f"{'idx':>5} {'code':>16}  {'label':<{LABEL_WIDTH}} {'a':>9} {'b':>9} {'a-b':>8} {'c2':>8}"
            f" {'a/b':>15} {'b/a':>15} {'nstep':>5}")
    lines = [head, cols]
    for r in table.rows(limit, skip):
        ab = "-" if np.isnan(r["a/b"]) else f"{r['a/b']:.3f}+-{r['a/b_err']:.3f}"
        ba = "-" if np.isnan(r["b/a"]) else f"{r['b/a']:.3f}+-{r['b/a_err']:.3f}"
        lines.append(f"{r['index']:>5} {r['code']:>16}  {_label(int(r['code'], 16)):<{LABEL_WIDTH}} {r['a']:>9} "
                     f"{r['b']:>9} {r['a-b']:>8} {r['c2']:>8.2f} {ab:>15} {ba:>15} {r['nstep']:>5}")
    hidden = len(table) - (len(lines) - 2)
    if hidden > 0:
        lines.append(f"  ... {hidden} more histories (--hist-rows to show more)")
    return "\n".join(lines)


def render_deviation(table: DeviationTable, limit: int | None = 10, skip=()) -> str:
    s = table.summary()
    unit = f" [{table.unit}]" if table.unit else ""
    cuts = " ".join(f"{c:.4g}" for c in s["cuts"])
    head = (f"{table.table} deviations{unit}  cuts (warn err fatal) {cuts}  aligned photons {s['nitem']}  "
            f"level {s['level']}  rc {s['rc']}")
    nan_col = table.table == "ox"
    cols = (f"{'idx':>5} {'code':>16}  {'label':<{LABEL_WIDTH}} {'nitem':>9} {'nwarn':>7} {'nerr':>7} {'nfatal':>7}"
            f" {'fwarn':>6} {'ferr':>6} {'ffatal':>6}" + (f" {'nnan':>6}" if nan_col else "") +
            f" {'mx':>9} {'mn':>9} {'avg':>9}  {'level':<7} {'worst':>9}")
    lines = [head, cols]
    for r in table.rows(limit, skip):
        nd, fd = r["ndisc"], r["fdisc"]
        worst = str(r["worst_photon"])
        if table.worst_event is not None:  # a run's combined table: event:photon
            worst = f"{table.worst_event[r['index']]}:{worst}"
        lines.append(f"{r['index']:>5} {r['code']:>16}  {_label(int(r['code'], 16)):<{LABEL_WIDTH}} {r['nitem']:>9} "
                     f"{nd[0]:>7} {nd[1]:>7} {nd[2]:>7} {fd[0]:>6.3f} {fd[1]:>6.3f} {fd[2]:>6.3f}"
                     + (f" {r['nnan']:>6}" if nan_col else "") +
                     f" {_num(r['mx'])} {_num(r['mn'])} {_num(r['avg'])}  {r['level']:<7} {worst:>9}")
    hidden = len(table) - (len(lines) - 2)
    if hidden > 0:
        bad = [LEVELS[k] for k in table.level_index[limit:]] if limit is not None else []
        worse = sum(1 for lv in bad if lv in ("ERROR", "FATAL"))
        lines.append(f"  ... {hidden} more histories (--rows to show more)"
                     + (f"; {worse} of them at ERROR/FATAL" if worse else ""))
    return "\n".join(lines)


def render_comparison(cmp, rows: int | None = 10, history_rows: int | None = 20, skip=()) -> str:
    pair = cmp.pair
    msli = format_slice(pair.a.msli)
    head = [f"A: {pair.a.path}", f"B: {pair.b.path}",
            f"photons {pair.n}" + (f" (msli {msli} of {pair.a.n_total})" if msli else "") +
            f"  maxrec {pair.a.maxrec}  engine {cmp.engine}"]
    parts = ["\n".join(head), render_history(cmp.history, history_rows, skip)]
    parts += [render_deviation(t, rows, skip) for t in cmp.tables.values()]
    bad = [f"{t}:{tab.level}" for t, tab in cmp.tables.items()]
    parts.append(f"summary: {' '.join(bad)}  rc {cmp.rc}")
    return "\n\n".join(parts)


class Chase:
    """Photons behind a row: sliced-event indices, original file indices, physical
    deviations (NaN ranked as inf) and their decoded A and B records."""

    def __init__(self, pair, table, code, level, index, deviation, found):
        self.pair, self.table, self.code, self.level = pair, table, code, level
        self.index = np.asarray(index, np.int64)
        self.deviation = np.asarray(deviation, np.float64)
        self.found = int(found)
        rows = pair.a.file_rows
        self.file_index = np.array([rows[i] for i in self.index], np.int64)

    def __len__(self):
        return len(self.index)

    def records(self, k: int) -> dict:
        """Decoded A and B records of the k-th photon (positions, times, polarizations) and ox."""
        i = int(self.index[k])
        a, b = self.pair.a, self.pair.b
        n = seqhis.nstep(int(a.seqhis[i]))
        out = {}
        for side, ev in (("a", a), ("b", b)):
            out[side] = {"position": ev.positions(slice(i, i + 1))[0, :n], "time": ev.times(slice(i, i + 1))[0, :n],
                         "polarization": ev.polarizations(slice(i, i + 1))[0, :n], "ox": np.asarray(ev.ox[i, :3])}
        return out

    def to_dict(self) -> dict:
        return {"table": self.table, "history": None if self.code is None else seqhis.label(self.code),
                "level": self.level, "found": self.found,
                "photons": [{"index": int(i), "file_index": int(f), "deviation": float(d)}
                            for i, f, d in zip(self.index, self.file_index, self.deviation)]}

    def render(self, records: int = 3) -> str:
        what = "all histories" if self.code is None else seqhis.label(self.code)
        lines = [f"chase {self.table} {what}: {self.found} aligned photons at or beyond "
                 f"{self.level or 'any deviation'}; the {len(self)} most deviant:",
                 f"{'rank':>5} {'photon':>10} {'file row':>10} {'deviation':>12}"]
        for k, (i, f, d) in enumerate(zip(self.index, self.file_index, self.deviation)):
            lines.append(f"{k:>5} {i:>10} {f:>10} {d:>12.5g}")
        for k in range(min(records, len(self))):
            rec = self.records(k)
            lines.append(f"photon {self.index[k]} ({seqhis.label(int(self.pair.a.seqhis[self.index[k]]))}):")
            for side in ("a", "b"):
                r = rec[side]
                steps = "  ".join(f"({p[0]:.3f},{p[1]:.3f},{p[2]:.3f},{t:.3f})"
                                  for p, t in zip(r["position"], r["time"]))
                lines.append(f"  {side.upper()} x,y,z,t: {steps}")
            if self.table == "rpol":
                for side in ("a", "b"):
                    pol = "  ".join(f"({p[0]:.3f},{p[1]:.3f},{p[2]:.3f})" for p in rec[side]["polarization"])
                    lines.append(f"  {side.upper()} pol: {pol}")
            if self.table == "ox":
                for side in ("a", "b"):
                    lines.append(f"  {side.upper()} ox: {np.array2string(rec[side]['ox'].ravel(), precision=4)}")
        return "\n".join(lines)

    def __str__(self):
        return self.render()

    def _repr_pretty_(self, p, cycle):
        p.text(self.render())
