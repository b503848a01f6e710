"""The aligned SEvt comparison (photonab.aligned, cyext._aligned.pxi): kernel vs numpy
reference vs a per-photon Python reference, exactness over threads and chunks, the
chance-alignment check, levels, rc, chase, on random arrays and synthetic SEvt pairs."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from photonab import aligned, sevt
from photonab.errors import InputError
from photonab.qcf import count_numpy
from photonab.synth.sevt import synthesize_sevt

from conftest import _unshadow_cyext

cyext = _unshadow_cyext()
SUM_BLOCK = cyext.SUM_BLOCK


# ---------------------------------------------------------------- random arrays

def random_arrays(rng, n, maxrec, n_hist=4, p_same=0.7, nan=0.02, ties=True, f64=False):
    pool = rng.integers(0, 1 << 20, (n_hist, 2)).astype(np.uint64)
    pool[:, 1] *= rng.integers(0, 2, n_hist).astype(np.uint64)  # some histories beyond 16 slots
    sa = pool[rng.integers(0, n_hist, n)]
    sb = np.where((rng.random(n) < p_same)[:, None], sa, pool[rng.integers(0, n_hist, n)])
    ra = rng.normal(0, 100, (n, maxrec, 4, 4)).astype(np.float32)
    step = np.float32(0.125) if ties else None  # exact small steps: many equal deviations
    noise = (rng.integers(-2, 3, ra.shape) * step) if ties else rng.normal(0, 0.05, ra.shape)
    rb = (ra + noise.astype(np.float32)).astype(np.float32)
    zero = rng.random((n, maxrec)) < 0.3  # slots beyond the last step: zeros in both
    ra[zero], rb[zero] = 0, 0
    negz = rng.random(ra.shape) < 0.05
    ra[negz], rb[negz] = -0.0, 0.0
    for arr in (ra, rb):
        arr[rng.random(arr.shape) < nan / 16] = np.nan
    pa = rng.normal(0, 100, (n, 4, 4)).astype(np.float32)
    pb = (pa + (rng.integers(-2, 3, pa.shape) * np.float32(0.125))).astype(np.float32)
    pb[rng.random(pb.shape) < nan / 16] = np.nan
    pa.view(np.uint32)[:, 1, 3] = 0x7FC00001  # q1.w is an integer (a NaN bit pattern): never compared
    if f64:
        ra, rb = ra.astype(np.float64), rb.astype(np.float64)
    return sa, sb, ra, rb, pa, pb


def groups_of(sa, sb):
    counts = count_numpy(sa, sb)
    both = (counts.a > 0) & (counts.b > 0)
    return counts.lo[both], counts.hi[both]


def python_reference(sa, sb, ra, rb, pa, pb, lo, hi, tables, cuts):
    """Per photon, in plain Python floats (one SUM_BLOCK: sums in photon order)."""
    G = len(lo)
    group = {(int(l), int(h)): g for g, (l, h) in enumerate(zip(lo, hi))}
    rows = cyext.new_final_partials(len(tables) * G, 1)[0].reshape(len(tables), G)
    sums = np.zeros((len(tables), G))
    n_aligned = 0
    for i in range(len(sa)):
        if not (sa[i] == sb[i]).all():
            continue
        n_aligned += 1
        g = group[(int(sa[i, 0]), int(sa[i, 1]))]
        for c, t in enumerate(tables):
            d = 0.0
            if t == "photon":
                pairs = [(float(pa[i].ravel()[k]), float(pb[i].ravel()[k])) for k in aligned.COMPONENTS[t]]
            else:
                pairs = [(float(ra[i, s].ravel()[k]), float(rb[i, s].ravel()[k]))
                         for s in range(ra.shape[1]) for k in aligned.COMPONENTS[t]]
            for x, y in pairs:
                v = abs(x - y)
                if math.isnan(v):
                    d = v
                    break
                d = max(d, v)
            r = rows[c]
            r["nitem"][g] += 1
            if math.isnan(d):
                r["nnan"][g] += 1
                r["ndisc"][g] += 1
                continue
            for k in range(3):
                r["ndisc"][g, k] += d > cuts[c][k]
            if d > r["max"][g]:
                r["max"][g], r["argmax"][g] = d, i
            r["min"][g] = min(r["min"][g], d)
            sums[c, g] += d
    return {"rows": rows, "sums": sums, "n_aligned": n_aligned, "n_unknown": 0}


def assert_same(x, y):
    assert x["n_aligned"] == y["n_aligned"] and x["n_unknown"] == y["n_unknown"]
    assert x["rows"].shape == y["rows"].shape
    for name in ("nitem", "nnan", "ndisc", "argmax"):
        np.testing.assert_array_equal(x["rows"][name], y["rows"][name], err_msg=name)
    for name in ("max", "min"):
        assert x["rows"][name].tobytes() == y["rows"][name].tobytes(), name
    assert x["sums"].tobytes() == y["sums"].tobytes()  # bit for bit


CUTS = np.array([(0.1, 0.2, 0.3)] * len(aligned.TABLES))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), maxrec=st.sampled_from((1, 2, 3, 4, 32)),
       ties=st.booleans(), f64=st.booleans(),
       tables=st.sets(st.sampled_from(aligned.TABLES), min_size=1))
def test_kernel_numpy_python_agree(seed, n, maxrec, ties, f64, tables):
    rng = np.random.default_rng(seed)
    arrays = random_arrays(rng, n, maxrec, ties=ties, f64=f64)
    lo, hi = groups_of(arrays[0], arrays[1])
    tables = tuple(t for t in aligned.TABLES if t in tables)
    cuts = CUTS[:len(tables)]
    ref = python_reference(*arrays, lo, hi, tables, cuts)
    num = aligned.aggregate_numpy(*arrays, lo, hi, tables, cuts)
    assert_same(ref, num)
    for threads in (1, 2):
        assert_same(ref, aligned.aggregate_cython(*arrays, lo, hi, tables, cuts, n_threads=threads))


@pytest.mark.skipif(cyext.simd_path() in ("scalar", "sse2"), reason="the scalar record loop is this build's only path")
def test_scalar_record_loop_agrees():
    """float32 records take the AVX2 loop (cyext_aligned_slots) where the CPU has it; with
    CYEXT_ISA=sse2 the scalar loop runs: the kernel tests again on that path."""
    import os
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                          "kernel_numpy_python_agree or exact_over_threads or record_slots_and_photon"],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ, CYEXT_ISA="sse2"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout


@pytest.mark.parametrize("ties", [False, True])
def test_exact_over_threads_and_chunks(ties):
    """More than two SUM_BLOCKs: sums, argmax ties and counts identical for every thread
    count and chunking, and equal to the numpy reference."""
    rng = np.random.default_rng(7)
    n = 2 * SUM_BLOCK + 1234
    arrays = random_arrays(rng, n, 1, n_hist=6, ties=ties)
    lo, hi = groups_of(arrays[0], arrays[1])
    cuts = CUTS
    ref = aligned.aggregate_numpy(*arrays, lo, hi, aligned.TABLES, cuts)
    for threads, chunk in ((1, SUM_BLOCK), (2, SUM_BLOCK), (2, 4 * SUM_BLOCK), (3, 2 * SUM_BLOCK)):
        got = aligned.aggregate_cython(*arrays, lo, hi, aligned.TABLES, cuts, n_threads=threads, chunk=chunk)
        assert_same(ref, got)


def test_record_slots_and_photon_components():
    """Every record slot counts; photon.npy q1.w (an integer) and q3 are never compared."""
    n, maxrec = 3, 5
    sa = np.zeros((n, 2), np.uint64)
    sa[:, 0] = 0x4c3
    sb = sa.copy()
    ra = np.zeros((n, maxrec, 4, 4), np.float32)
    rb = ra.copy()
    rb[0, 4, 0, 1] = 0.5        # pos y of the last slot
    rb[1, 2, 2, 3] = 2.0        # wavelength
    rb[2, 0, 1, 3] = 99.0       # record q1.w: not a table component
    pa = np.zeros((n, 4, 4), np.float32)
    pb = pa.copy()
    pb[0, 1, 3] = np.nan        # integer field: ignored
    pb[1, 3, 0] = 7.0           # q3: ignored
    pb[2, 2, 1] = 0.25          # pol y
    lo, hi = groups_of(sa, sb)
    res = aligned.aggregate_cython(sa, sb, ra, rb, pa, pb, lo, hi, aligned.TABLES, CUTS)
    mx = dict(zip(aligned.TABLES, res["rows"]["max"][:, 0]))
    assert mx == {"pos": 0.5, "time": 0.0, "mom": 0.0, "pol": 0.0, "wl": 2.0, "photon": 0.25}
    assert res["rows"]["argmax"][0, 0] == 0 and res["rows"]["nnan"].sum() == 0


def test_kernel_checks():
    rng = np.random.default_rng(1)
    sa, sb, ra, rb, pa, pb = random_arrays(rng, 100, 2)
    lo, hi = groups_of(sa, sb)
    index = cyext.GroupIndex128(lo, hi)
    assert list(index.lookup(lo, hi)) == list(range(len(lo)))
    assert index.lookup([12345], [678])[0] == -1
    with pytest.raises(ValueError, match="distinct"):
        cyext.GroupIndex128([1, 1], [2, 2])
    acc = cyext.AlignedAccumulator(index, ("pos",), CUTS[:1], 1)
    with pytest.raises(ValueError, match="multiple of SUM_BLOCK"):
        acc.add(sa, sb, ra, rb, None, None, 1, 50)
    with pytest.raises(ValueError, match="maxrec"):
        acc.add(sa, sb, ra, rb[:, :1], None, None, 0, 50)
    with pytest.raises(ValueError, match="contiguous"):
        wide = np.zeros((100, 2, 4, 8), np.float32)
        acc.add(sa, sb, wide[..., ::2], wide[..., ::2], None, None, 0, 50)
    with pytest.raises(ValueError, match="record_a"):
        acc.add(sa, sb, None, rb, None, None, 0, 50)
    with pytest.raises(ValueError, match="unknown aligned table"):
        cyext.AlignedAccumulator(index, ("rpost",), CUTS[:1])
    with pytest.raises(ValueError, match="cuts must not decrease with the level"):
        cyext.AlignedAccumulator(index, ("pos",), np.array([[0.3, 0.2, 0.4]]))
    # only the requested tables: the photon table needs no records, the record tables no photons
    only_photon = cyext.AlignedAccumulator(index, ("photon",), CUTS[:1], 1)
    only_photon.add(sa, sb, None, None, pa, pb, 0, 100)
    acc.add(sa, sb, ra, rb, None, None, 0, 100)
    assert acc.result()["rows"].shape == (1, len(lo))
    with pytest.raises(ValueError, match="increasing"):
        acc.add(sa, sb, ra, rb, None, None, 0, 100)


def test_read_only_memmaps(tmp_path):
    rng = np.random.default_rng(3)
    arrays = random_arrays(rng, 500, 3)
    maps = []
    for k, arr in enumerate(arrays):
        np.save(tmp_path / f"{k}.npy", arr)
        maps.append(np.load(tmp_path / f"{k}.npy", mmap_mode="r"))
    lo, hi = groups_of(maps[0], maps[1])
    assert_same(aligned.aggregate_numpy(*arrays, lo, hi, aligned.TABLES, CUTS),
                aligned.aggregate_cython(*maps, lo, hi, aligned.TABLES, CUTS))


# ---------------------------------------------------------------- synthetic SEvt pairs

@pytest.fixture(scope="module")
def sevt_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("aligned")
    (a, b), = synthesize_sevt(root / "al", 8000, seed=3, aligned=True, progress=False)
    (ua, ub), = synthesize_sevt(root / "un", 8000, seed=3, aligned=False, progress=False)
    return root, (a, b), (ua, ub)


def test_aligned_pair_passes(sevt_pairs):
    _, (a, b), _ = sevt_pairs
    pair = sevt.SEvtPair.open(a, b)
    res = aligned.compare_aligned(pair)
    assert not res.check.warn and res.check.score > 0.95 and res.rc == 0
    assert res.n == 8000 and 0.99 * 8000 < res.n_aligned <= 8000
    assert set(res.tables) == set(aligned.TABLES)
    pos = res.tables["pos"]
    assert pos.nitem_total == res.n_aligned and pos.level == "INFO"
    assert 0 < np.nanmax(pos.mx) < 0.002  # the synthetic float noise is 1e-3 mm
    assert pos.labels()[0].startswith("TO")
    assert len(pos.aggregate.hex()) == len(pos)
    num = aligned.compare_aligned(pair, engine="numpy")
    one = aligned.compare_aligned(pair, n_threads=1)
    for t in aligned.TABLES:
        assert res.aggregates[t].equals(num.aggregates[t])
        assert res.aggregates[t].equals(one.aggregates[t])
        assert res.aggregates[t].sum.tobytes() == num.aggregates[t].sum.tobytes()


def test_only_requested_tables(sevt_pairs):
    _, (a, b), _ = sevt_pairs
    res = aligned.compare_aligned(sevt.SEvtPair.open(a, b), tables="wl,pos")
    assert list(res.tables) == ["pos", "wl"]


def _perturbed(root, a, b, name):
    """A copy of B in which chosen photons of B moved, for levels, rc and chase."""
    nb = root / name / "B000"
    na = root / name / "A000"
    shutil.copytree(a, na)
    shutil.copytree(b, nb)
    rec = np.load(nb / "record.npy", mmap_mode="r+")
    pho = np.load(nb / "photon.npy", mmap_mode="r+")
    return na, nb, rec, pho


def test_levels_rc_chase(sevt_pairs):
    root, (a, b), _ = sevt_pairs
    na, nb, rec, pho = _perturbed(root, a, b, "bad")
    seq_a, seq_b = np.load(a / "seq.npy")[:, 0], np.load(b / "seq.npy")[:, 0]
    same = np.flatnonzero((seq_a == seq_b).all(axis=1))
    moved, nan_photon, dir_photon = same[10], same[20], same[30]
    rec[moved, 1, 0, 0] += np.float32(0.07)  # beyond the pos ERROR cut (0.05 mm), below FATAL
    rec[nan_photon, 0, 0, 3] = np.nan       # time NaN: FATAL
    rec[dir_photon, 1, 2, 0] += np.float32(5e-4)  # pol WARNING
    rec.flush()
    pho.flush()
    del rec, pho
    pair = sevt.SEvtPair.open(na, nb)
    res = aligned.compare_aligned(pair)
    assert res.tables["pos"].level == "ERROR" and res.tables["time"].level == "FATAL"
    assert res.tables["pol"].level == "WARNING" and res.tables["mom"].level == "INFO"
    assert res.rc == aligned.RC_BIT["pos"] | aligned.RC_BIT["time"]
    assert res.level == "FATAL"
    assert res.tables["time"].aggregate.nnan.sum() == 1
    worst = res.worst["pos"]
    assert worst.index[0] == moved and abs(worst.deviation[0] - 0.07) < 2e-3
    sbs = worst.side_by_side(0)
    assert sbs.shape[1:] == (2, 4, 4) and sbs.shape[0] == worst.nstep[0]
    chased = aligned.chase_photons(pair, "time", n=3)
    assert chased.index[0] == nan_photon and np.isnan(chased.deviation[0])
    label = res.tables["pos"].labels()[0]
    only = aligned.chase_photons(pair, "pos", history=label, n=2)
    assert all(lab == label for lab in only.labels())
    num = aligned.compare_aligned(pair, engine="numpy")
    for t in aligned.TABLES:
        assert res.aggregates[t].equals(num.aggregates[t])


def test_unaligned_pair_warns(sevt_pairs):
    _, _, (ua, ub) = sevt_pairs
    res = aligned.compare_aligned(sevt.SEvtPair.open(ua, ub))
    check = res.check
    assert check.warn and abs(check.score) < 0.1
    assert abs(check.n_aligned - check.expected) < 5 * math.sqrt(check.expected)
    assert check.n_aligned < 0.7 * check.possible
    assert "do not look aligned" in check.message and res.warnings == [check.message]
    assert 0 < check.fraction < 1 and 0 < check.expected_fraction < 1


def test_alignment_check_edges():
    from photonab.qcf import HistoryCounts128
    one = HistoryCounts128(*(np.array([x]) for x in (np.uint64(5), np.uint64(0), 10, 10, 0, 0)))
    check = aligned.alignment_check(one, 10, 10)  # a single history: nothing to tell
    assert not check.warn and check.score == 1.0
    assert not aligned.alignment_check(one, 0, 0).warn
    assert aligned.alignment_check(one, 10, 10).message is None


def test_cuts_and_messages():
    cuts = aligned.aligned_cuts({"pos": (0.02, 0.04, 0.08)})
    assert cuts["pos"].values == (0.02, 0.04, 0.08) and cuts["time"].values == aligned.DEFAULT_CUTS["time"]
    for bad in ({"pos": (0.2, 0.1, 0.3)}, {"pos": (1, 2)}, {"rpost": (1, 2, 3)}, {"wl": (0, 1, float("nan"))}):
        with pytest.raises(InputError):
            aligned.aligned_cuts(bad)
    with pytest.raises(InputError, match="aligned tables"):
        aligned._tables("pos,rtime")
    assert "--aligned" in aligned.NOT_ALIGNED_MESSAGE and "independent random streams" in aligned.NOT_ALIGNED_MESSAGE
    assert set(aligned.RC_BIT) == set(aligned.TABLES) and max(aligned.RC_BIT.values()) < 64


def test_missing_arrays_and_2019(sevt_pairs, tmp_path):
    root, (a, b), _ = sevt_pairs
    na, nb = tmp_path / "A000", tmp_path / "B000"
    shutil.copytree(a, na)
    shutil.copytree(b, nb)
    (nb / "record.npy").unlink()
    pair = sevt.SEvtPair.open(na, nb)
    with pytest.raises(InputError, match="record.npy: missing"):
        aligned.compare_aligned(pair, tables="pos")
    assert list(aligned.compare_aligned(pair, tables="photon").tables) == ["photon"]

    class Old:
        layout = "2019"
    with pytest.raises(InputError, match="SEvt"):
        aligned.compare_aligned(Old())


def test_no_groups_and_unknown_histories():
    """No history in both: nothing aggregated; photons whose history is missing from the
    index are counted as unknown by both engines."""
    sa = np.array([[1, 0], [2, 0], [5, 9]], np.uint64)
    sb = np.array([[3, 0], [2, 0], [5, 9]], np.uint64)
    rec = np.zeros((3, 1, 4, 4), np.float32)
    none = np.zeros(0, np.uint64)
    for lo, hi, unknown in ((none, none, 2), (np.array([2], np.uint64), np.array([0], np.uint64), 1)):
        c = aligned.aggregate_cython(sa, sb, rec, rec, None, None, lo, hi, ("pos",), CUTS[:1])
        assert_same(c, aligned.aggregate_numpy(sa, sb, rec, rec, None, None, lo, hi, ("pos",), CUTS[:1]))
        assert c["n_aligned"] == 2 and c["n_unknown"] == unknown
