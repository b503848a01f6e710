"""cProfile of one comparison: a ``.prof`` file and a text report sorted by internal time.

The text is what ``python -m cProfile -s time`` prints. For the ``select`` engine the
report also measures the per-selection re-initialisation (``SelectEngine.set_selection``
with ``select_photons``), the cost the 2019 profile showed dominating.
"""
from __future__ import annotations

import cProfile
import io
import pstats
from pathlib import Path

from photonab.atomic import atomic_path, write_text

TOP = 40
#: the functions of the per-selection re-initialisation, by (file name ending, function)
SELECTION = (("engines/selection.py", "set_selection"), ("engines/selection.py", "select_photons"))


def _name(key) -> str:
    filename, line, func = key
    if filename == "~":  # built-ins
        return func
    parts = Path(filename).parts
    short = "/".join(parts[-3:]) if "photonab" in parts else Path(filename).name
    return f"{short}:{line}({func})"


def _main_caller(callers: dict) -> str | None:
    """The caller that spent most time in the function (e.g. who re-selects through memmap)."""
    if not callers:
        return None
    key = max(callers, key=lambda k: callers[k][3])
    return _name(key)


def top_functions(stats: pstats.Stats, n: int = 10) -> list[dict]:
    """The ``n`` functions with most internal time, each with its main caller."""
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [{"function": _name(key), "ncalls": nc, "tottime": tt, "cumtime": ct,
             "caller": _main_caller(callers)} for key, (_cc, nc, tt, ct, callers) in rows]


def selection_cost(stats: pstats.Stats) -> dict | None:
    """Calls and cumulative seconds of the selection re-initialisation; None if it never ran."""
    found = {}
    for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in stats.stats.items():
        for suffix, name in SELECTION:
            if func == name and filename.replace("\\", "/").endswith(suffix):
                found[name] = {"ncalls": nc, "cumtime": ct}
    if "set_selection" not in found:
        return None
    outer = found["set_selection"]  # select_photons runs inside it
    return {"function": "SelectEngine.set_selection", "ncalls": outer["ncalls"], "cumtime": outer["cumtime"],
            "share": outer["cumtime"] / stats.total_tt if stats.total_tt else None,
            "select_photons_cumtime": found.get("select_photons", {}).get("cumtime")}


def profile(run, prefix: Path, title: str) -> dict:
    """Profile ``run()``; write ``prefix.prof`` and ``prefix.txt``; return the summary."""
    profiler = cProfile.Profile()
    profiler.runcall(run)
    prof, txt = (prefix.parent / f"{prefix.name}{ext}" for ext in (".prof", ".txt"))
    with atomic_path(prof) as tmp:
        profiler.dump_stats(tmp)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    text.write(f"{title}\n")
    stats.sort_stats("time").print_stats(TOP)
    write_text(txt, text.getvalue())
    return {"prof": str(prof), "text": str(txt), "total_s": stats.total_tt,
            "calls": stats.total_calls, "top": top_functions(stats), "selection": selection_cost(stats)}
