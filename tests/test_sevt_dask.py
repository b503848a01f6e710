"""The dask engine gives the cython engine's QCF table on SEvt pairs (docs/sevt.md, "Engines"):
tasks on the workers open seq.npy themselves; a worker without seq.npy is named clearly."""
import json

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from conftest import _unshadow_cyext  # noqa: E402
from photonab import qcf, sevt  # noqa: E402
from photonab.cli import main  # noqa: E402
from photonab.engines.distributed import DaskEngine  # noqa: E402
from photonab.errors import InputError  # noqa: E402
from photonab.sevt_compare import compare_sevt  # noqa: E402
from photonab.synth.sevt import synthesize_sevt  # noqa: E402

BLOCK = _unshadow_cyext().SUM_BLOCK
N = 2 * BLOCK + 777  # three chunks of one block, the last one partial


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as local:
        yield local


@pytest.fixture
def engine(cluster):
    e = DaskEngine(scheduler=cluster.scheduler_address, chunk=BLOCK, n_threads=1)
    yield e
    e.close()


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory):
    (a, b), = synthesize_sevt(tmp_path_factory.mktemp("sevt"), N, seed=3, aligned=False, records=False,
                              progress=False)
    return a, b


def assert_same(t, ref):
    for f in ("lo", "hi", "a", "b", "first_a", "first_b", "c2"):
        assert np.array_equal(getattr(t, f), getattr(ref, f)), f
    assert (t.c2sum, t.c2n, list(t.bzero), list(t.azero)) == (ref.c2sum, ref.c2n, list(ref.bzero), list(ref.azero))


@pytest.mark.parametrize("msli", [None, "100:50000:3"])
def test_dask_table_is_cythons(engine, pair_dirs, msli):
    pair = sevt.SEvtPair.open(*pair_dirs, msli)
    ref = qcf.compare_histories(pair, engine="cython")
    assert (ref.nstep > 16).any()  # histories beyond 16 steps (the second word) are counted
    assert_same(qcf.compare_histories(pair, engine=engine), ref)
    result = compare_sevt(pair, engine)
    assert result.engine == "dask"
    assert_same(result.qcf, ref)


def test_missing_seq_on_the_worker_is_named(engine, pair_dirs, tmp_path):
    a, b = pair_dirs
    b2 = tmp_path / "B000"
    b2.mkdir()
    for f in b.iterdir():
        (b2 / f.name).symlink_to(f)
    pair = sevt.SEvtPair.open(a, b2)
    (b2 / "seq.npy").unlink()  # the client opened it; the workers will not find it
    with pytest.raises(InputError, match=r"dask worker .*B000/seq\.npy: missing"):
        qcf.compare_histories(pair, engine=engine)


def test_cli_dask_local_cluster(pair_dirs, tmp_path, capsys):
    a, b = pair_dirs
    docs = {}
    for eng in ("cython", "dask"):
        out = tmp_path / f"{eng}.json"
        main(["compare", str(a), str(b), "--engine", eng, "--no-progress", "--threads", "1", "--json", str(out)])
        docs[eng] = json.loads(out.read_text())
    assert docs["dask"]["history"] == docs["cython"]["history"]


def test_run_over_events_on_one_cluster(engine, tmp_path):
    from photonab.sevt_compare import compare_sevt_run
    folders = synthesize_sevt(tmp_path, 3000, seed=5, aligned=False, records=False, events=2, progress=False)
    pairs = [sevt.SEvtPair.open(a, b) for a, b in folders]
    ref = compare_sevt_run(pairs, engine="cython")
    got = compare_sevt_run(pairs, engine=engine)
    assert got.engine == "dask"
    assert got.counts.equals(ref.counts)
    assert_same(got.qcf, ref.qcf)
