"""The pictures of a run: time against photons (log-log, with the read floor) and
memory per engine (heap, anonymous, file-backed and memory_profiler's RSS side by side)."""
from __future__ import annotations

import statistics
from pathlib import Path

from photonab.atomic import atomic_path

from .summary import ENGINE_ORDER

COLOURS = {"cython": "tab:blue", "numpy": "tab:orange", "select": "tab:red", "cython-rpost": "tab:cyan",
           "numba": "tab:green", "polars": "tab:purple", "pandas": "tab:brown"}
MEMORY_BARS = (("heap_peak_mb", "heap (tracemalloc)"), ("anon_peak_mb", "anon RSS"),
               ("file_touched_mb", "file-backed RSS"), ("rss_peak_mprof_mb", "RSS (memory_profiler)"))


def _figure(**kwargs):
    """A matplotlib Figure of its own (no pyplot state, no backend switch)."""
    from matplotlib.figure import Figure
    return Figure(**kwargs)


def _engines(cases) -> list[str]:
    names = {c["engine"] for c in cases}
    return [e for e in ENGINE_ORDER if e in names] + sorted(names - set(ENGINE_ORDER))


def time_plot(results: dict, path: Path) -> Path:
    """Median seconds against photons per engine (bars: min..median), and the read floor."""
    timed = [c for c in results["cases"] if c.get("timing")]
    fig = _figure(figsize=(7, 5))
    ax = fig.subplots()
    for engine in _engines(timed):
        cases = sorted((c for c in timed if c["engine"] == engine), key=lambda c: c["photons"])
        n = [c["photons"] for c in cases]
        med = [c["timing"]["engine"]["median"] for c in cases]
        low = [m - c["timing"]["engine"]["min"] for m, c in zip(med, cases)]
        ax.errorbar(n, med, yerr=[low, [0] * len(low)], marker="o", capsize=3, label=engine,
                    color=COLOURS.get(engine))
    floor = {}
    for c in timed:
        floor.setdefault(c["photons"], []).append(c["timing"]["floor"]["median"])
    if floor:
        n = sorted(floor)
        ax.plot(n, [statistics.median(floor[k]) for k in n], "k--", marker="s", label="read floor")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("photons per event")
    ax.set_ylabel("seconds (median of repeats)")
    ax.set_title("full A/B comparison: time against photons")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path


def ratio_plot(results: dict, path: Path) -> Path:
    """Time / read floor (median, bar; min, tick) per engine and peer, one group per size:
    photonab beside the peers, each measured beside its own floor in the same run."""
    timed = [c for c in results["cases"] if c.get("timing")]
    sizes = sorted({(c["photons"], c["size"]) for c in timed})
    engines = _engines(timed)
    fig = _figure(figsize=(max(6.0, 1.2 * len(engines) * max(1, len(sizes))), 4.8))
    ax = fig.subplots()
    width = 0.8 / max(1, len(engines))
    for k, engine in enumerate(engines):
        xs, med, low = [], [], []
        for j, (photons, _) in enumerate(sizes):
            case = next((c for c in timed if c["engine"] == engine and c["photons"] == photons), None)
            if case:
                xs.append(j + k * width)
                med.append(case["timing"]["ratio"]["median"])
                low.append(case["timing"]["ratio"]["min"])
        ax.bar(xs, med, width, label=engine, color=COLOURS.get(engine))
        ax.plot(xs, low, "k_", markersize=10)
    ax.axhline(1.0, color="k", linestyle="--", linewidth=1, label="read floor")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sizes))], [label for _, label in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("time / read floor (bar: medians, tick: minima)")
    ax.set_title("engines and peers as multiples of the read floor")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path


def memory_plot(results: dict, path: Path) -> Path:
    """One panel per size: per engine, heap / anon / file / RSS bars (log scale, MB)."""
    measured = [c for c in results["cases"] if c.get("memory")]
    sizes = sorted({(c["photons"], c["size"]) for c in measured})
    fig = _figure(figsize=(5.5 * max(1, len(sizes)), 4.8))
    axes = fig.subplots(1, max(1, len(sizes)), squeeze=False)
    width = 0.8 / len(MEMORY_BARS)
    for ax, (photons, size) in zip(axes[0], sizes):
        engines = _engines([c for c in measured if c["photons"] == photons])
        by_engine = {c["engine"]: c["memory"] for c in measured if c["photons"] == photons}
        for k, (key, label) in enumerate(MEMORY_BARS):
            x = [i + (k - (len(MEMORY_BARS) - 1) / 2) * width for i in range(len(engines))]
            values = [max(by_engine[e][key], 0.01) for e in engines]  # log axis: clip at 10 kB
            bars = ax.bar(x, values, width, label=label, hatch="//" if key == "rss_peak_mprof_mb" else None,
                          alpha=0.6 if key == "rss_peak_mprof_mb" else 1.0)
            ax.bar_label(bars, labels=[f"{by_engine[e][key]:.3g}" for e in engines], fontsize=7, rotation=90,
                         padding=2)
        ax.set_xticks(range(len(engines)), engines)
        ax.set_yscale("log")
        ax.set_ylabel("MB above the baseline (RSS: absolute)")
        ax.set_title(f"memory at {size} photons")
        ax.margins(y=0.25)
    handles, labels = axes[0][0].get_legend_handles_labels()
    columns = len(MEMORY_BARS) if len(sizes) > 1 else 2
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8)
    fig.tight_layout(rect=(0, 0.04 * len(MEMORY_BARS) / columns + 0.02, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path
