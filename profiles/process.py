"""Whole processes (issue 12): start-up, the CLI against a floor process, two threads against one.

    python -m profiles.run process                       # 10M photons
    python -m profiles.run process --sizes 1M,10M
    python -m profiles.run process --quick               # smoke run: 20k photons, few repeats

start-up  interleaved fresh processes (a warm-up round, then --startup-repeats rounds, the
          order rotated every round): python -c pass, python -c "import numpy",
          python -c "import photonab, cyext", the same with "from photonab import compare",
          python -m photonab --help and python -m photonab compare --help; min and median
          wall time, and the median over the bare interpreter against the 0.15 s target.
          One more run of each under -X importtime lists what it loads: scipy, matplotlib,
          tqdm, dask and distributed must be absent.
whole     on the cached pair of every --sizes (profiles.pairs), interleaved rounds of
          python -m photonab compare A B --no-progress (stdout to /dev/null) and a floor
          process: python -c that imports numpy and cyext, opens ph, rx and ox of A and B
          memory-mapped and reads their bytes once with cyext.read_floor (as the in-process
          floor of profiles.timing), warm page cache (a warm-up of each first); the ratio
          CLI / floor process against the 1.15 target, the CPU seconds and peak RSS of both.
bytecode  start-up and the CLI are measured in each --bytecode mode, interleaved: cached
          (the bytecode caches in a folder of their own, PYTHONPYCACHEPREFIX, written by the
          warm-up: what an installed package has) and none (PYTHONDONTWRITEBYTECODE=1: an
          editable install whose tree has no __pycache__ compiles every photonab module on
          every run; the results say whether the tree had one). The floor process imports
          no photonab module and runs once per round.
threads   the in-process comparison (cython engine, one engine object per thread count) in
          a fresh worker process, 1 and 2 threads alternately, quiet and with a competing
          load (a busy-loop process the harness starts, pinned to one core unless
          --load-pin none, and kills after each block), the quiet and loaded blocks
          interleaved round by round; 2-thread time / 1-thread time per case against "never
          slower by more than noise" (noise: the larger relative spread, median over min,
          of the two series, at least 3%). The tables of every thread count must be equal.

Every timed process or comparison records how many cores other processes kept busy meanwhile
(the busy loop excluded): a run above 0.25 cores is counted as disturbed in the summary.

Outputs (--out, default profiles/results/process-<date-time>/): results.json, summary.txt,
written atomically (results.json after every part). A benchmark, not a timed test: a missed
target is reported, it does not change the exit code (4 when a measurement failed).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from photonab.atomic import write_text

from .machine import REPO, _busy_cpu_seconds, choice_list, describe, one_line, other_processes, results_folder
from .pairs import cached_pair, default_cache, parse_sizes

DEFAULT_SIZES, QUICK_SIZES = "10M", "20k"
#: (name, interpreter arguments) of the start-up commands; "bare" is the reference
STARTUP = (
    ("bare", ("-c", "pass")),
    ("numpy", ("-c", "import numpy")),
    ("import", ("-c", "import photonab, cyext")),
    ("compare", ("-c", "import photonab, cyext; from photonab import compare")),
    ("help", ("-m", "photonab", "--help")),
    ("cmp_help", ("-m", "photonab", "compare", "--help")),
)
#: the commands the start-up target is stated for (issue 12); the others are shown for scale
STARTUP_TARGETED = ("import", "compare", "help", "cmp_help")
#: how the bytecode of photonab (and numpy) is had (module docstring, "bytecode")
BYTECODE_MODES = ("cached", "none")
STARTUP_LIMIT_S = 0.15
#: modules that must load only when used (issue 12)
HEAVY = ("scipy", "matplotlib", "tqdm", "dask", "distributed")
PROCESS_LIMIT = 1.15  # whole CLI process / floor process
IN_PROCESS_LIMIT = 1.05  # the four tables in-process / the read floor, quiet and loaded
NOISE_MIN = 0.03  # two threads may be this much slower than one (at least) and still "within noise"
DISTURBED_CORES = 0.25  # other processes' average busy cores that make a run "disturbed"
SETTLE_S = 0.1  # let the busy loop start spinning before timing beside it
EXIT_CASE_FAILED = 4
#: the floor process: import numpy and cyext, open the same files memory-mapped, read the bytes once
FLOOR_SCRIPT = """\
import os, sys, time
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as python -m photonab does
t0 = time.perf_counter()
import numpy as np
import cyext
t1 = time.perf_counter()
arrays = [np.load(os.path.join(d, n + ".npy"), mmap_mode="r") for d in sys.argv[1:3] for n in ("ph", "rx", "ox")]
t2 = time.perf_counter()
cyext.read_floor(arrays)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, sum(a.nbytes for a in arrays))
"""
FLOOR_SHOWN = "python -c '<import numpy, cyext; np.load ph, rx, ox of A and B (mmap); cyext.read_floor of the six>' A B"


# ---------------------------------------------------------------- bytecode modes


def bytecode_env(mode: str, prefix: Path) -> dict:
    """The environment of the child processes of one --bytecode mode (``prefix``: the folder
    of the cached mode's bytecode)."""
    env = dict(os.environ)
    if mode == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(prefix)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def tree_bytecode() -> bool:
    """Does photonab's own tree hold bytecode caches (then the none mode reads them too)?"""
    import importlib.util

    import photonab.cli
    return os.path.exists(importlib.util.cache_from_source(photonab.cli.__file__))


# ---------------------------------------------------------------- child processes


def spawn(cmd, *, capture: bool = False, env=None) -> dict:
    """Run ``cmd`` to its end: wall seconds, exit code, its CPU seconds and peak RSS (wait4),
    how many cores other processes kept busy meanwhile, and its stdout when ``capture``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with other_processes() as others:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL,
                                    stdout=out if capture else subprocess.DEVNULL, stderr=err, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "rc": proc.returncode, "cpu_s": usage.ru_utime + usage.ru_stime,
                "maxrss_mb": usage.ru_maxrss / 1024, "other_cores": others["cores"],
                "stdout": out.read().decode(errors="replace") if capture else "",
                "stderr": err.read().decode(errors="replace")}


def _spread(values) -> dict:
    return {"min": min(values), "median": statistics.median(values)}


def _disturbed(values) -> int:
    return sum(1 for v in values if v is not None and v > DISTURBED_CORES)


def _series(runs: list[dict]) -> dict:
    """The numbers of a list of spawn() results."""
    wall = [r["wall_s"] for r in runs]
    others = [r["other_cores"] for r in runs]
    return {"seconds": wall, **_spread(wall), "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
            "maxrss_mb_median": statistics.median(r["maxrss_mb"] for r in runs), "other_cores": others,
            "disturbed": _disturbed(others)}


# ---------------------------------------------------------------- start-up


def imported(args, python=sys.executable, env=None) -> dict:
    """What a command loads: -X importtime's modules, the heavy ones among them, the top-level
    imports that took longest (cumulative, ms)."""
    run = subprocess.run([python, "-X", "importtime", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    names, top = set(), []
    for line in run.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        try:
            _, cumulative, name = line[len("import time:"):].split("|")
            cumulative = int(cumulative)
        except ValueError:
            continue
        names.add(name.strip())
        if name.startswith(" ") and not name.startswith("  "):  # one space: imported at top level
            top.append((cumulative / 1000, name.strip()))
    top.sort(reverse=True)
    roots = {n.split(".")[0] for n in names}
    return {"modules": len(names), "heavy": [m for m in HEAVY if m in roots],
            "top_imports_ms": [[n, round(ms, 1)] for ms, n in top[:5]], "rc": run.returncode}


def startup(repeats: int, envs: dict, python=sys.executable) -> dict:
    """Interleaved fresh processes of every start-up command in every bytecode mode (``envs``:
    mode -> environment); per mode, their times and what they load."""
    keys = [(mode, name) for mode in envs for name, _ in STARTUP]
    cmds = {name: [python, *args] for name, args in STARTUP}
    for mode, name in keys:  # warm-up: bytecode caches, the files in the page cache
        spawn(cmds[name], env=envs[mode])
    runs = {key: [] for key in keys}
    for r in range(repeats):
        k = r % len(keys)
        for mode, name in keys[k:] + keys[:k]:  # rotated, so that no command always follows another
            runs[(mode, name)].append(spawn(cmds[name], env=envs[mode]))
    out = {}
    for mode, env in envs.items():
        per = out[mode] = {}
        for name, args in STARTUP:
            failed = [r for r in runs[(mode, name)] if r["rc"] != 0]
            if failed:
                raise RuntimeError(f"{shlex.join(['python', *args])} exits {failed[0]['rc']}: "
                                   f"{failed[0]['stderr'].strip()[-300:]}")
            per[name] = {"command": shlex.join(["python", *args]), **_series(runs[(mode, name)]),
                         **imported(args, python, env)}
        bare, numpy = per["bare"], per["numpy"]
        for name, data in per.items():
            data["over_bare"] = {"median": data["median"] - bare["median"], "min": data["min"] - bare["min"]}
            # what photonab adds to numpy's own import (numpy alone is most of the start-up)
            data["over_numpy"] = {"median": data["median"] - numpy["median"], "min": data["min"] - numpy["min"]}
    return out


# ---------------------------------------------------------------- whole process


def whole_process(pair, repeats: int, envs: dict, python=sys.executable) -> dict:
    """Interleaved rounds of the CLI (in every bytecode mode of ``envs``) and the floor process
    on one pair, warm page cache."""
    cli = [python, "-m", "photonab", "compare", str(pair.a), str(pair.b), "--no-progress"]
    floor = [python, "-c", FLOOR_SCRIPT, str(pair.a), str(pair.b)]

    def run_cli(mode):
        r = spawn(cli, env=envs[mode])
        if not 0 <= r["rc"] < 64:  # the table bits are 1..31 (docs/verdict.md); 64 and above: a failure
            raise RuntimeError(f"python -m photonab compare exits {r['rc']}: {r['stderr'].strip()[-300:]}")
        return r

    def run_floor():
        r = spawn(floor, capture=True)
        if r["rc"]:
            raise RuntimeError(f"the floor process exits {r['rc']}: {r['stderr'].strip()[-300:]}")
        r["inner"] = [float(v) for v in r["stdout"].split()]
        return r

    run_floor()  # warm-up: the pages into the page cache, the bytecode caches
    for mode in envs:
        run_cli(mode)
    order = ["floor", *envs]
    runs = {name: [] for name in order}
    for r in range(repeats):
        k = r % len(order)
        for name in order[k:] + order[:k]:  # rotated
            runs[name].append(run_floor() if name == "floor" else run_cli(name))
    floor_runs = runs["floor"]
    inner = {key: statistics.median(r["inner"][k] for r in floor_runs)
             for k, key in enumerate(("import_s", "open_s", "read_s"))}
    floor_bytes = int(floor_runs[0]["inner"][3])
    f = _series(floor_runs)
    clis = {mode: {"command": "python -m photonab compare A B --no-progress > /dev/null", "rc": runs[mode][0]["rc"],
                   **_series(runs[mode])} for mode in envs}
    return {"photons": pair.photons, "size": pair.label, "repeats": repeats,
            "cli": clis,
            "floor": {"command": FLOOR_SHOWN, **f, "inner_median": inner, "bytes": floor_bytes,
                      "read_gbps": floor_bytes / inner["read_s"] / 1e9},
            "ratio": {mode: {"median": c["median"] / f["median"], "min": c["min"] / f["min"]}
                      for mode, c in clis.items()}}


# ---------------------------------------------------------------- threads


def _worker(argv) -> int:
    """``python -m profiles.process worker --a A --b B --threads 1,2``: opens the pair, makes one
    cython engine per thread count, checks that their tables agree, says ``ready``; then for every
    line ``K`` on stdin runs one comparison on K threads and answers its wall and CPU seconds
    (``floor K``: one read floor of the same bytes on K threads)."""
    p = argparse.ArgumentParser(prog="python -m profiles.process worker")
    p.add_argument("--a", required=True, type=Path)
    p.add_argument("--b", required=True, type=Path)
    p.add_argument("--threads", required=True)
    args = p.parse_args(argv)
    import gc

    from photonab import EventPair
    from photonab.comparison import compare
    from photonab.engines import get_engine

    from .timing import floor_arrays, read_floor, table_digest

    counts = [int(k) for k in args.threads.split(",")]
    pair = EventPair.open(args.a, args.b)
    engines = {k: get_engine("cython", n_threads=k) for k in counts}
    read_floor(floor_arrays(pair))  # the pages in
    digests = {k: table_digest(compare(pair, engines[k])) for k in counts}  # and a warm-up of each
    print(json.dumps({"ready": True, "digests": digests, "threads": {k: e.n_threads for k, e in engines.items()}}),
          flush=True)
    arrays = floor_arrays(pair)
    for line in sys.stdin:
        if line.startswith("floor"):  # "floor K": one read of the same bytes on K threads
            k = int(line.split()[1])
            c0 = time.process_time()
            wall = read_floor(arrays, k)
            print(json.dumps({"threads": k, "wall_s": wall, "cpu_s": time.process_time() - c0}), flush=True)
            continue
        k = int(line)
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        result = compare(pair, engines[k])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        del result
        print(json.dumps({"threads": k, "wall_s": wall, "cpu_s": cpu}), flush=True)
    return 0


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a running process, from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def start_load(pin, python=sys.executable) -> subprocess.Popen:
    """The competing load: a busy-loop process, pinned to core ``pin`` (None: free to move)."""
    hog = subprocess.Popen([python, "-c", "while True: pass"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if pin is not None:
        try:
            os.sched_setaffinity(hog.pid, {pin})
        except OSError:
            pass
    time.sleep(SETTLE_S)
    return hog


def stop_load(hog: subprocess.Popen) -> None:
    hog.kill()  # this process started it: ended by its own id
    hog.wait()


def _load_pin(text: str):
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a core number or none") from None


def default_pin():
    """The last core this process may use (the busy loop shares it with one kernel thread)."""
    try:
        return max(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def threads(pair, counts: list[int], rounds: int, pin, python=sys.executable) -> dict:
    """1 vs 2 (``counts``) threads in one worker process, quiet and beside the busy loop,
    interleaved round by round."""
    cmd = [python, "-m", "profiles.process", "worker", "--a", str(pair.a), "--b", str(pair.b),
           "--threads", ",".join(map(str, counts))]
    worker = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    cases = ("quiet", "loaded")
    times = {(case, k): [] for case in cases for k in [*counts, "floor"]}
    try:
        line = worker.stdout.readline()
        if not line:
            raise RuntimeError(f"the threads worker died: {worker.stderr.read().strip()[-300:]}")
        ready = json.loads(line)
        for r in range(rounds):
            for case in (cases if r % 2 == 0 else cases[::-1]):
                hog = start_load(pin, python) if case == "loaded" else None
                try:
                    # the read floor on the most threads beside the comparisons: their ratio, quiet and loaded
                    order = [*counts, "floor"] if (r + (case == "loaded")) % 2 == 0 else ["floor", *counts[::-1]]
                    for k in order:
                        busy0, hog0, t0 = _busy_cpu_seconds(), hog and _proc_cpu(hog.pid), time.perf_counter()
                        worker.stdin.write(f"{k}\n" if k != "floor" else f"floor {counts[-1]}\n")
                        worker.stdin.flush()
                        answer = worker.stdout.readline()
                        if not answer:
                            raise RuntimeError(f"the threads worker died: {worker.stderr.read().strip()[-300:]}")
                        data = json.loads(answer)
                        wall, busy1 = time.perf_counter() - t0, _busy_cpu_seconds()
                        hog_cpu = (_proc_cpu(hog.pid) - hog0) if hog else 0.0
                        others = None
                        if busy0 is not None and busy1 is not None and wall > 0:
                            others = max(0.0, (busy1 - busy0 - data["cpu_s"] - hog_cpu) / wall)
                        data["other_cores"] = others
                        data["load_cores"] = hog_cpu / wall if hog else 0.0
                        times[(case, k)].append(data)
                finally:
                    if hog is not None:
                        stop_load(hog)
    finally:
        if worker.stdin:
            worker.stdin.close()
        worker.wait(timeout=60)
    out = {"photons": pair.photons, "size": pair.label, "rounds": rounds, "counts": counts,
           "load": {"command": "python -c 'while True: pass'",
                    "pinned_to_core": pin, "settle_s": SETTLE_S},
           "tables_equal": len(set(ready["digests"].values())) == 1, "digests": ready["digests"], "cases": {}}
    for case in cases:
        per = {}
        for k in counts:
            runs = times[(case, k)]
            wall = [d["wall_s"] for d in runs]
            per[str(k)] = {"seconds": wall, **_spread(wall),
                           "cpu_per_wall_median": statistics.median(d["cpu_s"] / d["wall_s"] for d in runs),
                           "other_cores": [d["other_cores"] for d in runs],
                           "load_cores_median": statistics.median(d["load_cores"] for d in runs),
                           "disturbed": _disturbed(d["other_cores"] for d in runs)}
        one, many = per[str(counts[0])], per[str(counts[-1])]
        noise = max(NOISE_MIN, *((s["median"] - s["min"]) / s["min"] for s in (one, many)))
        ratio = many["median"] / one["median"]
        paired = [b / a for a, b in zip(one["seconds"], many["seconds"])]
        floor = [d["wall_s"] for d in times[(case, "floor")]]
        out["cases"][case] = {"threads": per, "ratio": {"median": ratio, "min": many["min"] / one["min"],
                                                        "paired_median": statistics.median(paired),
                                                        "paired": paired},
                              "noise": noise, "within_noise": ratio <= 1 + noise,
                              "floor": {"seconds": floor, **_spread(floor)},
                              "vs_floor": {"median": many["median"] / statistics.median(floor),
                                           "min": many["min"] / min(floor)}}
    return out


# ---------------------------------------------------------------- targets and summary


def _target(text, size, measured, limit, met, note="") -> dict:
    return {"target": text, "size": size, "measured": measured, "limit": limit,
            "status": "n/a" if measured is None else ("met" if met else "MISSED"), "note": note}


def evaluate(results: dict) -> list[dict]:
    out = []
    for mode, st in (results.get("startup") or {}).items():
        for name in STARTUP_TARGETED:
            d = st[name]
            over = d["over_bare"]
            out.append(_target(f"start-up {d['command']} within {STARTUP_LIMIT_S:g} s of python -c pass "
                               f"(bytecode {mode})", None, over["median"], STARTUP_LIMIT_S,
                               over["median"] <= STARTUP_LIMIT_S, f"medians; the minima give {over['min']:.3g} s"))
        heavy = {d["command"]: d["heavy"] for name, d in st.items() if name in STARTUP_TARGETED and d["heavy"]}
        out.append(_target(f"the start-up commands load none of {', '.join(HEAVY)} (bytecode {mode})", None,
                           sum(map(len, heavy.values())), 0, not heavy,
                           "; ".join(f"{c}: {', '.join(h)}" for c, h in heavy.items())))
    for w in results.get("whole", []):
        for mode, ratio in w["ratio"].items():
            out.append(_target(f"whole CLI process <= {PROCESS_LIMIT:g}x the floor process (bytecode {mode})",
                               w["size"], ratio["median"], PROCESS_LIMIT, ratio["median"] <= PROCESS_LIMIT,
                               _notes(f"medians; the minima give {ratio['min']:.3g}",
                                      "" if w["size"] == "10M" else "stated at 10M photons")))
    for t in results.get("threads", []):
        hi = t["counts"][-1]
        for case, c in t["cases"].items():
            out.append(_target(f"{hi} threads never slower than {t['counts'][0]} by more than noise ({case})",
                               t["size"], c["ratio"]["median"], 1 + c["noise"], c["within_noise"],
                               f"medians; noise {c['noise']:.0%}; minima {c['ratio']['min']:.3g}"))
        for case, c in t["cases"].items():
            v = c["vs_floor"]
            out.append(_target(f"four tables in-process on {hi} threads <= {IN_PROCESS_LIMIT:g}x the read floor "
                               f"({case})", t["size"], v["median"], IN_PROCESS_LIMIT, v["median"] <= IN_PROCESS_LIMIT,
                               f"medians; the minima give {v['min']:.3g}"))
        if not t["tables_equal"]:
            out.append(_target("tables equal for every thread count", t["size"], 0, 1, False, str(t["digests"])))
    return out


def _notes(*notes) -> str:
    return "; ".join(n for n in notes if n)


def _dist(d: dict) -> str:
    return f" ({d['disturbed']} disturbed)" if d.get("disturbed") else ""


def render(results: dict) -> str:
    s = results["settings"]
    parts = ["process (issue 12): start-up, the whole CLI against a floor process, 2 threads against 1"]
    b = results.get("bytecode") or {}
    if b:
        parts.append(f"bytecode modes: {', '.join(b['modes'])}; cached = bytecode caches in their own folder "
                     "(PYTHONPYCACHEPREFIX, as an installed package has them), none = PYTHONDONTWRITEBYTECODE=1 "
                     f"({'the tree has photonab bytecode: read' if b['tree_bytecode'] else 'the tree has no photonab bytecode: every module compiled on every run'}); "
                     f"this environment: PYTHONDONTWRITEBYTECODE={b['environment'] or 'unset'}")
    for mode, st in (results.get("startup") or {}).items():
        parts.append(f"start-up, bytecode {mode}: {s['startup_repeats']} interleaved rounds of fresh processes (after a "
                     "warm-up); seconds of wall time; over bare = median - median of python -c pass (min - min); over "
                     "numpy: the same against python -c 'import numpy'")
        parts.append(f"  {'case':<8} {'min':>7} {'median':>7} {'over bare':>18} {'over numpy':>18} {'modules':>7}  "
                     "heavy   command")
        for name, d in st.items():
            over = "-" if name == "bare" else f"{d['over_bare']['median']:+.3f} ({d['over_bare']['min']:+.3f})"
            on = "-" if name in ("bare", "numpy") else f"{d['over_numpy']['median']:+.3f} ({d['over_numpy']['min']:+.3f})"
            parts.append(f"  {name:<8} {d['min']:>7.3f} {d['median']:>7.3f} {over:>18} {on:>18} {d['modules']:>7}  "
                         f"{','.join(d['heavy']) or 'none':<7} {d['command']}{_dist(d)}")
        for name in ("import", "compare", "help"):
            if name in st and st[name]["top_imports_ms"]:
                tops = ", ".join(f"{n} {ms:g} ms" for n, ms in st[name]["top_imports_ms"])
                parts.append(f"  slowest top-level imports of {name} (-X importtime, cumulative): {tops}")
    for w in results.get("whole", []):
        f = w["floor"]
        inner = f["inner_median"]
        parts.append(f"whole process at {w['size']}: {w['repeats']} interleaved rounds (after a warm-up), warm page "
                     f"cache; wall seconds, CPU seconds (user+sys) and peak RSS medians")
        parts.append(f"  {'process':<12} {'min':>7} {'median':>7} {'cpu s':>7} {'RSS MB':>7}  command")
        for name, d in [(f"cli {mode}", c) for mode, c in w["cli"].items()] + [("floor", f)]:
            parts.append(f"  {name:<12} {d['min']:>7.3f} {d['median']:>7.3f} {d['cpu_s_median']:>7.3f} "
                         f"{d['maxrss_mb_median']:>7.0f}  {d['command']}{_dist(d)}")
        parts.append(f"  floor inside: imports {inner['import_s']:.3f} s, opening {inner['open_s']:.3f} s, reading "
                     f"{f['bytes'] / 1e9:.2f} GB {inner['read_s']:.3f} s ({f['read_gbps']:.1f} GB/s)")
        for mode, ratio in w["ratio"].items():
            parts.append(f"  CLI (bytecode {mode}) / floor process: {ratio['median']:.3f}x (medians), "
                         f"{ratio['min']:.3f}x (minima); CLI exit {w['cli'][mode]['rc']} (table bits)")
    for t in results.get("threads", []):
        pin = t["load"]["pinned_to_core"]
        where = "free to move" if pin is None else f"pinned to core {pin}"
        lo, hi = t["counts"][0], t["counts"][-1]
        parts.append(f"threads at {t['size']}: photonab.compare(pair, cython engine) in one worker process, "
                     f"{t['rounds']} rounds; loaded = beside a busy-loop process {where}; tables for every "
                     f"thread count {'identical' if t['tables_equal'] else 'DIFFER'}")
        parts.append(f"  {'case':<7} {f'{lo} thread min/median':>22} {f'{hi} threads min/median':>23} "
                     f"{f'{hi}/{lo} median (min)':>19} {'paired':>7} {'noise':>6} {'cpu/wall':>9} {'others':>7}  verdict")
        for case, c in t["cases"].items():
            a, b = c["threads"][str(lo)], c["threads"][str(hi)]
            others = [v for k in (str(lo), str(hi)) for v in c["threads"][k]["other_cores"] if v is not None]
            verdict = "within noise" if c["within_noise"] else "SLOWER"
            disturbed = a["disturbed"] + b["disturbed"]
            parts.append(f"  {case:<7} {a['min']:>10.3f} / {a['median']:<10.3f} {b['min']:>11.3f} / {b['median']:<10.3f}"
                         f" {c['ratio']['median']:>10.3f} ({c['ratio']['min']:.3f}) {c['ratio']['paired_median']:>7.3f}"
                         f" {c['noise']:>6.0%} {a['cpu_per_wall_median']:>4.2f}/{b['cpu_per_wall_median']:<4.2f}"
                         f" {statistics.median(others) if others else float('nan'):>7.2f}  {verdict}"
                         + (f" ({disturbed} disturbed)" if disturbed else ""))
        for case, c in t["cases"].items():
            f, v = c["floor"], c["vs_floor"]
            parts.append(f"  {case:<7} read floor on {hi} threads {f['min']:.3f} / {f['median']:.3f} s: the four "
                         f"tables on {hi} threads take {v['median']:.3f}x it (medians), {v['min']:.3f}x (minima)")
        parts.append("  paired = median over rounds of the 2-thread time / the 1-thread time next to it; cpu/wall = "
                     "CPU seconds of the worker per wall second (1 and 2 threads); others = cores other processes "
                     "kept busy (the busy loop excluded)")
    parts.append("targets (issue 12; a benchmark, not a timed test):")
    for t in results.get("targets", []):
        measured = "-" if t["measured"] is None else f"{t['measured']:.3g}"
        at = f" at {t['size']}" if t["size"] else ""
        parts.append(f"  {t['status']:>7}  {t['target']}{at}: {measured}" + (f"  ({t['note']})" if t["note"] else ""))
    for f in results.get("failed", []):
        parts.append(f"FAILED {f['part']}{' at ' + f['size'] if f.get('size') else ''}: {f['error']}")
    parts.append("machine: " + one_line(results["machine"]))
    la0, la1 = results.get("loadavg_start"), results.get("loadavg_end")
    if la0:
        parts.append(f"load average (1, 5, 15 min) at the start {', '.join(f'{v:.2f}' for v in la0)}"
                     + (f", at the end {', '.join(f'{v:.2f}' for v in la1)}" if la1 else "")
                     + f" on {results['machine']['cores']} cores")
    disturbed = _count_disturbed(results)
    if disturbed:
        parts.append(f"note: {disturbed} timed runs had other processes keeping more than {DISTURBED_CORES:g} cores "
                     "busy: a shared machine; these times are noisy, measure on a quiet machine")
    return "\n".join(parts)


def _count_disturbed(results: dict) -> int:
    n = sum(d.get("disturbed", 0) for st in (results.get("startup") or {}).values() for d in st.values())
    n += sum(w["floor"]["disturbed"] + sum(c["disturbed"] for c in w["cli"].values()) for w in results.get("whole", []))
    n += sum(p["disturbed"] for t in results.get("threads", []) for c in t["cases"].values()
             for p in c["threads"].values())
    return n


# ---------------------------------------------------------------- the run


def _counts(text: str) -> list[int]:
    return parse_sizes(text, "10M")


def _thread_counts(text: str) -> list[int]:
    try:
        counts = [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: two thread counts like 1,2") from None
    if len(counts) != 2 or min(counts) < 1 or counts[0] >= counts[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: two increasing thread counts like 1,2")
    return counts


PARTS = ("startup", "whole", "threads")


def _parts(text: str) -> list[str]:
    return choice_list(text, PARTS, "parts")


def _modes(text: str) -> list[str]:
    return choice_list(text, BYTECODE_MODES, "bytecode modes")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m profiles.run process", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=_counts, default=None,
                   help=f"photons per event of the pairs (default {DEFAULT_SIZES}; --quick {QUICK_SIZES})")
    p.add_argument("--parts", type=_parts, default=list(PARTS), help="startup, whole, threads (default all)")
    p.add_argument("--quick", action="store_true", help="smoke run: a tiny pair, few repeats")
    p.add_argument("--bytecode", type=_modes, default=list(BYTECODE_MODES),
                   help="bytecode modes of start-up and the CLI: cached, none (default both; module docstring)")
    p.add_argument("--startup-repeats", type=int, default=None, help="start-up rounds (default 15; --quick 3)")
    p.add_argument("--repeats", type=int, default=None, help="whole-process rounds (default 7; --quick 2)")
    p.add_argument("--thread-rounds", type=int, default=None,
                   help="rounds of the threads part, each quiet and loaded (default 7; --quick 2)")
    p.add_argument("--thread-counts", type=_thread_counts, default=[1, 2], help="the two thread counts (default 1,2)")
    p.add_argument("--load-pin", type=_load_pin, default=default_pin(), metavar="CORE",
                   help=f"core the busy loop is pinned to, or none (default {default_pin()}: the last usable core)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default profiles/results/process-<date-time>)")
    p.add_argument("--cache", type=Path, default=None, help=f"folder of the synthetic pairs (default {default_cache()})")
    p.add_argument("--regenerate", action="store_true", help="synthesize the pairs again even if cached")
    return p


def _settle(args) -> None:
    if args.sizes is None:
        args.sizes = _counts(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    for name, normal, quick in (("startup_repeats", 15, 3), ("repeats", 7, 2), ("thread_rounds", 7, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")


def _out_dir(out: Path | None) -> Path:
    return results_folder(out, "process-")


def save(results: dict, out: Path) -> Path:
    path = out / "results.json"
    write_text(path, json.dumps(results, indent=1))
    return path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "worker":
        return _worker(argv[1:])
    args = build_parser().parse_args(argv)
    _settle(args)
    cache = args.cache or default_cache()
    pairs = []
    if {"whole", "threads"} & set(args.parts):
        try:
            pairs = [cached_pair(n, cache, regenerate=args.regenerate) for n in args.sizes]
        except OSError as exc:
            raise SystemExit(f"cannot prepare the synthetic pairs: {exc}") from None
    out = _out_dir(args.out)
    pycache = tempfile.TemporaryDirectory(prefix="photonab-pycache-")  # the cached mode's bytecode
    envs = {mode: bytecode_env(mode, Path(pycache.name)) for mode in args.bytecode}
    results = {"kind": "process", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "command": shlex.join(["python", "-m", "profiles.run", "process", *argv]), "machine": describe(),
               "environment": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                                                               "GOMP_SPINCOUNT", "OPENBLAS_NUM_THREADS")},
               "loadavg_start": list(os.getloadavg()),
               "bytecode": {"modes": args.bytecode, "environment": os.environ.get("PYTHONDONTWRITEBYTECODE"),
                            "tree_bytecode": tree_bytecode()},
               "settings": {"sizes": args.sizes, "parts": args.parts, "startup_repeats": args.startup_repeats,
                            "repeats": args.repeats, "thread_rounds": args.thread_rounds,
                            "thread_counts": args.thread_counts, "load_pin": args.load_pin, "cache": str(cache),
                            "disturbed_cores": DISTURBED_CORES, "noise_min": NOISE_MIN},
               "pairs": [{"photons": p.photons, "size": p.label, "a": str(p.a), "b": str(p.b), "recipe": p.recipe}
                         for p in pairs],
               "whole": [], "threads": [], "failed": []}

    def attempt(part, size, fn):
        print(f"{part}{' ' + size if size else ''}", file=sys.stderr, flush=True)
        try:
            return fn()
        except (RuntimeError, OSError, ValueError) as exc:
            results["failed"].append({"part": part, "size": size, "error": str(exc)})
            print(f"FAILED {part} {size or ''}: {exc}", file=sys.stderr)
            return None
        finally:
            save(results, out)

    if "startup" in args.parts:
        results["startup"] = attempt("startup", None, lambda: startup(args.startup_repeats, envs))
    for pair in pairs:  # size by size, so that each pair stays in the page cache
        if "whole" in args.parts:
            w = attempt("whole", pair.label, lambda: whole_process(pair, args.repeats, envs))
            if w:
                results["whole"].append(w)
        if "threads" in args.parts:
            t = attempt("threads", pair.label,
                        lambda: threads(pair, args.thread_counts, args.thread_rounds, args.load_pin))
            if t:
                results["threads"].append(t)
    pycache.cleanup()
    results["loadavg_end"] = list(os.getloadavg())
    results["targets"] = evaluate(results)
    written = [save(results, out)]
    text = render(results)
    written.append(out / "summary.txt")
    write_text(written[-1], text + "\n")
    print(text)
    print(f"written to {out}: " + ", ".join(os.path.relpath(p, out) for p in written))
    return EXIT_CASE_FAILED if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
