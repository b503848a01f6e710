"""Inputs that change while they are read, runs that race, outputs whole or not at all,
and Ctrl-C (docs/reliability.md).

What could crash the interpreter (a bus error through a memory map) runs in a child
process, so that a failure is a failed test, not a dead pytest.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, random_pair
from photonab import atomic, interrupt
from photonab.comparison import compare
from photonab.errors import EXIT_INPUT_CHANGED, InputChangedError
from photonab.events import EventPair

CHUNK = 65536  # cyext.SUM_BLOCK: the smallest chunk of the cython engine
N = 3 * CHUNK + 123  # four chunks


def run_python(code: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (from ``cwd``, with the tests' helpers importable)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "tests"))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def photonab(*args, cwd=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "photonab", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def chunked_pair(tmp_path_factory):
    """An A/B pair of four cython-engine chunks (small records: maxrec 2)."""
    return random_pair(tmp_path_factory.mktemp("chunked"), N, maxrec=2, spread=50, p_flip=0.5)


def fresh_copy(pair_dirs, tmp_path) -> tuple[Path, Path]:
    """A copy of a pair that a test may damage."""
    a, b = pair_dirs
    shutil.copytree(a, tmp_path / "1")
    shutil.copytree(b, tmp_path / "-1")
    return tmp_path / "1", tmp_path / "-1"


class OnUpdate:
    """Progress factory running ``action`` once, at the first step of the pass ``desc``:
    a hook between two chunks of an engine (or two rows, for the row-by-row engines)."""

    def __init__(self, desc, action):
        self.desc, self.action, self.done = desc, action, False

    def __call__(self, total, desc):
        hook = self

        class Bar:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def update(self, n=1):
                if desc == hook.desc and not hook.done:
                    hook.done = True
                    hook.action()
        return Bar()


def replace_file(path: Path):
    """Another file under the same name (as a job regenerating the event would do)."""
    tmp = path.with_suffix(".new")
    shutil.copyfile(path, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------- SIGBUS guard


def test_guard_turns_a_bus_error_into_zeros_and_a_count(tmp_path):
    r = run_python("""
        import os, numpy as np, cyext
        from photonab.events import guard_map
        np.save("s.npy", np.arange(1 << 20, dtype=np.uint64) % 7)
        m = np.load("s.npy", mmap_mode="r")
        slot = guard_map(m._mmap)
        os.truncate("s.npy", 8 * 4096)  # pages past 32 kB are gone
        counter = cyext.HistoryCounter()
        counter.add(m, m, 0, len(m), 2)  # on OpenMP threads, reading the lost pages
        codes, counts = counter.result()
        print(slot, cyext.guard_faults(slot) > 0, int(counts[:, 0].sum()), int(counts[codes == 0, 0][0]))
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    slot, faulted, total, zeros = r.stdout.split()
    assert int(slot) >= 0 and faulted == "True"
    assert int(total) == 1 << 20 and int(zeros) > (1 << 20) - 8 * 4096 // 8  # the lost pages read as zeros


def test_a_fault_outside_registered_maps_stays_a_crash(tmp_path):
    r = run_python("""
        import os, numpy as np, cyext
        cyext.guard_install()
        np.save("s.npy", np.arange(1 << 20, dtype=np.uint64))
        m = np.load("s.npy", mmap_mode="r")  # not registered
        os.truncate("s.npy", 4096)
        cyext.HistoryCounter().add(m, m, 0, len(m), 1)
        print("survived")
    """, tmp_path)
    assert r.returncode == -signal.SIGBUS and "survived" not in r.stdout


