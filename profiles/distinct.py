"""Many distinct histories (issue 12): compare() when every photon has its own history.

    python -m profiles.run distinct                          # 1M photons: synth (~350 histories) vs 1M distinct
    python -m profiles.run distinct --photons 1M --histories synth,1k,100k,1M
    python -m profiles.run distinct --src before=/tmp/before/src   # another photonab beside this one

Pairs (cached under the profiles cache folder, profiles.pairs): ``synth`` is the harness's
synthesized pair of --photons photons as it is (a few hundred histories, 0.5% migrated);
a count H is the same ox and rx (hard links) with a new ``ph``: A == B, seqhis drawn from
H distinct valid codes (first step TO, 8 to 16 steps, every nibble a flag 1..15, so no
empty slot inside a history), so with H = --photons every photon is its own history, H
history rows and H rows per deviation table. ``H~F`` moves a fraction F of B's photons
to new distinct histories (migrated: F x photons more history rows and migration pairs).

Every measurement runs in a fresh process (``python -m profiles.distinct worker ...``) with
the pair opened, the engine imported and the input pages touched first:

timing  a warm-up compare(pair, engine), then --repeats timed ones; the wall time of
        compare() and of its stages, timed by wrappers around the engine's histories and
        deviations, HistoryCounts.from_unsorted and groups, count_migrations and the table
        classes (the kernels' share of "engine histories" is what from_unsorted leaves);
        after each compare, the text rendering (render()) and repr/rc. Min and median.
memory  one compare() (no warm-up): the peak anonymous RSS over the baseline taken just
        before it (RssAnon sampled every 2 ms and VmHWM minus the file-backed pages, as
        profiles.memory), per stage too (the high-water mark is reset as each stage starts),
        and what the result keeps (RssAnon after compare returns).

--src LABEL=PATH (repeatable) measures the photonab package found in PATH (e.g. an older
commit's ``git archive HEAD~3 src | tar -x -C /tmp/before``) beside the installed one, with
the same compiled cyext, interleaved process by process: before/after in one run.

The summary gives, per source and pair, stage by stage, the time and the peak memory; the
ratios to the first --histories entry; and the bytes per history (peak increase over the
first entry / extra histories). Outputs (--out, default profiles/results/distinct-<date-time>/):
results.json, summary.txt. A benchmark, not a timed test: exit 4 only when a measurement failed.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photonab.atomic import write_text

from .machine import describe, one_line, results_folder, run_json
from .pairs import SEED, cached_folder, cached_pair, default_cache, parse_count, size_label

DEFAULT_PHOTONS = "1M"
DEFAULT_HISTORIES = "synth,1M"
#: the distinct-history pairs' generator version (a change makes them again)
GENERATOR = 1
#: limits of issue 12: distinct / few (time), and the peak memory added (bytes)
TIME_LIMIT = 2.0
MEMORY_LIMIT_MB = 250.0
EXIT_CASE_FAILED = 4
#: stages in the order compare() runs them (the names the workers record)
STAGES = ("engine one pass", "engine histories", "HistoryCounts.from_unsorted", "HistoryCounts.groups", "engine deviations",
          "migration", "deviation tables", "history table")
#: the stages after the engine returns (the tables' Python side; migration includes its compiled pass)
PYTHON_STAGES = ("HistoryCounts.from_unsorted", "HistoryCounts.groups", "migration", "deviation tables",
                 "history table", "other")
MB = 1e6


# ---------------------------------------------------------------- pairs


@dataclass(frozen=True)
class HistoryPair:
    """A pair of the run: ``histories`` is "synth" or a count of distinct codes."""

    histories: str
    photons: int
    a: Path
    b: Path

    @property
    def label(self) -> str:
        return self.histories if self.histories == "synth" else f"{self.histories} histories"


def valid_codes(n: int, rng) -> np.ndarray:
    """``n`` distinct seqhis codes in random order: first step TO, 8..16 steps, each nibble
    a flag 1..15 (docs/event-format.md, section 3), so every slot up to nstep is a step."""
    from photonab import seqhis
    out = np.zeros(0, np.uint64)
    shifts = np.uint64(4) * np.arange(seqhis.MAX_STEPS, dtype=np.uint64)
    while len(out) < n:
        k = n - len(out) + 16
        nib = rng.integers(1, 16, (k, seqhis.MAX_STEPS), dtype=np.uint64)
        nib[:, 0] = seqhis.NIBBLE["TO"]
        nib[np.arange(seqhis.MAX_STEPS)[None, :] >= rng.integers(8, seqhis.MAX_STEPS + 1, k)[:, None]] = 0
        out = np.unique(np.concatenate([out, np.bitwise_or.reduce(nib << shifts, axis=1)]))
    return rng.permutation(out)[:n]


def _link_or_copy(src: Path, dst: Path) -> None:
    import shutil
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def distinct_pair(photons: int, histories: int, cache: Path, migrated: float = 0.0) -> HistoryPair:
    """The synthesized pair of ``photons`` photons with ``histories`` distinct codes in A
    (every photon its own when ``histories == photons``), made once into ``cache``; B has
    A's codes but for a fraction ``migrated`` of the photons, which get new distinct codes."""
    from photonab.synth import pair_folders
    if not 1 <= histories <= photons:
        raise SystemExit(f"--histories {histories}: give 1..{photons} distinct histories (or synth)")
    base = cached_pair(photons, cache)
    if not 0 <= migrated < 1:
        raise SystemExit(f"--migrated {migrated}: give a fraction in [0, 1)")
    recipe = {"base": base.recipe, "histories": histories, "migrated": migrated, "generator": GENERATOR,
              "seed": SEED}
    name = f"{size_label(photons)}-h{size_label(histories)}" + (f"-m{migrated:g}" if migrated else "")
    root = Path(cache) / f"distinct-{name}-seed{SEED}"
    a_dir, b_dir = pair_folders(root)

    def make(root):
        rng = np.random.default_rng([SEED, histories, int(migrated * 1e6)])
        moved = rng.random(photons) < migrated
        pool = valid_codes(histories + int(moved.sum()), rng)
        codes_a = pool[:histories][rng.permutation(photons) % histories]
        codes_b = codes_a.copy()
        codes_b[moved] = pool[histories:]
        for src, dst, codes in ((base.a, a_dir, codes_a), (base.b, b_dir, codes_b)):
            dst.mkdir(parents=True)
            for file in ("ox", "rx", "fdom", "idom"):
                _link_or_copy(src / f"{file}.npy", dst / f"{file}.npy")
            ph = np.load(src / "ph.npy")  # keeps each side's seqmat
            ph[:, 0, 0] = codes
            np.save(dst / "ph.npy", ph)

    cached_folder(root, recipe, make)
    return HistoryPair(_label(histories, migrated), photons, a_dir, b_dir)


