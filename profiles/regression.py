"""Regression check: each engine's time / floor ratio against a baseline run's.

Ratios measured in one run (engine beside the floor) are compared, not seconds from
different days. The ratio compared is min time / min floor time (the rounds least
disturbed by other processes); its spread runs to median time / median floor time. A
case regresses when its ratio got worse by more than the threshold AND the two spreads
do not overlap; a larger change inside the spreads is reported as not significant.

    python -m profiles.regression RESULTS.json BASELINE.json [--threshold 0.25]

Exit code: 0 no regression, 1 a regression, 3 no case in common to compare.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

#: format of results.json (written by profiles.run); a change of format changes it
SCHEMA = "photonab-profiles/2"
DEFAULT_THRESHOLD = 0.25
EXIT_REGRESSION = 1
EXIT_NOTHING_COMPARED = 3


@dataclass(frozen=True)
class Verdict:
    engine: str
    size: str
    photons: int
    base: float
    base_spread: tuple[float, float]
    new: float
    new_spread: tuple[float, float]
    suspect: bool = False  # either run's floor stalled (profiles.timing.floor_check)

    @property
    def change(self) -> float:
        """Relative change of the ratio; positive = slower relative to the floor."""
        return self.new / self.base - 1.0

    def overlaps(self) -> bool:
        return self.new_spread[0] <= self.base_spread[1] and self.base_spread[0] <= self.new_spread[1]

    def status(self, threshold: float) -> str:
        if self.suspect:
            return "floor suspect"
        if abs(self.change) <= threshold:
            return "ok"
        if self.overlaps():
            return "not significant"
        return "REGRESSION" if self.change > 0 else "improved"

    def to_dict(self, threshold: float) -> dict:
        return {"engine": self.engine, "size": self.size, "photons": self.photons, "base": self.base,
                "base_spread": list(self.base_spread), "new": self.new, "new_spread": list(self.new_spread),
                "change": self.change, "status": self.status(threshold)}


def _ratios(results: dict) -> dict:
    """(engine, photons) -> (size, ratio, spread) of every timed case."""
    out = {}
    for case in results.get("cases", []):
        timing = case.get("timing")
        if timing:
            ratio = timing["ratio"]
            spread = (min(ratio["min"], ratio["median"]), max(ratio["min"], ratio["median"]))
            suspect = bool((timing.get("floor_check") or {}).get("suspect"))
            out[case["engine"], case["photons"]] = (case["size"], ratio["min"], spread, suspect)
    return out


def check(results: dict, baseline: dict) -> list[Verdict]:
    """One verdict per (engine, size) timed in both runs."""
    new, base = _ratios(results), _ratios(baseline)
    verdicts = []
    for key in sorted(new.keys() & base.keys(), key=lambda k: (k[1], k[0])):
        size, ratio, spread, suspect = new[key]
        _, base_ratio, base_spread, base_suspect = base[key]
        verdicts.append(Verdict(key[0], size, key[1], base_ratio, base_spread, ratio, spread,
                                suspect or base_suspect))
    return verdicts


def report(results: dict, baseline: dict, baseline_name: str, threshold: float) -> tuple[dict, str]:
    """The verdicts as JSON-ready data and as text."""
    verdicts = check(results, baseline)
    lines = [f"regression check against {baseline_name} (min time / min floor, spread to the medians; "
             f"threshold {threshold:.0%}):"]
    base_cpu, new_cpu = (r.get("machine", {}).get("cpu") for r in (baseline, results))
    if base_cpu != new_cpu:
        lines.append(f"  note: baseline measured on {base_cpu!r}, this run on {new_cpu!r}")
    lines.extend(_input_notes(results, baseline, {v.photons for v in verdicts}))
    if not verdicts:
        lines.append("  no case in common with the baseline (engines and sizes differ): nothing compared")
    lines.append(f"  {'engine':<7} {'size':>5} {'baseline':>9} {'spread':>15} {'now':>9} {'spread':>15} "
                 f"{'change':>8}  verdict")
    for v in verdicts:
        lines.append(f"  {v.engine:<7} {v.size:>5} {v.base:9.3f} {_span(v.base_spread):>15} {v.new:9.3f} "
                     f"{_span(v.new_spread):>15} {v.change:+8.1%}  {v.status(threshold)}")
    regressions = [v for v in verdicts if v.status(threshold) == "REGRESSION"]
    lines.append(f"  {len(regressions)} regression(s) in {len(verdicts)} case(s)")
    data = {"baseline": baseline_name, "threshold": threshold,
            "verdicts": [v.to_dict(threshold) for v in verdicts], "regressions": len(regressions),
            "compared": len(verdicts)}
    return data, "\n".join(lines)


def _input_notes(results: dict, baseline: dict, sizes: set) -> list[str]:
    """Notes for the sizes whose synthetic pairs were made differently in the two runs."""
    recipes = [{p["photons"]: p.get("recipe") for p in r.get("pairs", [])} for r in (results, baseline)]
    differ = sorted(n for n in sizes if recipes[0].get(n) != recipes[1].get(n))
    if not differ:
        return []
    return [f"  note: the input pairs differ from the baseline's at {len(differ)} size(s) "
            "(another generator, faults or seed); the ratios still compare the engines, on other photons"]


def exit_code(data: dict) -> int:
    if data["regressions"]:
        return EXIT_REGRESSION
    return 0 if data["compared"] else EXIT_NOTHING_COMPARED


def _span(spread) -> str:
    return f"{spread[0]:.3f}..{spread[1]:.3f}"


def load(path) -> dict:
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: cannot read the results ({exc})") from None
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        found = results.get("schema") if isinstance(results, dict) else None
        raise SystemExit(f"{path}: results of format {found!r}, expected {SCHEMA!r} "
                         "(measure the baseline again with this version of profiles.run)")
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m profiles.regression", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, help="results.json of a run")
    p.add_argument("baseline", type=Path, help="results.json of the baseline run (e.g. profiles/baseline.json)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"relative worsening that counts as a regression (default {DEFAULT_THRESHOLD})")
    args = p.parse_args(argv)
    data, text = report(load(args.results), load(args.baseline), str(args.baseline), args.threshold)
    print(text)
    return exit_code(data)


if __name__ == "__main__":
    sys.exit(main())