def test_truncated_under_the_kernels_is_a_clear_error(chunked_pair, tmp_path):
    """The per-chunk size check switched off: the kernels read the lost pages, the guard
    catches the bus error, and the comparison ends with the file named."""
    a, b = fresh_copy(chunked_pair, tmp_path)
    r = run_python(f"""
        import os
        from photonab.comparison import compare
        from photonab.engines.compiled import CythonEngine
        from photonab.errors import InputChangedError
        from photonab.events import EventPair
        EventPair.checked = lambda self, chunks: chunks  # no check between chunks
        pair = EventPair.open({str(a)!r}, {str(b)!r})
        n = [0]
        class Bar:
            def __enter__(self): return self
            def __exit__(self, *exc): return False
            def update(self, k=1):
                n[0] += 1
                if n[0] == 1:  # after the first history chunk
                    os.truncate({str(a / "ph.npy")!r}, 4096)
        try:
            compare(pair, CythonEngine(chunk={CHUNK}), progress=lambda total, desc: Bar())
        except InputChangedError as exc:
            print("ERROR", exc)
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ERROR") and "ph.npy: changed while being read" in r.stdout
    assert "bus error" in r.stdout


def test_truncated_between_chunks_is_a_plain_error_and_exit_74(chunked_pair, tmp_path):
    a, b = fresh_copy(chunked_pair, tmp_path)
    r = run_python(f"""
        import os, sys
        from photonab import cli
        import photonab.engines.compiled as compiled
        chunks = compiled.photon_chunks
        def hooked(n, chunk):  # truncate rx.npy after the first chunk of the (one) pass
            for k, item in enumerate(chunks(n, {CHUNK})):
                yield item
                if k == 0:
                    os.truncate({str(a / "rx.npy")!r}, 1000)
        compiled.photon_chunks = hooked
        sys.exit(cli.main(["compare", {str(a)!r}, {str(b)!r}, "--no-progress", "--json", "r.json"]))
    """, tmp_path)
    assert r.returncode == EXIT_INPUT_CHANGED == 74
    assert r.stderr.startswith(f"photonab: error: {a / 'rx.npy'}: changed while being read (truncated to 1000")
    assert r.stdout == "" and not (tmp_path / "r.json").exists()


# ---------------------------------------------------------------- replaced or modified inputs


@pytest.mark.parametrize("engine", ["cython", "numpy", "select"])
def test_replaced_input_is_an_error(chunked_pair, tmp_path, engine):
    from photonab.engines import get_engine
    a, b = fresh_copy(chunked_pair, tmp_path)
    eng = get_engine(engine, **({"chunk": CHUNK} if engine == "cython" else {}))
    hook = OnUpdate("photons" if engine == "cython" else "histories", lambda: replace_file(b / "rx.npy"))
    with pytest.raises(InputChangedError, match=r"-1/rx.npy: changed while being read \(replaced by another file"):
        compare(EventPair.open(a, b), eng, progress=hook)
    assert hook.done


def test_modified_input_with_allow_gives_tables_with_a_loud_warning(chunked_pair, tmp_path):
    a, b = fresh_copy(chunked_pair, tmp_path)
    pair = EventPair.open(a, b)
    clean = compare(pair, "cython")
    later = time.time() + 5
    hook = OnUpdate("photons", lambda: os.utime(a / "ox.npy", (later, later)))  # the one pass of cython
    result = compare(EventPair.open(a, b), "cython", progress=hook, allow_changing_input=True)
    text = result.render()
    assert text.startswith("WARNING: INPUT CHANGED WHILE BEING READ") and text.endswith("mtime changed")
    assert result.to_dict()["input_changed"] == [f"{a / 'ox.npy'}: modified in place: mtime changed"]
    assert result.same_tables(clean)  # same bytes, so same tables: but nobody could know
    assert clean.to_dict()["input_changed"] == []


def test_cli_allow_changing_input(chunked_pair, tmp_path, monkeypatch, capsys):
    from photonab import cli
    import photonab.engines.compiled as compiled
    a, b = fresh_copy(chunked_pair, tmp_path)
    chunks = compiled.photon_chunks

    def hooked(n, chunk):
        yield from chunks(n, CHUNK)
        replace_file(a / "ph.npy")

    monkeypatch.setattr(compiled, "photon_chunks", hooked)
    argv = ["compare", str(a), str(b), "--no-progress", "--json", str(tmp_path / "r.json")]
    assert cli.main(argv) == 74
    assert "ph.npy: changed while being read (replaced by another file" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
    rc = cli.main(argv + ["--allow-changing-input"])
    out = capsys.readouterr().out
    assert rc in range(16) and out.startswith("WARNING: INPUT CHANGED WHILE BEING READ (--allow-changing-input)")
    assert json.loads((tmp_path / "r.json").read_text())["input_changed"][0].endswith("inode changed")


def test_run_notices_an_event_that_changed_after_its_comparison(tmp_path):
    from photonab.runs import compare_run
    first = random_pair(tmp_path / "e1", 3000)
    second = random_pair(tmp_path / "e2", 3000, seed=1)
    passes = []

    def progress(total, desc):  # while the second event is compared, the first one is regenerated
        passes.append(desc)
        if passes.count("histories") == 2 and desc == "histories":
            replace_file(first[0] / "ox.npy")
        return OnUpdate(None, None)(total, desc)

    with pytest.raises(InputChangedError, match="e1/evt/1/ox.npy: changed while being read"):
        compare_run([first, second], "numpy", progress=progress)
    run = compare_run([first, second], "numpy", allow_changing_input=True)
    assert run.to_dict()["input_changed"] == []  # nothing changed this time


def test_checks_are_cheap(chunked_pair):
    pair = EventPair.open(*chunked_pair)
    t0 = time.perf_counter()
    for _ in range(200):
        pair.check_unchanged()
    assert (time.perf_counter() - t0) / 200 < 2e-3  # a few stat calls, per chunk of a million photons


# ---------------------------------------------------------------- concurrent runs, the demo cache


def test_concurrent_compares_give_identical_tables(chunked_pair, tmp_path):
    a, b = chunked_pair
    procs = [photonab("compare", a, b, "--no-progress", "--json", tmp_path / f"r{k}.json", "--threads", "1")
             for k in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert len({p.returncode for p in procs}) == 1 and procs[0].returncode in range(16)
    assert len({out for out, _err in outs}) == 1
    reports = []
    for k in range(4):
        data = json.loads((tmp_path / f"r{k}.json").read_text())
        data.pop("seconds")
        reports.append(data)
    assert all(r == reports[0] for r in reports)


def test_concurrent_demos_generate_once_and_agree(tmp_path):
    cache = tmp_path / "cache"
    procs = [photonab("demo", "--photons", "20k", "--cache", cache, "--no-progress", "--rows", "3")
             for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert len({out for out, _err in outs}) == 1
    assert sum("generating the demo pair (" in err for _out, err in outs) == 1
    from photonab.demo import demo_folder
    name = demo_folder(cache, 20000).name
    assert (cache / name).stat().st_mode & 0o755 == 0o755  # readable by all, as any folder
    assert sorted(p.name for p in cache.iterdir()) == [f".{name}.lock", name]


def test_a_killed_generator_neither_blocks_nor_leaves_a_folder(tmp_path):
    from photonab.demo import demo_folder, ensure_demo_pair
    cache = tmp_path / "cache"
    name = demo_folder(cache, 5000).name
    holder = run_python(f"""
        import os, signal
        from photonab import atomic
        with atomic.atomic_folder({str(cache / name)!r}) as tmp:
            (tmp / "half").write_text("x")
            with atomic.file_lock({str(cache / f".{name}.lock")!r}):
                os.kill(os.getpid(), signal.SIGKILL)  # killed while holding the lock, half way
    """, tmp_path)
    assert holder.returncode == -signal.SIGKILL
    assert not demo_folder(cache, 5000).exists() and any(p.name.startswith(f".{name}.tmp-") for p in cache.iterdir())
    t0 = time.perf_counter()
    a, b = ensure_demo_pair(cache, 5000, progress=False)
    assert time.perf_counter() - t0 < 60
    assert EventPair.open(a, b).n == 5000
    assert sorted(p.name for p in cache.iterdir()) == [f".{name}.lock", name]  # the leftover removed


def test_an_interrupted_generation_leaves_no_folder(tmp_path, monkeypatch):
    import photonab.synth
    from photonab.demo import demo_folder, ensure_demo_pair

    def interrupted(out, *args, **kw):
        (Path(out) / "evt").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(photonab.synth, "synthesize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_demo_pair(tmp_path, 1000, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [f".{demo_folder(tmp_path, 1000).name}.lock"]


# ---------------------------------------------------------------- outputs whole or not at all


def test_json_report_on_a_full_disk_leaves_the_previous_file(chunked_pair, tmp_path):
    a, b = chunked_pair
    (tmp_path / "r.json").write_text("previous")
    r = run_python(f"""
        import resource, sys
        from photonab import cli
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))  # "the disk fills" at 1 kB
        sys.exit(cli.main(["compare", {str(a)!r}, {str(b)!r}, "--no-progress", "--json", "r.json"]))
    """, tmp_path)
    assert r.returncode == 64 and "r.json: cannot write the JSON report (File too large)" in r.stderr
    assert (tmp_path / "r.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir() if "json" in p.name) == ["r.json"]


def test_plot_is_written_atomically(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from photonab import plots
    a, b = random_pair(tmp_path, 2000)
    result = compare(EventPair.open(a, b), "numpy")
    seen = []
    real = atomic.atomic_path

    def spy(path):
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(atomic, "atomic_path", spy)
    plots.plot_comparison(result, tmp_path / "p.png")
    assert seen == [tmp_path / "p.png"] and (tmp_path / "p.png").stat().st_size > 1000


# ---------------------------------------------------------------- Ctrl-C


@pytest.fixture(scope="module")
def big_pair(tmp_path_factory):
    """A few hundred thousand photons: long enough a run to interrupt."""
    from photonab.synth import synthesize
    return synthesize(tmp_path_factory.mktemp("big"), 300_000, seed=3, progress=False)


LAUNCHER = """
import pathlib, sys
from photonab import cli, events
check, marker = events.EventPair.check_unchanged, pathlib.Path(sys.argv[1])

