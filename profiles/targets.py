"""The performance targets of the compiled engine (issue 3), checked on a run's numbers.

They are stated for a 10M-photon pair (select: 1M); on other sizes the check says at
which size it measured. A benchmark, not a timed test: a missed target is reported,
it does not change the exit code.
"""
from __future__ import annotations

import math

FLOOR_LIMIT = 1.5  # cython time / read floor
NUMPY_SPEEDUP = 30.0
SELECT_SPEEDUP = 80.0
SELECT_SIZE = 1_000_000
MEMORY_LIMIT_MB = 64.0
#: "independent of N": between the smallest and the largest size run, the peak grows by at
#: most FLAT_NOISE_MB (allocator arenas, thread stacks) or at most like N**FLAT_SLOPE
FLAT_SLOPE = 0.1
FLAT_NOISE_MB = 8.0
STATED_SIZE = 10_000_000


def _by_engine(results: dict, engine: str, part: str) -> dict:
    return {c["photons"]: c for c in results.get("cases", []) if c["engine"] == engine and c.get(part)}


def _target(text, size, measured, limit, met, note="") -> dict:
    return {"target": text, "size": size, "measured": measured, "limit": limit,
            "status": "n/a" if measured is None else ("met" if met else "MISSED"), "note": note}


def _at_size_note(photons: int | None, stated: int = STATED_SIZE) -> str:
    if photons is None or photons == stated:
        return ""
    return f"stated at {stated // 10**6}M photons"


def _notes(*notes) -> str:
    return "; ".join(n for n in notes if n)


def _minima(value: float) -> str:
    return f"medians; the minima give {value:.3g}"


def _speedup(cy: dict, other: dict, engine: str, want: float, at: int | None) -> dict:
    common = sorted(cy.keys() & other.keys())
    if at is not None and at in common:
        n = at
    else:
        n = common[-1] if common else None
    text = f"cython >= {want:g}x faster than {engine}"
    if n is None:
        return _target(text, None, None, want, False, f"needs cython and {engine} at one size")
    slow, fast = other[n]["timing"]["engine"], cy[n]["timing"]["engine"]
    speedup = slow["median"] / fast["median"]
    return _target(text, cy[n]["size"], speedup, want, speedup >= want,
                   _notes(_at_size_note(n, at or STATED_SIZE), _minima(slow["min"] / fast["min"])))


def floor_suspect(timing: dict) -> bool:
    """Whether the read floor of a timing stalled (profiles.timing.floor_check)."""
    return bool((timing.get("floor_check") or {}).get("suspect"))


def _suspect_floor(target: dict, timing: dict) -> dict:
    """A ratio to a stalled floor is no measurement: status 'suspect', with the rates."""
    if floor_suspect(timing):
        check = timing["floor_check"]
        target["status"] = "suspect"
        target["note"] = _notes(target["note"], f"floor read {check['floor_gbps']:.2g} GB/s, one thread "
                                                f"{check['reference_gbps']:.2g} GB/s: a stall, not the bytes")
    return target


def _slope(peaks: dict) -> float | None:
    """Exponent k of peak ~ N**k between the smallest and the largest size (peaks clipped at 1 MB)."""
    if len(peaks) < 2:
        return None
    lo, hi = min(peaks), max(peaks)
    return math.log(max(peaks[hi], 1.0) / max(peaks[lo], 1.0)) / math.log(hi / lo)


def evaluate(results: dict) -> list[dict]:
    """Every target with its measured value and status."""
    cy_time = _by_engine(results, "cython", "timing")
    cy_mem = _by_engine(results, "cython", "memory")
    out = []
    if cy_time:
        n = max(cy_time)
        t = cy_time[n]["timing"]
        ratio = t["ratio"]["median"]
        target = _target(f"cython <= {FLOOR_LIMIT:g} x read floor", cy_time[n]["size"], ratio, FLOOR_LIMIT,
                         ratio <= FLOOR_LIMIT, _notes(_at_size_note(n), _minima(t["ratio"]["min"])))
        out.append(_suspect_floor(target, t))
    else:
        out.append(_target(f"cython <= {FLOOR_LIMIT:g} x read floor", None, None, FLOOR_LIMIT, False,
                           "cython not timed"))
    out.append(_speedup(cy_time, _by_engine(results, "numpy", "timing"), "numpy", NUMPY_SPEEDUP, None))
    out.append(_speedup(cy_time, _by_engine(results, "select", "timing"), "select", SELECT_SPEEDUP, SELECT_SIZE))
    for key, what in (("heap_peak_mb", "heap (tracemalloc) peak"), ("anon_peak_mb", "anonymous RSS peak")):
        text = f"cython {what} < {MEMORY_LIMIT_MB:g} MB"
        if not cy_mem:
            out.append(_target(text, None, None, MEMORY_LIMIT_MB, False, "cython memory not measured"))
            continue
        n = max(cy_mem)
        peak = cy_mem[n]["memory"][key]
        out.append(_target(text, cy_mem[n]["size"], peak, MEMORY_LIMIT_MB, peak < MEMORY_LIMIT_MB,
                           _at_size_note(n)))
        peaks = {m: c["memory"][key] for m, c in cy_mem.items()}
        slope = _slope(peaks)
        growth = peaks[max(peaks)] - peaks[min(peaks)]
        sizes = ", ".join(f"{cy_mem[m]['size']}: {peaks[m]:.1f} MB" for m in sorted(peaks))
        out.append(_target(f"cython {what} independent of N (grows like N^k, k <= {FLAT_SLOPE:g}, "
                           f"or by <= {FLAT_NOISE_MB:g} MB)",
                           "..".join(cy_mem[m]["size"] for m in (min(peaks), max(peaks))), slope, FLAT_SLOPE,
                           slope is not None and (slope <= FLAT_SLOPE or growth <= FLAT_NOISE_MB),
                           sizes if slope is not None else "needs two sizes"))
    return out


def render(targets: list[dict]) -> str:
    lines = ["targets of the compiled engine (issue 3):"]
    for t in targets:
        measured = "-" if t["measured"] is None else f"{t['measured']:.3g}"
        at = f" at {t['size']}" if t["size"] else ""
        note = f"  ({t['note']})" if t["note"] else ""
        lines.append(f"  {t['status']:>7}  {t['target']}{at}: {measured}{note}")
    return "\n".join(lines)