def _label(histories: int, migrated: float) -> str:
    return size_label(histories) + (f"~{migrated:g}" if migrated else "")


def make_pair(histories: str, photons: int, cache: Path) -> HistoryPair:
    """``synth``, ``H`` (H distinct histories, A == B) or ``H~F`` (a fraction F of B migrated)."""
    if histories == "synth":
        base = cached_pair(photons, cache)
        return HistoryPair("synth", photons, base.a, base.b)
    count, _, fraction = histories.partition("~")
    try:
        migrated = float(fraction) if fraction else 0.0
    except ValueError:
        raise SystemExit(f"--histories {histories!r}: write H or H~FRACTION, e.g. 1M~0.1") from None
    return distinct_pair(photons, parse_count(count), cache, migrated)


# ---------------------------------------------------------------- the worker (one fresh process)


class Stages:
    """Wall time and peak anonymous memory of compare()'s stages, recorded by wrappers."""

    def __init__(self, memory: bool):
        self.memory = memory
        self.marks: list[dict] = []
        self._depth = 0

    def timed(self, name: str, fn):
        from .memory import read_status, reset_high_water_mark

        def call(*args, **kw):
            mark = {"stage": name, "depth": self._depth}
            if self.memory:
                mark["anon_start"] = read_status().get("RssAnon", 0)
                mark["hwm_reset"] = reset_high_water_mark()
            self._depth += 1
            mark["t0"] = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                mark["t1"] = time.perf_counter()
                self._depth -= 1
                if self.memory:
                    end = read_status()
                    mark["hwm_anon"] = end.get("VmHWM", 0) - end.get("RssFile", 0) - end.get("RssShmem", 0)
                    mark["anon_end"] = end.get("RssAnon", 0)
                self.marks.append(mark)
        return call