def marked(self, *args, **kw):  # the engine is running: time for the Ctrl-C
    marker.touch()
    return check(self, *args, **kw)

if __name__ == "__main__":  # not in dask's spawned workers, which import this file again
    events.EventPair.check_unchanged = marked
    sys.argv = ["photonab", *sys.argv[2:]]
    sys.exit(cli.main())  # as the program (argv None)
"""


def launch(args, cwd: Path, shell: bool = False):
    """photonab ``args`` in its own process group, as the program, with a marker file that
    appears once an engine runs: (process, marker)."""
    (cwd / "launch.py").write_text(LAUNCHER)
    marker = cwd / "engine-running"
    argv = [sys.executable, str(cwd / "launch.py"), str(marker), *map(str, args)]
    if shell:  # the shell's own view of the exit status
        argv = ["bash", "-c", " ".join(f"'{a}'" for a in argv) + "; echo rc=$?"]
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    return p, marker


def interrupt_when(p, ready, delay: float = 0.1):
    """Ctrl-C the process group (as a terminal does) once ``ready()``, then ``delay`` s:
    (returncode, seconds to exit after the signal, stdout, stderr)."""
    t_end = time.time() + 120
    while not ready() and time.time() < t_end and p.poll() is None:
        time.sleep(0.02)
    time.sleep(delay)
    assert p.poll() is None, "finished before the Ctrl-C: make the run longer"
    os.killpg(p.pid, signal.SIGINT)
    t0 = time.perf_counter()
    out, err = p.communicate(timeout=60)
    return p.returncode, time.perf_counter() - t0, out, err


ENGINE_RUNS = {  # long enough to be interrupted: many events of a few hundred thousand photons
    "cython": lambda a, b: ["run", *[a, b] * 100, "--threads", "1"],
    "numpy": lambda a, b: ["run", *[a, b] * 20, "--engine", "numpy"],
    "select": lambda a, b: ["compare", a, b, "--engine", "select"],
    "dask": lambda a, b: ["run", *[a, b] * 20, "--engine", "dask"],
}


@pytest.mark.parametrize("engine", list(ENGINE_RUNS))
def test_ctrl_c_ends_within_a_second_with_130_and_one_line(big_pair, tmp_path, engine):
    if engine == "dask":
        pytest.importorskip("distributed")
    a, b = big_pair
    p, marker = launch(ENGINE_RUNS[engine](a, b) + ["--no-progress", "--json", "r.json"], tmp_path)
    rc, seconds, out, err = interrupt_when(p, marker.exists)
    assert (rc, out, err) == (130, "", "photonab: interrupted\n")
    assert seconds < 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine-running", "launch.py"]  # no report, no sibling


def test_ctrl_c_in_synth(tmp_path):
    p, _ = launch(["synth", tmp_path / "s", "--photons", "4M", "--no-progress"], tmp_path)
    rc, seconds, out, err = interrupt_when(p, lambda: (tmp_path / "s").exists(), delay=0.3)
    assert (rc, out, err) == (130, "", "photonab: interrupted\n")
    assert seconds < 1.0


def test_the_shell_sees_130(big_pair, tmp_path):
    a, b = big_pair
    p, marker = launch(ENGINE_RUNS["cython"](a, b) + ["--no-progress"], tmp_path, shell=True)
    rc, seconds, out, err = interrupt_when(p, marker.exists)
    assert (out, err) == ("rc=130\n", "photonab: interrupted\n")


def test_forked_workers_leave_ctrl_c_to_the_program(tmp_path):
    r = run_python("""
        import os, signal, time
        from photonab import interrupt
        def main(argv):
            pid = os.fork()
            if pid == 0:  # a forked worker: a Ctrl-C to the group is not for it
                time.sleep(0.3)
                os._exit(7)
            os.killpg(0, signal.SIGINT)
            time.sleep(0.1)
            _, status = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(status))
            time.sleep(5)
            return 0
        os.setpgid(0, 0)
        interrupt.program(lambda argv=None: main(argv))()
    """, tmp_path)
    assert r.returncode == 130
    assert r.stderr == "photonab: interrupted\n"


def test_without_sigint_blocks_it_in_what_it_starts():
    import threading
    seen = {}

    def make():
        t = threading.Thread(target=lambda: seen.update(mask=signal.pthread_sigmask(signal.SIG_BLOCK, [])))
        t.start()
        t.join()
        return 5

    assert interrupt.without_sigint(make) == 5
    assert signal.SIGINT in seen["mask"]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
