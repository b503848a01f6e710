"""Pictures of a comparison: where a glance says more than the tables.

Left: photons per history in A and B for the most frequent histories, with the
chi-square of each row. Right: for each deviation table, the worst deviation of every
history row in units of its warning cut, coloured by level, so the bad rows stand out.
"""
from __future__ import annotations


import numpy as np

from . import atomic, seqhis
from .cuts import LEVELS
from .tables import _skip_mask

LEVEL_COLOURS = {"INFO": "tab:green", "WARNING": "gold", "ERROR": "tab:orange", "FATAL": "tab:red"}


def plot_comparison(result, path, rows: int = 20, skip=()):
    """Write a PNG of the history table and the deviation tables of ``result``."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from .errors import InputError
        raise InputError("--plot needs matplotlib: pip install 'photonab[plot]'") from None
    tables = list(result.tables.values())
    fig, axes = plt.subplots(1, 1 + len(tables), figsize=(6 + 4 * len(tables), 0.35 * rows + 2.5),
                             gridspec_kw={"width_ratios": [1.6] + [1] * len(tables)}, squeeze=False)
    axes = axes[0]
    h = result.history
    shown = np.flatnonzero(~_skip_mask(h.codes, skip))[:rows]
    y = np.arange(len(shown))
    labels = [seqhis.label(c) for c in h.codes[shown]]
    ax = axes[0]
    ax.barh(y - 0.2, h.a[shown], height=0.4, label="A", color="tab:blue")
    ax.barh(y + 0.2, h.b[shown], height=0.4, label="B", color="tab:gray")
    ax.set_yticks(y, labels, fontsize=8, family="monospace")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("photons")
    ax.set_title(f"histories: c2/ndf = {h.c2p:.2f}, p = {h.pvalue:.2g}")
    for yy, i in zip(y, shown):
        if h.counted[i]:
            ax.text(max(h.a[i], h.b[i]), yy, f" c2 {h.c2[i]:.1f}",
                    va="center", fontsize=7)
    ax.legend(loc="lower right")
    for ax, table in zip(axes[1:], tables):
        keep = np.flatnonzero(~_skip_mask(table.codes, skip))[:rows]
        ratio = table.mx[keep] / table.cuts.values[0] if table.cuts.values[0] > 0 else table.mx[keep]
        ratio = np.where(table.nnan[keep] > 0, np.inf, ratio)
        finite_top = np.nanmax(np.where(np.isfinite(ratio), ratio, np.nan), initial=1.0) if len(keep) else 1.0
        shown_ratio = np.where(np.isfinite(ratio), ratio, finite_top * 2)
        colours = [LEVEL_COLOURS[LEVELS[k]] for k in table.level_index[keep]]
        yk = np.arange(len(keep))
        ax.barh(yk, np.maximum(shown_ratio, 1e-3), color=colours)
        ax.set_yticks(yk, [seqhis.label(c) for c in table.codes[keep]], fontsize=7, family="monospace")
        ax.invert_yaxis()
        ax.set_xscale("log")
        for k, cut in enumerate(table.cuts.values):
            ax.axvline(cut / table.cuts.values[0] if table.cuts.values[0] > 0 else cut, color="k",
                       lw=0.8, ls=(":", "--", "-")[k])
        ax.set_xlabel("max deviation / warning cut")
        ax.set_title(f"{table.table}: {table.level}", color=LEVEL_COLOURS[table.level])
    pair = getattr(result, "pair", None)  # a run of events has many
    title = (f"A {pair.a.path}  vs  B {pair.b.path}  ({pair.n} photons)" if pair is not None
             else f"run of {len(result.events)} events ({h.n_a} photons)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        with atomic.atomic_path(path) as tmp:  # whole or not at all (docs/reliability.md)
            fig.savefig(tmp, dpi=110)
    except OSError as exc:
        from .errors import InputError
        raise InputError(f"{path}: cannot write the plot ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
