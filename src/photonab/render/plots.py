"""Pictures of a comparison: where a glance says more than the tables.

Left: photons per history in A and B for the most frequent histories, with the
chi-square of each row. Right: for each deviation table, the worst deviation of every
history row in units of its warning cut, coloured by level, so the bad rows stand out.

Drawn with matplotlib's object-oriented API (a :class:`matplotlib.figure.Figure`, no
pyplot, no backend switch), so a notebook's backend is left as it was.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import atomic
from ..cuts import LEVELS
from ..errors import InputError

LEVEL_COLOURS = {"INFO": "tab:green", "WARNING": "gold", "ERROR": "tab:orange", "FATAL": "tab:red"}
#: the format a path without a suffix is written in (the suffix is added)
DEFAULT_FORMAT = "png"


def _need_matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'photonab[plot]'") from None
    return Figure


def formats() -> dict[str, str]:
    """File suffixes matplotlib can write, with their descriptions."""
    _need_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase
    return FigureCanvasBase.get_supported_filetypes()


def check_plot_path(path) -> Path:
    """The file a plot of ``path`` goes to, checked before any work: a known picture
    format (a path without a suffix gets ``.png``) in an existing folder."""
    path = Path(path)
    if not path.suffix:
        path = path.with_name(path.name + "." + DEFAULT_FORMAT)
    fmt = path.suffix[1:].lower()
    known = formats()
    if fmt not in known:
        raise InputError(f"{path}: cannot draw a plot as .{fmt}; picture formats are "
                         f"{', '.join('.' + k for k in sorted(known))}")
    if path.is_dir():
        raise InputError(f"{path}: cannot write the plot (it is a directory)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{path}: cannot write the plot (folder {parent} does not exist)")
    return path


def figure(result, rows: int = 20, skip=()):
    """A :class:`matplotlib.figure.Figure` of the history table and the deviation tables
    of ``result`` (a Comparison or a RunComparison)."""
    Figure = _need_matplotlib()
    tables = list(result.tables.values())
    fig = Figure(figsize=(6 + 4 * len(tables), 0.35 * rows + 2.5))
    axes = fig.subplots(1, 1 + len(tables), gridspec_kw={"width_ratios": [1.6] + [1] * len(tables)},
                        squeeze=False)[0]
    h = result.history
    shown = h.shown(rows, skip)
    y = np.arange(len(shown))
    ax = axes[0]
    ax.barh(y - 0.2, h.a[shown], height=0.4, label="A", color="tab:blue")
    ax.barh(y + 0.2, h.b[shown], height=0.4, label="B", color="tab:gray")
    ax.set_yticks(y, h.labels(shown), fontsize=8, family="monospace")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("photons")
    ax.set_title(f"histories: c2/ndf = {h.c2p:.2f}, p = {h.pvalue:.2g}: {h.level}", color=LEVEL_COLOURS[h.level])
    for yy, i in zip(y, shown):
        if h.counted[i]:
            ax.text(max(h.a[i], h.b[i]), yy, f" c2 {h.c2[i]:.1f}", va="center", fontsize=7)
    ax.legend(loc="lower right")
    for ax, table in zip(axes[1:], tables):
        keep = table.shown(rows, skip)
        warn = table.cuts.values[0]
        ratio = table.mx[keep] / warn if warn > 0 else table.mx[keep]
        ratio = np.where(table.nnan[keep] > 0, np.inf, ratio)
        finite_top = np.nanmax(np.where(np.isfinite(ratio), ratio, np.nan), initial=1.0) if len(keep) else 1.0
        shown_ratio = np.where(np.isfinite(ratio), ratio, finite_top * 2)
        colours = [LEVEL_COLOURS[LEVELS[k]] for k in table.level_index[keep]]
        yk = np.arange(len(keep))
        ax.barh(yk, np.maximum(shown_ratio, 1e-3), color=colours)
        ax.set_yticks(yk, table.labels(keep), fontsize=7, family="monospace")
        ax.invert_yaxis()
        ax.set_xscale("log")
        for k, cut in enumerate(table.cuts.values):
            ax.axvline(cut / warn if warn > 0 else cut, color="k", lw=0.8, ls=(":", "--", "-")[k])
        ax.set_xlabel("max deviation / warning cut")
        ax.set_title(f"{table.table}: {table.level}", color=LEVEL_COLOURS[table.level])
    pair = getattr(result, "pair", None)  # a run of events has many
    title = (f"A {pair.a.path}  vs  B {pair.b.path}  ({pair.n} photons)" if pair is not None
             else f"run of {len(result.events)} events ({h.n_a} photons)")
    fig.suptitle(title + f"  rc {result.rc}", fontsize=9)
    fig.tight_layout()
    return fig


def save(fig, path: Path) -> Path:
    """Write ``fig`` to the checked ``path``, whole or not at all (docs/reliability.md)."""
    try:
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format=path.suffix[1:].lower())
    except OSError as exc:
        raise InputError(f"{path}: cannot write the plot ({exc.strerror or exc})") from None
    return path


def plot_comparison(result, path, rows: int = 20, skip=()) -> Path:
    """Draw ``result`` into ``path`` (format from its suffix; none = .png added);
    returns the file written."""
    path = check_plot_path(path)
    fig = figure(result, rows, skip)
    return save(fig, path)


def figure_qcf(result, rows: int = 20, skip=()):
    """A Figure of an SEvt comparison or run (photonab.sevt_compare): photons per history in A
    and B for the first ``rows`` rows of the QCF table, with each counted row's c2."""
    from .qcf import shown_rows
    Figure = _need_matplotlib()
    t = result.qcf
    shown, _ = shown_rows(t, rows, skip)
    fig = Figure(figsize=(11, 0.35 * max(len(shown), 1) + 2.5))
    ax = fig.subplots()
    y = np.arange(len(shown))
    ax.barh(y - 0.2, np.maximum(t.a[shown], 0.5), height=0.4, label="A", color="tab:blue")
    ax.barh(y + 0.2, np.maximum(t.b[shown], 0.5), height=0.4, label="B", color="tab:gray")
    short = [(lab if len(lab) <= 40 else lab[:37] + "...") for lab in (t.label(i) for i in shown)]
    ax.set_yticks(y, short, fontsize=7, family="monospace")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("photons")
    level = result.history_level
    c2 = f"c2per = {t.c2per:.2f} (c2n {t.c2n})" if t.c2n else "c2n 0"
    ax.set_title(f"QCF histories: {c2}, p = {t.pvalue:.2g},\n{len(t.bzero) + len(t.azero)} dropouts: {level}",
                 color=LEVEL_COLOURS[level], fontsize=9)
    for yy, i in zip(y, shown):
        if t.counted[i]:
            ax.text(max(t.a[i], t.b[i]), yy, f" c2 {t.c2[i]:.1f}", va="center", fontsize=7)
    ax.legend(loc="lower right")
    fig.suptitle(f"A {t.paths[0]}  vs  B {t.paths[1]}  ({t.n_a} photons)  rc {result.rc}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_qcf(result, path, rows: int = 20, skip=()) -> Path:
    """Draw the QCF history bars of an SEvt comparison or run into ``path``; the file written."""
    path = check_plot_path(path)
    fig = figure_qcf(result, rows, skip)
    return save(fig, path)