class _TimedEngine:
    """The engine with its histories and deviations timed (compare takes any engine object)."""

    def __init__(self, engine, stages: Stages):
        self.name, self.n_threads, self.chase = engine.name, getattr(engine, "n_threads", None), engine.chase
        self.histories = stages.timed("engine histories", engine.histories)
        self.deviations = stages.timed("engine deviations", engine.deviations)
        one_pass = getattr(engine, "histories_and_deviations", None)  # the cython engine's
        if one_pass is not None:
            self.histories_and_deviations = stages.timed("engine one pass", one_pass)


def _instrument(stages: Stages):
    """Wrap the Python stages of compare() (module attributes it looks up at call time)."""
    from photonab import comparison, migration
    from photonab.engines.base import HistoryCounts
    HistoryCounts.from_unsorted = staticmethod(stages.timed("HistoryCounts.from_unsorted",
                                                            HistoryCounts.from_unsorted))
    HistoryCounts.groups = stages.timed("HistoryCounts.groups", HistoryCounts.groups)
    migration.count_migrations = stages.timed("migration", migration.count_migrations)
    comparison.DeviationTable = stages.timed("deviation tables", comparison.DeviationTable)
    comparison.HistoryTable = stages.timed("history table", comparison.HistoryTable)


class _Timeline:
    """RssAnon sampled every ``interval`` seconds with its time (profiles.memory's sampler
    keeps only the peak)."""

    def __init__(self, interval: float = 0.002):
        import threading
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name="rss-timeline", daemon=True)

    def _sample(self):
        from .memory import read_status
        self.samples.append((time.perf_counter(), read_status().get("RssAnon", 0)))

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(self._interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        return False

    def peak(self, t0: float, t1: float) -> int:
        return max((v for t, v in self.samples if t0 <= t <= t1), default=0)


def _stage_seconds(marks: list[dict], total: float) -> dict[str, float]:
    """Seconds per stage (tables summed over the four deviation tables); the engine's
    histories (or one pass) without the from_unsorted inside it; "other" the rest of compare()."""
    out = {s: 0.0 for s in STAGES}
    for m in marks:
        out[m["stage"]] += m["t1"] - m["t0"]
    counting = "engine one pass" if out["engine one pass"] else "engine histories"
    out[counting] -= out["HistoryCounts.from_unsorted"]
    out["other"] = total - sum(out.values())
    return out


def _one_compare(pair, engine, stages: Stages, n_threads):
    from photonab.comparison import compare
    stages.marks.clear()
    t0 = time.perf_counter()
    result = compare(pair, _TimedEngine(engine, stages), n_threads=n_threads)
    return result, time.perf_counter() - t0, t0


def _after(result) -> dict[str, float]:
    """Seconds of what a user does next with the result: print it, its repr and rc."""
    t0 = time.perf_counter()
    text = result.render()
    t1 = time.perf_counter()
    _ = repr(result), result.rc
    t2 = time.perf_counter()
    return {"render": t1 - t0, "repr+rc": t2 - t1, "render_chars": len(text)}


def worker(kind: str, a: Path, b: Path, engine_name: str, n_threads, repeats: int) -> dict:
    import gc

    from photonab import EventPair
    from photonab.engines import get_engine

    from .memory import read_status, reset_high_water_mark
    from .timing import floor_arrays, read_floor

    pair = EventPair.open(a, b)
    engine = get_engine(engine_name, n_threads=n_threads)
    read_floor(floor_arrays(pair), n_threads)  # the input pages in (they are not what is measured)
    stages = Stages(memory=kind == "memory")
    _instrument(stages)
    out = {"kind": kind, "photons": pair.n, "photonab": str(Path(sys.modules["photonab"].__file__).parent)}
    if kind == "timing":
        result, _, _ = _one_compare(pair, engine, stages, n_threads)  # warm-up
        _after(result)
        rounds = []
        for _ in range(repeats):
            del result
            gc.collect()
            result, total, _ = _one_compare(pair, engine, stages, n_threads)
            rounds.append({"compare": total, **_stage_seconds(stages.marks, total), **_after(result)})
        keys = [k for k in rounds[0] if k != "render_chars"]
        out.update(rounds=rounds, min={k: min(r[k] for r in rounds) for k in keys},
                   median={k: statistics.median(r[k] for r in rounds) for k in keys})
    else:
        gc.collect()
        base = read_status().get("RssAnon", 0)
        reset_high_water_mark()
        with _Timeline() as timeline:
            result, total, t_start = _one_compare(pair, engine, stages, n_threads)
            t_end = time.perf_counter()
        end = read_status()
        kept = end.get("RssAnon", 0) - base
        hwm = end.get("VmHWM", 0) - end.get("RssFile", 0) - end.get("RssShmem", 0)
        stage_peak = {s: 0 for s in STAGES}
        stage_added = {s: 0 for s in STAGES}
        for m in stages.marks:
            peak = max(timeline.peak(m["t0"], m["t1"]), m["hwm_anon"] if m["hwm_reset"] else 0)
            stage_peak[m["stage"]] = max(stage_peak[m["stage"]], peak - base)
            stage_added[m["stage"]] = max(stage_added[m["stage"]], peak - m["anon_start"])
        last = max((m["t1"] for m in stages.marks), default=t_start)
        stage_peak["other"] = timeline.peak(last, t_end) - base
        # the overall peak: the samples, and every stage's high-water mark (each reset at its start)
        peak = max(timeline.peak(t_start, t_end), hwm,
                   *(m["hwm_anon"] for m in stages.marks if m["hwm_reset"])) - base
        out.update(seconds=total, anon_peak_mb=peak / MB, anon_kept_mb=kept / MB,
                   stage_peak_mb={s: v / MB for s, v in stage_peak.items()},
                   stage_added_mb={s: v / MB for s, v in stage_added.items()},
                   samples=len(timeline.samples))
    out["histories"] = len(result.history)
    out["deviation_rows"] = {t: len(tab) for t, tab in result.tables.items()}
    out["rc"] = result.rc
    return out


# ---------------------------------------------------------------- the run


def _sources(values: list[str]) -> list[tuple[str, str | None]]:
    """--src LABEL=PATH entries, after the installed photonab ("this", None)."""
    out = [("this", None)]
    for v in values:
        label, sep, path = v.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"--src {v!r}: give LABEL=PATH (a folder holding the photonab package)")
        if not (Path(path) / "photonab" / "__init__.py").is_file():
            raise SystemExit(f"--src {v!r}: {path} holds no photonab package")
        out.append((label, str(Path(path).resolve())))
    return out


