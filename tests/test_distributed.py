"""The dask engine gives the cython engine's tables exactly, survives a dying worker (or
says clearly that it could not), and names the worker and the file when a worker
cannot read the events."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
import cloudpickle  # noqa: E402  (a dependency of distributed)
import dask  # noqa: E402

from conftest import _unshadow_cyext, random_pair  # noqa: E402
from photonab import EventPair, compare  # noqa: E402
from photonab.engines import get_engine  # noqa: E402
from photonab.engines.compiled import CythonEngine  # noqa: E402
from photonab.engines.distributed import DaskEngine, check_ranges, release_pages  # noqa: E402
from photonab.errors import InputError  # noqa: E402

BLOCK = _unshadow_cyext().SUM_BLOCK
N = 5 * BLOCK + 1234  # several chunks of 2 blocks, the last one partial

# The workers cannot import this module (pytest put it on the path of this process
# only), so the fault hooks below travel to them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster():
    # One death of a task's worker is retried, a second gives up: the two fault tests.
    # Workers keep at most 120 MB of open events mapped: pair_dirs' pages are dropped
    # after each task, the smaller pairs' pages stay, so both ways are run.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1, "photonab.keep-mapped": 0.2}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None, memory_limit="600MB",
                                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as local:
            yield local


@pytest.fixture
def engine(cluster):
    """Factory of dask engines on the module's cluster, closed after the test."""
    made = []

    def make(**options):
        made.append(DaskEngine(scheduler=cluster.scheduler_address, chunk=2 * BLOCK, n_threads=1, **options))
        return made[-1]

    yield make
    for e in made:
        e.close()


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory):
    return random_pair(tmp_path_factory.mktemp("pair"), N, nan=3, seed=7, extreme=True)  # 158 MB of ox, rx, ph


def file_rss() -> int:
    """Bytes of mapped files in this process's resident set (Linux)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("RssFile:"))


class Bar:
    """Progress factory recording the photons reported per bar."""

    def __init__(self):
        self.done = {}

    def __call__(self, total, desc):
        self.desc = desc
        self.done[desc] = 0
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        self.done[self.desc] += n


def assert_same_as_cython(pair, result):
    reference = compare(pair, CythonEngine(n_threads=1))
    assert result.same_tables(reference)
    assert result.rc == reference.rc
    # the ox sums, bit for bit (same_tables uses array_equal, this says it plainly)
    assert result["ox"].raw.sum.tobytes() == reference["ox"].raw.sum.tobytes()


def test_an_empty_slice_gives_empty_tables_but_no_comparison(pair_dirs, engine):
    pair = EventPair.open(*pair_dirs, msli="5:5")
    eng, ref = engine(), CythonEngine(n_threads=1)
    counts = eng.histories(pair)
    assert counts.equals(ref.histories(pair)) and len(counts.codes) == 0
    with pytest.raises(InputError, match="nothing to compare: --msli 5:5 leaves 0 of the"):
        compare(pair, eng)


@pytest.mark.parametrize("msli", ["", "1000::2"])
def test_same_tables_as_cython(pair_dirs, engine, msli):
    pair = EventPair.open(*pair_dirs, msli=msli)
    eng = engine()
    assert len(eng.chunks(pair.n)) >= 3
    bar = Bar()
    result = compare(pair, eng, progress=bar)
    assert result.engine == "dask"
    assert bar.done == {"histories": pair.n, "deviations": pair.n}
    assert_same_as_cython(pair, result)
    if msli == "":  # NaNs are counted, not dropped
        assert result["ox"].raw.nnan.sum() == 3 and not np.isnan(result["ox"].raw.max).any()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status")
def test_workers_do_not_keep_big_events_in_their_resident_memory(pair_dirs, engine):
    eng = engine()
    pair = EventPair.open(*pair_dirs, msli="7:")  # a new pair for the workers: nothing mapped yet
    before = eng.client.run(file_rss)
    compare(pair, eng)  # 158 MB read, more than the 120 MB the workers may keep mapped
    growth = {w: eng.client.run(file_rss)[w] - before[w] for w in before}
    assert max(growth.values()) < 20e6, growth


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status")
def test_release_pages_drops_mapped_pages(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 2 * BLOCK, seed=5))
    arrays = [pair.a.rx, pair.b.rx]
    base = file_rss()
    for arr in arrays:
        arr.sum()  # touch every page
    assert file_rss() - base > 30e6  # the two rx maps: 42 MB
    release_pages(arrays, 0, 2 * BLOCK)
    assert file_rss() - base < 5e6
    assert np.asarray(pair.a.rx[-1]).any()  # still readable


def test_same_tables_for_some_tables_and_many_histories(tmp_path, engine):
    pair = EventPair.open(*random_pair(tmp_path, 2 * BLOCK + 17, maxrec=2, distinct=True, p_aligned=0.7))
    eng = engine()
    assert len(eng.chunks(pair.n)) == 3
    for tables in (("ox",), ("rtime", "rpol"), ("rpost", "rtime", "rpol", "ox")):  # narrow slot rows, shared table
        result = compare(pair, eng, tables=tables)
        reference = compare(pair, "cython", tables=tables)
        assert len(result.history) > 2 * BLOCK and result.same_tables(reference)


class DieOnce:
    """Kill the worker running the deviations of the chunk at ``start``, the first time only."""

    def __init__(self, marker: Path, start: int):
        self.marker, self.start = str(marker), start

    def __call__(self, kind, start, stop):
        if kind == "deviations" and start == self.start and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)


class AlwaysDie(DieOnce):
    def __call__(self, kind, start, stop):
        if kind == "deviations" and start == self.start:
            os._exit(1)


def test_worker_dying_mid_run_still_gives_the_right_table(pair_dirs, engine, tmp_path):
    pair = EventPair.open(*pair_dirs)
    # the last chunk: earlier results, some on the dying worker, must be recomputed too
    marker = tmp_path / "died"
    result = compare(pair, engine(before_task=DieOnce(marker, 4 * BLOCK)))
    assert marker.exists()
    assert_same_as_cython(pair, result)


def test_workers_that_keep_dying_give_a_clear_error(pair_dirs, engine, tmp_path):
    pair = EventPair.open(*pair_dirs)
    with pytest.raises(RuntimeError, match="workers kept dying.*no table was computed"):
        compare(pair, engine(before_task=AlwaysDie(tmp_path / "unused", 0)))
    # the cluster recovers and the next run is right
    assert_same_as_cython(pair, compare(pair, engine()))


def test_missing_file_on_the_workers_names_worker_and_file(tmp_path, engine):
    a, b = random_pair(tmp_path, 2 * BLOCK + 5, seed=3)
    pair = EventPair.open(a, b)  # fine here; then the file goes away before the workers look
    (b / "rx.npy").unlink()
    with pytest.raises(InputError, match=r"dask worker tcp://127\.0\.0\.1:\d+ .*-1/rx\.npy: missing file"):
        compare(pair, engine())


def test_workers_seeing_other_files_give_an_error_not_a_table(tmp_path, engine):
    root = tmp_path / "evt"
    a, b = random_pair(tmp_path, 2 * BLOCK + 5, seed=3, root=root)
    pair = EventPair.open(a, b)
    random_pair(tmp_path, 2 * BLOCK + 6, seed=4, root=root)  # rewritten under the client's feet
    with pytest.raises(InputError, match="131078 photons here but 131077 on the client"):
        compare(pair, engine())


def test_local_cluster_by_default_and_closed_with_the_engine(pair_dirs):
    pair = EventPair.open(*pair_dirs, msli=":100k")
    with get_engine("dask", n_workers=1, chunk=BLOCK) as eng:
        assert eng.cluster is not None and len(eng.client.nthreads()) == 1
        assert_same_as_cython(pair, compare(pair, eng))
    assert eng.cluster.status.name == "closed"


def test_unreachable_scheduler_is_an_input_error():
    with pytest.raises(InputError, match="cannot reach the dask scheduler at tcp://127.0.0.1:9"):
        DaskEngine(scheduler="tcp://127.0.0.1:9", timeout=1)


def test_merged_ranges_must_tile_the_event():
    check_ranges([(4, 9), (0, 4)], 9, "t")
    check_ranges([(0, 0)], 0, "t")
    for bad in ([(0, 4)], [(0, 4), (0, 4), (4, 9)], [(0, 4), (5, 9)]):
        with pytest.raises(RuntimeError, match="refusing a wrong table"):
            check_ranges(bad, 9, "t")


class Freeze:
    """Hang the chunk tasks for ``seconds`` (a frozen worker)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, kind, start, stop):
        import time
        time.sleep(self.seconds)


