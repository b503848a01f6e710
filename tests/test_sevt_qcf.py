"""The QCF table: identical to a faithful re-implementation of ana/qcf.py, engines agree."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import chdtrc

from photonab import InputError, qcf, qcf_reference, seqhis, sevt
from photonab.render.qcf import render_qcf
from sevt_folders import random_histories, seq_words, write_pair, write_sevt

ERA = "2025-06"


def words_of_s96(q, era):
    """Back from QCF's |S96 labels to (lo, hi) words."""
    tokens = {t: n for n, t in enumerate(qcf_reference.aflags(era).tolist())}
    out = []
    for s in np.asarray(q).ravel().tolist():
        s = s.ljust(96)
        code = 0
        for k in range(32):
            code |= tokens[s[3 * k:3 * k + 3]] << (4 * k)
        out.append(seqhis.split2(code))
    return out


def assert_same_as_reference(t, sa, sb, era=ERA, c2cut=30):
    ref = qcf_reference.qcf_of_seqhis(sa, sb, era, c2cut)
    words = words_of_s96(ref.quo, era)
    ref_rows = [(w, int(r[2, 0]), int(r[2, 1]), int(r[1, 0]), int(r[1, 1])) for w, r in zip(words, ref.abo)]
    ours = [((int(t.lo[i]), int(t.hi[i])), int(t.a[i]), int(t.b[i]), int(t.first_a[i]), int(t.first_b[i]))
            for i in range(len(t))]
    assert len(ours) == len(ref_rows)
    # the order of max(a, b) is QCF's; rows tied on it are compared as sets (QCF's sort is unstable)
    assert [max(r[1], r[2]) for r in ours] == [int(x) for x in ref.abx[ref.abxo]]
    groups = {}
    for r in ref_rows:
        groups.setdefault(max(r[1], r[2]), set()).add(r)
    for r in ours:
        groups[max(r[1], r[2])].discard(r)
    assert all(not g for g in groups.values())
    # ties: ours is QCF's order made stable (label bytes ascending)
    stable = np.argsort(-ref.abx, kind="stable")
    assert [(int(a), int(b)) for a, b in zip(t.lo, t.hi)] == [words_of_s96(ref.qu[i:i + 1], era)[0] for i in stable]
    # dropouts as the sets of their histories
    assert {ours[i][0] for i in t.bzero} == {words[i] for i in ref.bzero}
    assert {ours[i][0] for i in t.azero} == {words[i] for i in ref.azero}
    assert len(t.bzero) == len(ref.bzero) and len(t.azero) == len(ref.azero)
    # chi-square: QCF's float32 summary, and ours in float64 close to it
    assert t.qcf_float32["c2n"] == ref.c2n == t.c2n
    assert np.array_equal(np.sort(t.c2_float32), np.sort(ref.c2))
    assert t.qcf_float32["c2sum"] == pytest.approx(float(ref.c2sum), rel=1e-5, abs=1e-5)
    assert t.c2sum == pytest.approx(float(ref.c2sum), rel=1e-5, abs=1e-4)
    if ref.c2n:
        assert t.qcf_float32["pvalue"] == pytest.approx(float(ref.pvalue), rel=1e-4, abs=1e-6)
    return ref


# ---------------------------------------------------------------- reference equality


@pytest.mark.parametrize("seed", range(4))
def test_same_as_qcf_on_plausible_histories(seed):
    rng = np.random.default_rng(seed)
    sa = random_histories(rng, 5000, n_codes=40, long_fraction=0.3)
    sb = random_histories(rng, 5000, n_codes=40, long_fraction=0.3)
    t = qcf.compare_seqhis(sa, sb, ERA)
    ref = assert_same_as_reference(t, sa, sb)
    # labels are QCF's labels stripped
    assert sorted(t.labels) == sorted(ref.labels())
    assert any(n > 16 for n in t.nstep)


nibble = st.integers(0, 15)


@st.composite
def history_pool(draw):
    k = draw(st.integers(1, 12))
    pool = []
    for _ in range(k):
        nib = draw(st.lists(nibble, min_size=0, max_size=32))
        code = sum(n << (4 * i) for i, n in enumerate(nib))
        pool.append(seqhis.split2(code))
    return pool


