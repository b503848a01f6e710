"""The text summary printed at the end of a run (and saved as ``summary.txt``)."""
from __future__ import annotations

import statistics

from photonab.engines import ENGINES

from .machine import one_line

ENGINE_ORDER = ENGINES + ("cython-rpost", "numba", "polars", "pandas")  # the peers after the engines
HISTORICAL_SELECTION = "2019, 1M photons: 13.8 s of 22 s, 130 calls"
BUSY_CORES = 0.1  # cores kept busy by other processes during a timing above which it is suspect
COLUMNS = (("engine", "<12"), ("size", ">5"), ("median s", ">9"), ("min s", ">9"), ("x floor", ">8"),
           ("(min)", ">6"), ("x cython", ">9"), ("heap MB", ">9"), ("anon MB", ">9"), ("file MB", ">8"),
           ("RSS MB", ">8"))


def _order(case) -> tuple:
    engine = case["engine"]
    return case["photons"], ENGINE_ORDER.index(engine) if engine in ENGINE_ORDER else len(ENGINE_ORDER), engine


def _num(value, fmt) -> str:
    return "-" if value is None else format(value, fmt)


def _suspect(t) -> bool:
    return bool(t and (t.get("floor_check") or {}).get("suspect"))


def case_row(case: dict, cython_median: float | None) -> list[str]:
    t, m = case.get("timing"), case.get("memory")
    median = t["engine"]["median"] if t else None
    mark = "?" if _suspect(t) else ""  # a ratio to a stalled floor
    return [case["engine"], case["size"], _num(median, ".4g"), _num(t and t["engine"]["min"], ".4g"),
            _num(t and t["ratio"]["median"], ".2f") + mark, _num(t and t["ratio"]["min"], ".2f") + mark,
            _num(median / cython_median if median and cython_median else None, ".1f"),
            _num(m and m["heap_peak_mb"], ".1f"), _num(m and m["anon_peak_mb"], ".1f"),
            _num(m and m["file_touched_mb"], ".0f"), _num(m and m["rss_peak_mprof_mb"], ".0f")]


def table(results: dict) -> str:
    cases = sorted(results["cases"], key=_order)
    cython = {c["photons"]: c["timing"]["engine"]["median"] for c in cases
              if c["engine"] == "cython" and c.get("timing")}
    header = " ".join(format(name, fmt) for name, fmt in COLUMNS)
    lines = [header, "-" * len(header)]
    for case in cases:
        cells = case_row(case, cython.get(case["photons"]))
        lines.append(" ".join(format(cell, fmt) for cell, (_, fmt) in zip(cells, COLUMNS)))
    return "\n".join(lines)


def floors(results: dict) -> list[str]:
    """The read floor per size: the median over the timing processes of that size."""
    by_size = {}
    for c in results["cases"]:
        if c.get("timing"):
            by_size.setdefault((c["photons"], c["size"]), []).append(c["timing"])
    lines = []
    for (_, size), timings in sorted(by_size.items()):
        seconds = statistics.median(t["floor"]["median"] for t in timings)
        nbytes = timings[0]["floor_bytes"]
        line = (f"read floor at {size}: {nbytes / 1e6:.0f} MB (ph, rx, ox of A and B) in {seconds:.4g} s "
                f"= {nbytes / seconds / 1e9:.1f} GB/s on {timings[0]['threads']} thread(s)")
        checks = [t["floor_check"] for t in timings if t.get("floor_check")]
        if checks:
            reference = max(c["reference_gbps"] for c in checks)
            retries = sum(c["retries"] for c in checks)
            line += f"; one thread reads them at {reference:.1f} GB/s"
            if retries:
                line += f" ({retries} stalled floor(s) measured again)"
        lines.append(line)
        suspect = [t for t in timings if _suspect(t)]
        if suspect:
            lines.append(f"WARNING: at {size} the floor of {len(suspect)} timing(s) still read far below the "
                         "one-thread rate after re-measuring (an OpenMP stall on a busy machine): their ratios "
                         "are marked '?' and are not measurements; targets on them say 'suspect'")
    return lines


def agreement(results: dict) -> list[str]:
    lines = []
    for size, digests in results.get("tables_agree", {}).items():
        if len(set(digests.values())) == 1:
            lines.append(f"tables at {size}: identical for {', '.join(digests)}")
        else:
            lines.append(f"tables at {size}: DIFFER between engines: {digests}")
    return lines


def selection_hotspots(results: dict) -> list[str]:
    lines = []
    for case in sorted(results["cases"], key=_order):
        prof = case.get("cprofile") or {}
        sel = prof.get("selection")
        if not sel:
            continue
        lines.append(f"select at {case['size']} (cProfile): per-selection re-initialisation "
                     f"(SelectEngine.set_selection) {sel['cumtime']:.2f} s of {prof['total_s']:.2f} s "
                     f"({sel['share']:.0%}) in {sel['ncalls']} calls  [{HISTORICAL_SELECTION}]")
        for row in prof["top"][:3]:
            caller = f"  <- {row['caller']}" if row.get("caller") else ""
            lines.append(f"    tottime {row['tottime']:8.3f} s {row['ncalls']:>7} calls  {row['function']}{caller}")
    return lines


def disturbances(results: dict) -> list[str]:
    """A note on the timings during which other processes kept the CPUs busy."""
    busy = [(c["timing"]["other_processes_cores"], c) for c in sorted(results["cases"], key=_order)
            if (c.get("timing") or {}).get("other_processes_cores") is not None]
    busy = [(cores, c) for cores, c in busy if cores > BUSY_CORES]
    if not busy:
        return []
    cases = ", ".join(f"{c['engine']} {c['size']} {cores:.2f}" for cores, c in busy)
    return [f"note: other processes kept CPUs busy during timings (average cores: {cases}); an OpenMP loop "
            "(the floor, the cython engine) whose thread loses its core waits a scheduler slice, so these "
            "ratios are suspect: measure on a quiet machine"]


def rebuilds(results: dict) -> list[str]:
    """A warning when the cases measured different cyext builds (a reinstall during the run)."""
    builds = {}
    for c in sorted(results["cases"], key=_order):
        for kind, part in c.items():
            if isinstance(part, dict) and "cyext_sha256" in part:
                builds.setdefault(part["cyext_sha256"], []).append(f"{kind} {c['engine']} {c['size']}")
    if len(builds) < 2:
        return []
    return ["WARNING: cyext was rebuilt during the run; the measurements used different builds:"] + \
        [f"    {sha}: {', '.join(cases)}" for sha, cases in builds.items()]


def render(results: dict, extra: list[str] = ()) -> str:
    parts = [table(results),
             "x floor = median time / median read floor (same process), (min) = min time / min floor; "
             "x cython = median / cython's median; "
             "heap = tracemalloc peak, anon = peak anonymous RSS, file = file-backed pages touched, "
             "RSS = memory_profiler's peak RSS (counts the input pages); MB = 1e6 bytes, memory above the "
             "baseline with the inputs open (RSS absolute)",
             *floors(results), *agreement(results), *selection_hotspots(results)]
    parts.extend(rebuilds(results))
    for s in results.get("skipped", []):
        parts.append(f"skipped {s['engine']} at {s['size']}: {s['reason']}")
    for f in results.get("failed", []):
        parts.append(f"FAILED {f['kind']} of {f['engine']} at {f['size']}: {f['error']}")
    parts.extend(extra)
    parts.append("machine: " + one_line(results["machine"]))
    parts.extend(disturbances(results))
    return "\n".join(parts)