#: a worker process: photonab from sys.argv[1] when given (before profiles imports it)
_WORKER = ("import sys; sys.path.insert(0, sys.argv[1]) if sys.argv[1] else None; "
           "from profiles.distinct import main; sys.exit(main(sys.argv[2:]))")


def run_worker(kind: str, pair: HistoryPair, src: str | None, args) -> dict:
    """One measurement process (in the repository root, so ``profiles`` is this one)."""
    cmd = [sys.executable, "-c", _WORKER, src or "", "worker", kind, "--a", str(pair.a), "--b", str(pair.b),
           "--engine", args.engine, "--repeats", str(args.repeats)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    return run_json(cmd)


def _python_s(timing: dict, key: str = "median") -> float:
    return sum(timing[key][s] for s in PYTHON_STAGES)


def _ratios(results: dict) -> None:
    """Per source: each pair against the first --histories entry (time, memory, bytes/history)."""
    for cases in results["cases"].values():
        ref = cases.get(results["settings"]["histories"][0])
        if not ref or "timing" not in ref or "memory" not in ref:
            continue
        rt, rm = ref["timing"], ref["memory"]
        for case in cases.values():
            if "timing" not in case or "memory" not in case:
                continue
            t, m = case["timing"], case["memory"]
            extra = m["histories"] - rm["histories"]
            added = m["anon_peak_mb"] - rm["anon_peak_mb"]
            case["vs_first"] = {
                "time": t["median"]["compare"] / rt["median"]["compare"],
                "python_s": _python_s(t), "python_s_first": _python_s(rt),
                "memory_added_mb": added,
                "bytes_per_history": added * MB / extra if extra > 0 else None,
                "stage_bytes_per_history": None if extra <= 0 else {
                    s: (m["stage_added_mb"][s] - rm["stage_added_mb"][s]) * MB / extra for s in STAGES},
            }


def _cell(seconds: float, low: float, mb) -> str:
    return f" {seconds:>11.3f} ({low:>6.3f}) " + (f"{'':>7}" if mb is None else f"{mb:7.0f}")


def _table(cases: dict, names: list[str], repeats: int) -> list[str]:
    """Stage by stage: median (min) seconds and the peak anon MB the stage added."""
    lines = [f"  seconds: median of {repeats} (min); MB: peak anonymous memory added (one run; for compare,"
             " over the memory before it)",
             f"  {'stage':<28}" + "".join(f" {n + ' s':>20} {'MB':>7}" for n in names)]
    for s in ("compare",) + STAGES + ("other", "render", "repr+rc"):
        row = f"  {s:<28}"
        for n in names:
            t, mem = cases[n]["timing"], cases[n].get("memory", {})
            mb = mem.get("anon_peak_mb") if s == "compare" else mem.get("stage_added_mb", {}).get(s)
            row += _cell(t["median"][s], t["min"][s], mb)
        lines.append(row)
    row = f"  {'after the engine (sum)':<28}"
    for n in names:
        row += _cell(_python_s(cases[n]["timing"]), _python_s(cases[n]["timing"], "min"), None)
    lines.append(row)
    row = f"  {'result kept (MB)':<28}"
    for n in names:
        kept = cases[n].get("memory", {}).get("anon_kept_mb")
        row += f" {'':>20} " + (f"{'':>7}" if kept is None else f"{kept:7.0f}")
    lines.append(row)
    row = f"  {'histories / deviation rows':<28}"
    for n in names:
        t = cases[n]["timing"]
        row += f" {t['histories']:>12} / {max(t['deviation_rows'].values(), default=0):<7}"
    lines.append(row)
    return lines


def _versus_first(cases: dict, names: list[str]) -> list[str]:
    lines = []
    for n in names[1:]:
        r = cases[n].get("vs_first")
        if not r:
            continue
        bph = "-" if r["bytes_per_history"] is None else f"{r['bytes_per_history']:.0f}"
        ok_t = "ok" if r["time"] < TIME_LIMIT else "MISSED"
        ok_m = "ok" if r["memory_added_mb"] < MEMORY_LIMIT_MB else "MISSED"
        lines.append(f"  {n} vs {names[0]}: compare {r['time']:.2f}x (target < {TIME_LIMIT:g}x: {ok_t}), after the "
                     f"engine {r['python_s']:.3f} s vs {r['python_s_first']:.3f} s; peak memory "
                     f"+{r['memory_added_mb']:.0f} MB (target < {MEMORY_LIMIT_MB:g} MB: {ok_m}), "
                     f"{bph} bytes per extra history")
        if r["stage_bytes_per_history"]:
            lines.append("    of which added by: " + ", ".join(
                f"{s} {v:.0f}" for s, v in r["stage_bytes_per_history"].items() if abs(v) >= 0.5))
    return lines


def _versus_sources(results: dict, names: list[str]) -> list[str]:
    """This photonab against every other --src, pair by pair."""
    this = results["cases"].get("this", {})
    lines = []
    for src, cases in results["cases"].items():
        if src == "this":
            continue
        for n in names:
            a, b = this.get(n, {}), cases.get(n, {})
            if "timing" not in a or "timing" not in b:
                continue
            ta, tb = a["timing"]["median"], b["timing"]["median"]
            text = (f"  {n}: compare {ta['compare']:.3f} s vs {tb['compare']:.3f} s "
                    f"({ta['compare'] / tb['compare']:.2f}x), "
                    f"after the engine {_python_s(a['timing']):.3f} s vs {_python_s(b['timing']):.3f} s, render "
                    f"{ta['render']:.3f} s vs {tb['render']:.3f} s")
            if "memory" in a and "memory" in b:
                text += (f"; peak +{a['memory']['anon_peak_mb']:.0f} MB vs +{b['memory']['anon_peak_mb']:.0f} MB, "
                         f"kept {a['memory']['anon_kept_mb']:.0f} vs {b['memory']['anon_kept_mb']:.0f} MB")
            lines.append(text)
        if lines:
            lines.insert(0, f"this vs {src} (same run, interleaved):")
    return lines


def render(results: dict) -> str:
    settings = results["settings"]
    lines = [f"many distinct histories: {size_label(settings['photons'])} photons, engine {settings['engine']}, "
             f"threads {settings['threads'] or 'all'}", one_line(results["machine"]),
             f"command: {results['command']}", ""]
    for src, cases in results["cases"].items():
        names = [n for n in settings["histories"] if n in cases and "timing" in cases[n]]
        if names:
            lines += [f"source {src}:", *_table(cases, names, settings["repeats"]), *_versus_first(cases, names), ""]
    lines += _versus_sources(results, settings["histories"])
    for f in results["failed"]:
        lines.append(f"FAILED {f['kind']} {f['source']} {f['histories']}: {f['error']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m profiles.run distinct", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photons", type=parse_count, default=parse_count(DEFAULT_PHOTONS),
                   help=f"photons of every pair, k/M allowed (default {DEFAULT_PHOTONS})")
    p.add_argument("--histories", default=DEFAULT_HISTORIES,
                   help=f"comma-separated: 'synth' (the synthesized pair), a count H of distinct histories "
                        f"(A == B), or H~F: a fraction F of B's photons migrated to new histories; ratios "
                        f"are to the first (default {DEFAULT_HISTORIES})")
    p.add_argument("--engine", default="cython", help="engine (default cython)")
    p.add_argument("--threads", type=int, default=None, help="threads of the compiled code (default all)")
    p.add_argument("--repeats", type=int, default=3, help="timed compare() runs after the warm-up (default 3)")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds over every source and pair, interleaved (default 1)")
    p.add_argument("--src", action="append", default=[], metavar="LABEL=PATH",
                   help="also measure the photonab package in PATH (e.g. an older commit's src), interleaved")
    p.add_argument("--timing-only", action="store_true", help="no memory processes")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default profiles/results/distinct-<date-time>)")
    p.add_argument("--cache", type=Path, default=None, help=f"folder of the pairs (default {default_cache()})")
    return p