@settings(max_examples=40, deadline=None)
@given(history_pool(), st.integers(0, 2 ** 32), st.integers(0, 400), st.sampled_from([0, 5, 30]),
       st.sampled_from(sorted(seqhis.ERAS)))
def test_same_as_qcf_on_random_words(pool, seed, n, c2cut, era):
    rng = np.random.default_rng(seed)
    words = np.array(pool, np.uint64).reshape(-1, 2)
    pa = rng.dirichlet(np.ones(len(pool)))
    pb = rng.dirichlet(np.ones(len(pool)))
    sa = words[rng.choice(len(pool), n, p=pa)] if n else np.zeros((0, 2), np.uint64)
    sb = words[rng.choice(len(pool), n, p=pb)] if n else np.zeros((0, 2), np.uint64)
    t = qcf.compare_seqhis(sa, sb, era, c2cut=c2cut)
    if n:
        assert_same_as_reference(t, sa, sb, era, c2cut)
    else:
        assert len(t) == 0 and t.c2n == 0


def test_dropouts_as_qcf_prints_them():
    a_only, b_only, both = seq_words(["TO BT BT SA", "TO BR SA", "TO BT SD"])
    sa = np.array([a_only] * 11 + [both] * 50 + [b_only] * 3, np.uint64)
    sb = np.array([b_only] * 12 + [both] * 52, np.uint64)
    t = qcf.compare_seqhis(sa, sb, ERA)
    assert [t.labels[i] for i in t.bzero] == ["TO BT BT SA"]
    assert [t.labels[i] for i in t.azero] == []  # 12 in B but 3 in A: not a dropout
    sa2 = np.array([a_only] * 10 + [both] * 54, np.uint64)  # 10 is not > 10
    assert len(qcf.compare_seqhis(sa2, sb, ERA).bzero) == 0
    assert_same_as_reference(t, sa, sb)


# ---------------------------------------------------------------- definitions


def test_chi2_cut_is_strict_and_counts_one_sided_rows():
    w = seq_words(["TO BT SA", "TO BR SA", "TO AB", "TO SC SA"])
    sa = np.repeat(w, [20, 31, 5, 0], axis=0)
    sb = np.repeat(w, [10, 0, 6, 40], axis=0)
    t = qcf.compare_seqhis(sa, sb, ERA)
    got = {t.labels[i]: (bool(t.counted[i]), t.c2[i]) for i in range(len(t))}
    assert got["TO BT SA"] == (False, 0.0)  # a+b = 30 is not > 30
    assert got["TO BR SA"] == (True, 31.0)  # one side 0 counts
    assert got["TO SC SA"] == (True, 40.0)
    assert t.c2n == 2 and t.c2sum == 71.0 and t.c2per == 35.5
    assert t.pvalue == chdtrc(2, 71.0)
    s = qcf.compare_seqhis(sa, sb, ERA, rule="sseq_index")  # dropouts excluded
    assert s.c2n == 0 and s.c2sum == 0.0 and math.isnan(s.c2per) and s.pvalue == 1.0
    assert s.qcf_float32["c2n"] == 2
    assert qcf.compare_seqhis(sa, sb, ERA, c2cut=29).c2n == 3


def test_sseq_index_rule():
    rng = np.random.default_rng(3)
    sa = random_histories(rng, 20000, n_codes=30)
    sb = random_histories(rng, 20000, n_codes=30)
    t = qcf.compare_seqhis(sa, sb, ERA, rule="sseq_index")
    a, b = t.a.astype(float), t.b.astype(float)
    keep = (a > 0) & (b > 0) & (a + b > 30)
    expect = np.where(keep, (a - b) ** 2 / np.where(keep, a + b, 1), 0)
    assert t.c2n == keep.sum() and t.c2sum == pytest.approx(expect.sum(), rel=1e-12)