def test_frozen_workers_end_the_run_with_exit_70(tmp_path, cluster, monkeypatch, capsys):
    import functools
    import time

    from photonab.cli import EXIT_CLUSTER_ERROR, main
    from photonab.engines import distributed as module
    a, b = random_pair(tmp_path, 500)
    monkeypatch.setattr(module, "DaskEngine", functools.partial(DaskEngine, before_task=Freeze(4)))
    t0 = time.monotonic()
    rc = main(["compare", str(a), str(b), "--engine", "dask", "--scheduler", cluster.scheduler_address,
               "--timeout", "1", "--no-progress"])
    assert rc == EXIT_CLUSTER_ERROR and time.monotonic() - t0 < 15
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no dask task finished in 1 s" in err and "no table was computed" in err
    time.sleep(3)  # let the frozen task end before the next test uses the cluster


def test_a_lost_scheduler_is_a_cluster_error_within_seconds(tmp_path):
    import contextlib
    import functools
    import signal
    import subprocess
    import time

    from photonab.errors import ClusterError
    script = tmp_path / "scheduler.py"
    script.write_text("import time, distributed\n"
                      "if __name__ == '__main__':\n"
                      "    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,\n"
                      "            host='127.0.0.1', dashboard_address=None,\n"
                      "            scheduler_kwargs={'dashboard_address': '127.0.0.1:0'}) as c:\n"
                      "        print(c.scheduler_address, flush=True)\n"
                      "        time.sleep(120)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True,
                            env=env, cwd=tmp_path)
    kill = functools.partial(os.killpg, proc.pid, signal.SIGKILL)
    try:
        address = proc.stdout.readline().strip()
        pair = EventPair.open(*random_pair(tmp_path, 500))
        eng = DaskEngine(scheduler=address, before_task=Freeze(30), timeout=5)
        import threading
        killed = []
        threading.Timer(1.5, lambda: (kill(), killed.append(time.monotonic()))).start()
        with pytest.raises(ClusterError, match="no table was computed"):
            compare(pair, eng)
        assert killed and time.monotonic() - killed[0] < 15
        t0 = time.monotonic()
        eng.close()
        assert time.monotonic() - t0 < 5
    finally:
        with contextlib.suppress(ProcessLookupError):
            kill()
        proc.wait()


def test_a_dask_engine_made_by_name_is_closed_when_the_comparison_ends(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 3000, spread=50, p_flip=0.5))
    result = compare(pair, "dask")
    assert result.engine == "dask" and result.runner.client.status == "closed"
    assert result.runner.cluster.status.name == "closed"
    # chasing needs no cluster: the same photons as the cython engine
    mine, cython = result.chase("rpost", limit=5), compare(pair).chase("rpost", limit=5)
    assert np.array_equal(mine.index, cython.index) and np.array_equal(mine.deviation, cython.deviation)
