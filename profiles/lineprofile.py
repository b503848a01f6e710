"""line_profiler reports of the Python-level hot functions of the select and numpy engines.

The compiled engine has no Python-level hot loop, so only the two numpy engines get a
line-by-line report: where their seconds go, line by line.
"""
from __future__ import annotations

import io
import linecache
from pathlib import Path

from photonab.atomic import write_text

LINE_PROFILED = ("numpy", "select")


def hot_functions(engine: str) -> list:
    """The functions to profile line by line for ``engine``."""
    from photonab.engines import reference, selection, vectorised

    shared = [vectorised.NumpyEngine.histories, reference.record_deviations, reference.final_deviation,
              reference.aggregate_rows]
    if engine == "numpy":
        return [vectorised.NumpyEngine.deviations, vectorised.NumpyEngine.per_photon, *shared]
    if engine == "select":
        return [selection.SelectEngine.deviations, selection.SelectEngine.set_selection,
                selection.select_photons, *shared]
    raise ValueError(f"no line profile for engine {engine!r}; only {', '.join(LINE_PROFILED)}")


def top_lines(stats, n: int = 8) -> list[dict]:
    """The ``n`` source lines with most time over all profiled functions."""
    lines = []
    for (filename, _first, func), timings in stats.timings.items():
        for lineno, hits, t in timings:
            lines.append({"function": func, "file": Path(filename).name, "line": lineno, "hits": hits,
                          "seconds": t * stats.unit, "source": linecache.getline(filename, lineno).strip()})
    lines.sort(key=lambda r: r["seconds"], reverse=True)
    return lines[:n]


def profile(run, engine: str, path: Path, title: str) -> dict:
    """Profile ``run()`` line by line; write the report to ``path``; return the summary."""
    from line_profiler import LineProfiler

    profiler = LineProfiler()
    for func in hot_functions(engine):
        profiler.add_function(func)
    profiler.runcall(run)
    stats = profiler.get_stats()
    text = io.StringIO()
    text.write(f"{title}\n\n")
    profiler.print_stats(stream=text, output_unit=1e-3, stripzeros=True)
    write_text(path, text.getvalue())
    per_function = {func: sum(t for _, _, t in timings) * stats.unit
                    for (_file, _line, func), timings in stats.timings.items()}
    return {"text": str(path), "function_s": per_function, "top_lines": top_lines(stats)}