def test_ties_in_label_byte_order():
    w = seq_words(["TO SC SA", "TO BT SA", "TO AB", "TO BT BT SA"])
    sa = np.repeat(w, 5, axis=0)
    t = qcf.compare_seqhis(sa, sa[::-1].copy(), ERA)
    assert t.labels == ["TO AB", "TO BT BT SA", "TO BT SA", "TO SC SA"]  # "TO AB " < "TO BT B" < "TO BT S"


def test_float64_and_qcf_float32():
    # counts beyond float32's 24-bit mantissa: QCF's float32 (a-b)^2 rounds
    lo = np.array([[3, 0], [0x43, 0]], np.uint64)
    counts = qcf.HistoryCounts128(lo[:, 0], lo[:, 1], np.array([20_000_001, 7]), np.array([19_990_000, 0]),
                                  np.array([0, 1]), np.array([0, -1]))
    t = qcf.QCFTable(counts, ERA)
    assert t.c2sum == pytest.approx(10001.0 ** 2 / 39990001)
    assert t.qcf_float32["c2sum"] != t.c2sum and t.float32_differs
    d = qcf.qcf_to_dict(t)
    assert d["history"]["qcf_float32"]["c2n"] == 1


def test_no_row_above_the_cut():
    sa = seq_words(["TO BT SA"] * 3)
    t = qcf.compare_seqhis(sa, sa, ERA)
    assert t.c2n == 0 and math.isnan(t.c2per) and t.pvalue == 1.0
    json.dumps(qcf.qcf_to_dict(t), allow_nan=False)
    assert "c2sum/c2n:c2per(C2CUT)   0.00/0:  nan (30) pv[1.000," in t.render()


def test_bad_arguments():
    sa = seq_words(["TO BT SA"])
    with pytest.raises(InputError, match="unknown chi-square rule"):
        qcf.compare_seqhis(sa, sa, ERA, rule="x")
    with pytest.raises(InputError, match="c2cut -1.0 must be"):
        qcf.compare_seqhis(sa, sa, ERA, c2cut=-1)
    with pytest.raises(InputError, match="unknown engine 'dask'"):
        qcf.compare_seqhis(sa, sa, ERA, engine="dask")
    with pytest.raises(InputError, match=r"\(N, 2\) uint64"):
        qcf.compare_seqhis(sa[:, 0], sa[:, 0], ERA)
    with pytest.raises(InputError, match="differ in length"):
        qcf.compare_seqhis(sa, np.zeros((2, 2), np.uint64), ERA)


# ---------------------------------------------------------------- engines agree


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 32), st.integers(1, 20000), st.sampled_from([1, 2]), st.sampled_from([4096, 1 << 20]),
       st.booleans())
