"""Every engine gives the same tables for the same input (docs/event-format.md, section 5, "Exactness")."""
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import random_pair
from photonab import EventPair, compare
from photonab.cuts import TABLES
from photonab.engines import get_engine
from photonab.errors import InputError


def assert_same(x, y):
    assert x.history.codes.tolist() == y.history.codes.tolist()
    assert np.array_equal(x.history.a, y.history.a) and np.array_equal(x.history.b, y.history.b)
    for t in TABLES:
        assert x.tables[t].raw.equals(y.tables[t].raw), t
        assert x.tables[t].level == y.tables[t].level
    assert x.rc == y.rc
    # the rendered numbers too (JSON text, so that NaN equals NaN)
    assert json.dumps(x.to_dict()["deviations"]) == json.dumps(y.to_dict()["deviations"])


cases = st.fixed_dictionaries({
    "n": st.integers(1, 2500),
    "maxrec": st.integers(1, 16),
    "seed": st.integers(0, 2**31),
    "n_codes": st.integers(1, 40),
    "p_aligned": st.sampled_from([0.0, 0.3, 0.9, 1.0]),
    "p_flip": st.sampled_from([0.0, 0.05, 0.5]),
    "spread": st.integers(1, 400),
    "nan": st.integers(0, 5),
    "extreme": st.booleans(),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases, st.sampled_from(["", "::3", "7:", ":1000:2"]))
def test_engines_agree_on_random_input(case, msli):
    with tempfile.TemporaryDirectory() as tmp:
        pair = EventPair.open(*random_pair(Path(tmp), **case), msli=msli)
        if pair.n == 0:  # nothing compared is not a pass (docs/verdict.md)
            with pytest.raises(InputError, match="nothing to compare"):
                compare(pair)
            return
        results = [compare(pair, e) for e in ("cython", "numpy", "select")]
        for other in results[1:]:
            assert_same(results[0], other)


@pytest.mark.slow
def test_engines_agree_on_many_distinct_histories(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 100_000, distinct=True, p_aligned=0.7, maxrec=3))
    cy = compare(pair, "cython")
    assert len(cy.history) > 100_000
    assert len(cy.tables["rpost"]) > 60_000
    assert_same(cy, compare(pair, "numpy"))


def test_engines_agree_across_sum_blocks(tmp_path):
    # N not a multiple of the chunk or of the summation block
    pair = EventPair.open(*random_pair(tmp_path, 200_001, maxrec=2, nan=3, seed=4))
    cy = compare(pair, get_engine("cython", chunk=1 << 17))
    assert_same(cy, compare(pair, "numpy"))


def test_thread_counts_give_identical_tables(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 150_000, seed=11, nan=4, extreme=True))
    one = compare(pair, "cython", n_threads=1)
    two = compare(pair, "cython", n_threads=2)
    assert_same(one, two)


def test_threadpoolctl_limit_is_honoured(tmp_path, cyext):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not cyext.openmp_enabled():
        pytest.skip("a build without OpenMP always runs on one thread")
    pair = EventPair.open(*random_pair(tmp_path, 20_000))
    with threadpoolctl.threadpool_limits(3, user_api="openmp"):  # more than 1 even on one core
        engine = get_engine("cython")
        assert cyext.max_threads() == 3 and engine.n_threads == 3
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            assert cyext.max_threads() == 1 and cyext.effective_threads(None) == 1
            engine = get_engine("cython")
            assert engine.n_threads == 1
            one = compare(pair, engine)
    assert_same(one, compare(pair, "cython", n_threads=2))


def test_all_aligned_and_none_aligned(tmp_path):
    for p, name in ((1.0, "all"), (0.0, "none")):
        pair = EventPair.open(*random_pair(tmp_path / name, 3000, p_aligned=p, n_codes=1 if p == 0 else 5))
        results = [compare(pair, e) for e in ("cython", "numpy", "select")]
        for r in results[1:]:
            assert_same(results[0], r)


def test_unknown_engine():
    with pytest.raises(InputError, match="unknown engine 'gpu'"):
        get_engine("gpu")


def test_unknown_table(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 10))
    with pytest.raises(InputError, match="unknown table 'rfoo'"):
        compare(pair, tables=("rfoo",))


def test_subset_of_tables(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 1000))
    for e in ("cython", "numpy"):
        r = compare(pair, e, tables=("rtime",))
        assert list(r.tables) == ["rtime"]


@pytest.mark.parametrize("fail_at", [None, 1])
def test_cython_chunk_loop_checks_steps_and_closes(fail_at):
    """CythonEngine.stream, the chunk loop of all its passes: inputs checked before every
    chunk and after the last, a bar step after each chunk, the bar closed with the error."""
    from photonab.engines.compiled import CythonEngine
    eng = CythonEngine(n_threads=1)
    eng.chunk = 4  # chunks of 4 photons (a test of the loop alone, no kernel runs)
    log = []

    class Pair:
        n = 10

        def checked(self, chunks):
            for c in chunks:
                log.append("check")
                yield c
            log.append("check")

    class Bar:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            log.append(("close", exc[0]))
            return False

        def update(self, k):
            log.append(("step", k))

    def add(start, stop):
        if len([e for e in log if e[0] == "add"]) == fail_at:
            raise KeyboardInterrupt
        log.append(("add", start, stop))

    def progress(total, desc):
        log.append(("bar", total, desc))
        return Bar()

    if fail_at is None:
        eng.stream(Pair(), progress, "photons", add)
        assert log == [("bar", 10, "photons"), "check", ("add", 0, 4), ("step", 4), "check", ("add", 4, 8),
                       ("step", 4), "check", ("add", 8, 10), ("step", 2), "check", ("close", None)]
    else:
        with pytest.raises(KeyboardInterrupt):
            eng.stream(Pair(), progress, "photons", add)
        assert log == [("bar", 10, "photons"), "check", ("add", 0, 4), ("step", 4), "check",
                       ("close", KeyboardInterrupt)]