def _merge(case: dict, kind: str, data: dict) -> None:
    """Keep every round's data; a later timing round adds its rounds to the median."""
    if kind not in case:
        case[kind] = data
        return
    if kind == "timing":
        rounds = case[kind]["rounds"] + data["rounds"]
        keys = list(case[kind]["min"])
        case[kind].update(rounds=rounds, min={k: min(r[k] for r in rounds) for k in keys},
                          median={k: statistics.median(r[k] for r in rounds) for k in keys})
    elif data["anon_peak_mb"] < case[kind]["anon_peak_mb"]:
        case[kind] = data  # the lower peak: the other one met memory that another process held


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "worker":
        p = argparse.ArgumentParser(prog="python -m profiles.distinct worker")
        p.add_argument("kind", choices=("timing", "memory"))
        p.add_argument("--a", type=Path, required=True)
        p.add_argument("--b", type=Path, required=True)
        p.add_argument("--engine", default="cython")
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--repeats", type=int, default=3)
        w = p.parse_args(argv[1:])
        data = worker(w.kind, w.a, w.b, w.engine, w.threads, w.repeats)
        sys.stdout.write(json.dumps(data) + "\n")
        return 0
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or args.rounds < 1:
        raise SystemExit("--repeats and --rounds must be at least 1")
    names = [h.strip() for h in args.histories.split(",") if h.strip()]
    if not names:
        raise SystemExit("--histories: give at least one entry, e.g. synth,1M")
    cache = args.cache or default_cache()
    pairs = [make_pair(h, args.photons, cache) for h in names]
    names = [p.histories for p in pairs]
    sources = _sources(args.src)
    out = results_folder(args.out, "distinct-")
    results = {"command": shlex.join([Path(sys.executable).name, "-m", "profiles.run", "distinct", *argv]),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": describe(),
               "settings": {"photons": args.photons, "histories": names, "engine": args.engine,
                            "threads": args.threads, "repeats": args.repeats, "rounds": args.rounds,
                            "sources": dict(sources), "cache": str(cache)},
               "pairs": [{"histories": p.histories, "a": str(p.a), "b": str(p.b)} for p in pairs],
               "cases": {label: {} for label, _ in sources}, "failed": []}
    kinds = ("timing",) if args.timing_only else ("timing", "memory")
    jobs = [(kind, label, src, pair) for kind in kinds for pair in pairs for label, src in sources]
    for r in range(args.rounds):
        k = r % len(jobs)
        for kind, label, src, pair in jobs[k:] + jobs[:k]:  # rotated: no job always follows another
            print(f"round {r + 1}: {kind} {label} {pair.label}", file=sys.stderr, flush=True)
            try:
                data = run_worker(kind, pair, src, args)
            except RuntimeError as exc:
                results["failed"].append({"kind": kind, "source": label, "histories": pair.histories,
                                          "error": str(exc)})
                continue
            _merge(results["cases"][label].setdefault(pair.histories, {}), kind, data)
            write_text(out / "results.json", json.dumps(results, indent=1))
    _ratios(results)
    write_text(out / "results.json", json.dumps(results, indent=1))
    text = render(results)
    write_text(out / "summary.txt", text + "\n")
    print(text)
    print(f"written to {out}: results.json, summary.txt")
    return EXIT_CASE_FAILED if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