def test_cython_and_numpy_give_the_same_table(seed, n, n_threads, chunk, distinct):
    rng = np.random.default_rng(seed)
    if distinct:
        sa = rng.integers(0, 2 ** 64, (n, 2), dtype=np.uint64)
        sb = sa.copy()
        sb[::2] = rng.integers(0, 2 ** 64, ((n + 1) // 2, 2), dtype=np.uint64)
    else:
        sa, sb = random_histories(rng, n, n_codes=50), random_histories(rng, n, n_codes=50)
    x = qcf.count_cython(sa, sb, n_threads=n_threads, chunk=chunk)
    y = qcf.count_numpy(sa, sb)
    assert x.equals(y)
    tx, ty = qcf.QCFTable(x, ERA), qcf.QCFTable(y, ERA)
    assert qcf.qcf_to_dict(tx) == qcf.qcf_to_dict(ty)


# ---------------------------------------------------------------- pairs, hits, JSON, text


def test_compare_histories_on_a_pair(tmp_path):
    rng = np.random.default_rng(11)
    sa, sb = random_histories(rng, 3000), random_histories(rng, 3000)
    a, b = write_pair(tmp_path, sa, sb, hits=None)
    write_sevt(a, sa, hits=900)
    write_sevt(b, sb, hits=1000, meta={"GEOM": "other"})
    pair = sevt.SEvtPair.open(a, b)
    seen = []

    class Bar:
        def __init__(self, total, desc):
            seen.append((total, desc))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, k):
            seen.append(k)

    t = qcf.compare_histories(pair, n_threads=1, progress=Bar, chunk=1024)
    assert seen[0] == (3000, "histories") and sum(seen[1:]) == 3000
    assert t.era == ERA and t.era_source == "detected"
    assert_same_as_reference(t, sa, sb)
    assert qcf.qcf_to_dict(t) == qcf.qcf_to_dict(qcf.compare_histories(pair, engine="numpy"))
    h = t.hits
    assert (h.a, h.b) == (900, 1000)
    ra, rb = 30 / 900, math.sqrt(1000) / 1000
    assert h.ab == 0.9 and h.ab_err_linear == pytest.approx((ra + rb) * 0.9)
    assert h.ab_err_quadrature == pytest.approx(math.hypot(ra, rb) * 0.9)
    assert h.ba_err_linear == pytest.approx((ra + rb) / 0.9)
    d = qcf.qcf_to_dict(t)
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["hits"]["a"] == 900
    assert d["layout"] == "sevt" and d["flags"]["era"] == ERA
    assert d["meta"] == [{"key": "GEOM", "a": None, "b": "other"}]
    row = d["history"]["rows"][0]
    assert set(row) == {"label", "code", "a", "b", "c2", "first_a", "first_b"}
    assert seqhis.code2(row["label"], ERA) == seqhis.split2(int(row["code"], 16))
    assert set(d["history"]) >= {"c2sum", "c2n", "c2per", "pvalue", "bzero", "azero", "rows"}
    assert len(d["history"]["rows"]) == len(t)
    out = render_qcf(t, limit=5)
    assert f"c2sum/c2n:c2per(C2CUT)  {t.c2sum:5.2f}/{t.c2n}:{t.c2per:5.3f} (30) pv[" in out
    assert "[bzero]" in out and "[azero]" in out and "hits  a : (     900 +-   30 )" in out
    assert "GEOM" in out and t.labels[0] in out
    assert out == t.render(5)


def test_msli_first_indices_and_file_rows(tmp_path):
    rng = np.random.default_rng(5)
    sa, sb = random_histories(rng, 1000), random_histories(rng, 1000)
    a, b = write_pair(tmp_path, sa, sb)
    t = qcf.compare_histories(sevt.SEvtPair.open(a, b, msli="100:900:2"))
    assert_same_as_reference(t, sa[100:900:2], sb[100:900:2])
    d = qcf.qcf_to_dict(t)
    for row in d["history"]["rows"]:
        for side, s in (("a", sa), ("b", sb)):
            i = row[f"first_{side}"]
            if i >= 0:
                assert row[f"first_{side}_row"] == 100 + 2 * i
                assert tuple(s[100 + 2 * i]) == seqhis.split2(int(row["code"], 16))


def test_missing_seq_in_compare(tmp_path):
    rng = np.random.default_rng(1)
    a = write_sevt(tmp_path / "A000", random_histories(rng, 10))
    b = write_sevt(tmp_path / "B000", None, n=10)
    with pytest.raises(InputError, match="B000/seq.npy: missing .*HitPhotonSeq"):
        qcf.compare_histories(sevt.SEvtPair.open(a, b))


def test_no_hits():
    sa = seq_words(["TO BT SA"] * 40)
    t = qcf.compare_seqhis(sa, sa, ERA)
    assert t.hits is None and qcf.qcf_to_dict(t)["hits"] is None
    assert "no hit.npy" in t.render()
    h = qcf.HitComparison(0, 5, present_a=False)
    assert h.ab == 0.0 and h.ba == 0.0 and h.ab_err_linear == 0.0


def test_row_order_is_qcfs_lexsort():
    """The radix row order is np.lexsort((k1, k0, -max(a, b))) to the element, ties included."""
    from photonab.qcf import row_order
    rng = np.random.default_rng(5)
    n = 50_000  # above cyext.RADIX_MIN: the radix sort
    mx = rng.integers(0, 4, n).astype(np.int64)
    k0 = rng.integers(0, 8, n).astype(np.uint64) << np.uint64(60)
    k1 = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    k1[::3] = 0  # equal (mx, k0, k1) rows: their input order decides
    assert np.array_equal(row_order(mx, k0, k1), np.lexsort((k1, k0, -mx)))
