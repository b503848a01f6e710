"""The machine and software a run was measured on (stored with every result)."""
from __future__ import annotations

import hashlib
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git() -> dict:
    def git(*args):
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None
    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except OSError:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def cyext_build() -> str:
    """Short sha256 of the compiled cyext module in use (it identifies the build)."""
    import cyext
    return _file_digest(cyext.__file__)


def describe() -> dict:
    """CPU, cores, RAM, platform, versions, the cyext build (OpenMP, threads) and the git state."""
    import numpy
    import cyext

    from photonab.synth import usable_cores

    cores = os.cpu_count()
    usable = usable_cores()
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "usable_cores": usable,
        "ram_bytes": _ram_bytes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "numpy": numpy.__version__,
        "cython": _version("Cython"),
        "photonab": _version("photonab"),
        "cyext_file": cyext.__file__,
        "cyext_sha256": cyext_build(),
        "openmp_enabled": cyext.openmp_enabled(),
        "max_threads": cyext.max_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "git": _git(),
    }


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``; steal included)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def other_processes():
    """Measures how many cores other processes kept busy, on average, while the block ran
    a child process: the machine's busy CPU time minus the children's, over the wall time.
    Yields a dict that receives ``cores`` (None where /proc/stat is missing)."""
    load = {"cores": None}
    busy, children, t0 = _busy_cpu_seconds(), _children_cpu_seconds(), time.perf_counter()
    try:
        yield load
    finally:
        wall = time.perf_counter() - t0
        end = _busy_cpu_seconds()
        if busy is not None and end is not None and wall > 0:
            own = _children_cpu_seconds() - children
            load["cores"] = max(0.0, (end - busy - own) / wall)


#: where a run's results go, one fresh folder per run (profiles/README.md)
RESULTS = REPO / "profiles" / "results"


def results_folder(out, prefix: str = ""):
    """``out`` (created), or a fresh ``RESULTS/{prefix}{date-time}`` folder."""
    import time
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = prefix + time.strftime("%Y%m%d-%H%M%S")
    for k in range(100):
        path = RESULTS / (stamp if k == 0 else f"{stamp}-{k}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise SystemExit(f"cannot create a fresh folder under {RESULTS}")


def choice_list(text: str, choices, what: str) -> list:
    """``'a,b'`` -> the named ``choices`` in their own order, for options such as
    ``--engines``; argparse's error naming them all otherwise."""
    import argparse
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names or any(x not in choices for x in names):
        raise argparse.ArgumentTypeError(f"{what} are {', '.join(choices)}; got {text!r}")
    return [x for x in choices if x in names]


def run_json(cmd: list[str]) -> dict:
    """Run one measurement process (in the repository root) and return the JSON of its
    last stdout line, with ``other_processes_cores``: how busy the rest of the machine
    was meanwhile. RuntimeError with the tail of stderr when it fails."""
    import json
    import shlex
    import subprocess
    with other_processes() as others:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"exit {proc.returncode}: " + " | ".join(tail))
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"no JSON from {shlex.join(cmd)}: {proc.stdout[-500:]!r}") from None
    data["other_processes_cores"] = others["cores"]
    return data


def one_line(machine: dict) -> str:
    """'Intel ... | 2 cores, 23.4 GB | Python 3.11.7, numpy 2.4.6, Cython 3.3.1 | cyext OpenMP, 2 threads'."""
    ram = f"{machine['ram_bytes'] / 2**30:.1f} GiB" if machine.get("ram_bytes") else "RAM ?"
    omp = "OpenMP" if machine["openmp_enabled"] else "no OpenMP"
    git = machine.get("git") or {}
    commit = (git.get("commit") or "?")[:10] + ("+dirty" if git.get("dirty") else "")
    return (f"{machine['cpu']} | {machine['cores']} cores, {ram} | Python {machine['python']}, "
            f"numpy {machine['numpy']}, Cython {machine['cython']} | cyext {omp}, "
            f"{machine['max_threads']} threads | git {commit}")
