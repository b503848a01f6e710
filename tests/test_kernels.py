"""cyext kernels called directly, against numpy references (as pandas' test_libgroupby)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import hand_records, kernel_record_deviations, random_pair
from photonab import EventPair
from photonab.cuts import RECORD_TABLES, Cuts
from photonab.engines import reference
from photonab.engines.compiled import record_table


def _seq(n, n_codes, seed=0):
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**63, n_codes, dtype=np.uint64) | np.uint64(0xD)
    return pool[rng.integers(0, n_codes, n)], pool[rng.integers(0, n_codes, n)]


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("n, n_codes", [(0, 1), (1, 1), (1000, 3), (200_003, 50), (150_000, 150_000)])
def test_history_counter_matches_unique(cyext, n, n_codes, n_threads):
    sa, sb = _seq(n, n_codes)
    counter = cyext.HistoryCounter()
    counter.add(sa, sb, 0, n, n_threads)
    codes, counts = counter.result()
    ua, ca = np.unique(sa, return_counts=True)
    ub, cb = np.unique(sb, return_counts=True)
    assert sorted(codes.tolist()) == sorted(set(ua.tolist()) | set(ub.tolist()))
    lookup = dict(zip(codes.tolist(), counts.tolist()))
    assert all(lookup[c][0] == k for c, k in zip(ua.tolist(), ca.tolist()))
    assert all(lookup[c][1] == k for c, k in zip(ub.tolist(), cb.tolist()))


def test_history_counter_ranges_and_merge(cyext):
    sa, sb = _seq(100_000, 500, seed=1)
    whole = cyext.HistoryCounter()
    whole.add(sa, sb)
    left, right = cyext.HistoryCounter(), cyext.HistoryCounter()
    left.add(sa, sb, 0, 33_333, 2)
    right.add(sa, sb, 33_333, 100_000, 1)
    left.add_counts(*right.result())
    (c1, k1), (c2, k2) = left.result(), whole.result()
    o1, o2 = np.argsort(c1), np.argsort(c2)
    assert np.array_equal(c1[o1], c2[o2]) and np.array_equal(k1[o1], k2[o2])


def test_history_counter_takes_strided_read_only_views(cyext, tmp_path):
    ph = np.zeros((1000, 1, 2), np.uint64)
    ph[:, 0, 0] = np.arange(1000) % 7
    np.save(tmp_path / "ph.npy", ph)
    m = np.load(tmp_path / "ph.npy", mmap_mode="r")
    assert not m.flags.writeable
    counter = cyext.HistoryCounter()
    counter.add(m[::3, 0, 0], m[::3, 0, 0])
    codes, counts = counter.result()
    assert counts[:, 0].sum() == len(range(0, 1000, 3))


def test_history_counter_bad_range(cyext):
    sa, sb = _seq(10, 2)
    with pytest.raises(ValueError, match="outside"):
        cyext.HistoryCounter().add(sa, sb, 0, 11)
    with pytest.raises(ValueError, match="differ in length"):
        cyext.HistoryCounter().add(sa, sb[:5])


def test_group_index(cyext):
    codes = np.array([5, 0, 2**64 - 1, 0x8ccd], np.uint64)
    index = cyext.GroupIndex(codes)
    assert index.lookup(np.array([0x8ccd, 5, 7, 0, 2**64 - 1], np.uint64)).tolist() == [3, 0, -1, 1, 2]
    with pytest.raises(ValueError, match="distinct"):
        cyext.GroupIndex(np.array([1, 1], np.uint64))


def _pair(tmp_path, **kw):
    a, b = random_pair(tmp_path, **kw)
    return EventPair.open(a, b)


def _reference_records(pair, groups):
    dev = reference.record_deviations(pair.a.rx, pair.b.rx)
    sa, sb = np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis)
    aligned = np.flatnonzero(sa == sb)
    g = np.searchsorted(groups, sa[aligned])
    return dev, aligned, g


def _accumulate(cyext, pair, groups, cuts, ranges, n_threads, **kw):
    acc = cyext.DeviationAccumulator(cyext.GroupIndex(groups), cuts.record_thresholds(), cuts.ox.values,
                                     n_threads, **kw)
    for start, stop in ranges:
        acc.add(pair.a.rx, pair.b.rx, pair.a.ox, pair.b.ox, pair.a.seqhis, pair.b.seqhis, start, stop)
    return acc.result()


@pytest.mark.parametrize("n_threads", [1, 2])
def test_record_aggregates_match_reference(cyext, tmp_path, n_threads):
    pair = _pair(tmp_path, n=2 * cyext.SUM_BLOCK + 11, extreme=True, seed=5)
    cuts = Cuts.for_domains(pair.domains)
    groups = np.unique(np.asarray(pair.a.seqhis))
    n = pair.n
    merged = _accumulate(cyext, pair, groups, cuts, [(0, cyext.SUM_BLOCK), (cyext.SUM_BLOCK, n)], n_threads,
                         finals=False)["records"]
    dev, aligned, g = _reference_records(pair, groups)
    for k, table in enumerate(RECORD_TABLES):
        want = reference.aggregate_rows(table, groups, g, aligned, dev[table][aligned], cuts[table])
        got = record_table(merged, k)
        assert np.array_equal(merged["nitem"], want.nitem)
        for name in ("ndisc", "max", "min", "sum", "argmax"):
            assert np.array_equal(got[name], getattr(want, name)), (table, name)


def test_record_thresholds_equal_the_float_predicate():
    from photonab.events import Domains
    fdom = np.array([[[0, 0, 0, 748]], [[0, 20, 20, 0]], [[60, 820, 20, 760]]], np.float32)
    for tmax in (20, 7.5, 1.0, 123.456):
        fdom[1, 0, 1] = tmax
        cuts = Cuts.for_domains(Domains.from_arrays(fdom, np.array([[[0, 0, 9, 10]]], np.int32), "x"))
        for table in RECORD_TABLES:
            thr = cuts[table].thresholds()
            d = np.arange(0, 200)
            want = cuts[table].beyond(d)
            assert np.array_equal(d[:, None] >= thr[None, :], want)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_final_aggregates_match_reference(cyext, tmp_path, n_threads):
    n = 3 * cyext.SUM_BLOCK + 123
    pair = _pair(tmp_path, n=n, nan=17, seed=9, maxrec=2)
    cuts = Cuts.for_domains(pair.domains)
    groups = np.unique(np.asarray(pair.a.seqhis))
    step = 2 * cyext.SUM_BLOCK
    ranges = [(s, min(n, s + step)) for s in range(0, n, step)]
    got = _accumulate(cyext, pair, groups, cuts, ranges, n_threads, records=False)
    f = got["finals"]
    sa, sb = np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis)
    aligned = np.flatnonzero(sa == sb)
    d = reference.final_deviation(pair.a.ox, pair.b.ox)[aligned]
    want = reference.aggregate_rows("ox", groups, np.searchsorted(groups, sa[aligned]), aligned, d, cuts.ox)
    assert want.nnan.sum() > 0
    for name in ("nitem", "nnan", "ndisc", "argmax", "max", "min"):
        assert np.array_equal(f[name], getattr(want, name)), name
    assert np.array_equal(got["sums"], want.sum)  # bit for bit: same association
    # ranges in any order, kept blocks merged afterwards: the same bits
    kept = _accumulate(cyext, pair, groups, cuts, ranges[::-1], n_threads, records=False, keep_blocks=True)
    assert np.array_equal(cyext.merge_block_sums(len(groups), kept["blocks"]), got["sums"])


def test_accumulator_rejects_bad_ranges(cyext, tmp_path):
    pair = _pair(tmp_path, n=100, maxrec=1)
    groups = np.unique(np.asarray(pair.a.seqhis))
    cuts = Cuts.for_domains(pair.domains)
    with pytest.raises(ValueError, match="multiple of SUM_BLOCK"):
        _accumulate(cyext, pair, groups, cuts, [(5, 50)], 1)
    with pytest.raises(ValueError, match="outside"):
        _accumulate(cyext, pair, groups, cuts, [(0, 101)], 1)
    with pytest.raises(ValueError, match="not in the index"):
        _accumulate(cyext, pair, groups[1:], cuts, [(0, 100)], 1)


def test_accumulator_wants_increasing_ranges(cyext, tmp_path):
    pair = _pair(tmp_path, n=cyext.SUM_BLOCK + 10, maxrec=1)
    groups = np.unique(np.asarray(pair.a.seqhis))
    with pytest.raises(ValueError, match="increasing order"):
        _accumulate(cyext, pair, groups, Cuts.for_domains(pair.domains),
                    [(cyext.SUM_BLOCK, pair.n), (0, cyext.SUM_BLOCK)], 1)


@pytest.mark.parametrize("table", [0, 1, 2, 3])
def test_chase_finds_the_most_deviant(cyext, tmp_path, table):
    pair = _pair(tmp_path, n=5000, nan=2, seed=2, maxrec=4, spread=20)
    sa, sb = np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis)
    if table == 3:
        dev = reference.final_deviation(pair.a.ox, pair.b.ox)
        dev = np.where(np.isnan(dev), np.inf, dev)
    else:
        dev = reference.record_deviations(pair.a.rx, pair.b.rx)[RECORD_TABLES[table]].astype(float)
    code = sa[0]
    for all_codes in (False, True):
        sel = (sa == sb) & ((sa == code) | all_codes)
        min_dev = np.quantile(dev[sel], 0.5)
        keep = np.flatnonzero(sel & (dev >= min_dev))
        want = keep[np.lexsort((keep, -dev[keep]))][:25]
        out_i, out_d = np.zeros(25, np.int64), np.zeros(25)
        values = (pair.a.ox, pair.b.ox) if table == 3 else (pair.a.rx, pair.b.rx)
        k, found = cyext.chase(out_i, out_d, table, code, all_codes, min_dev, *values, pair.a.seqhis,
                               pair.b.seqhis, 0, pair.n, 2)
        assert found == len(keep) and k == len(want)
        assert np.array_equal(out_i[:k], want)
        assert np.array_equal(out_d[:k], dev[want])


def _words_sum(arrays) -> int:
    return sum(int(a.reshape(-1).view(np.uint64).sum(dtype=np.uint64)) for a in arrays) % 2**64


@pytest.mark.parametrize("n", [0, 1, 15, 17, 4095, 4096, 4097, 10000])
def test_simd_read_floor_sums_every_word(cyext, n):
    """The floor reads every byte of every array once (checked by the wrapping sum of the
    words), whatever the rows' widths (every tail of the wide loads), the photons (the
    prefetch and the block edges) and the threads; reruns on every path (simd_paths_agree)."""
    rng = np.random.default_rng(n)
    arrays = [rng.integers(0, 2**64, (n, words), dtype=np.uint64, endpoint=False) for words in (1, 2, 3, 5, 7, 9, 20, 25)]
    arrays[2] = arrays[2].view(np.int16)  # rows are bytes to the floor, whatever their dtype
    arrays[3] = np.zeros((n, 0), np.uint64)  # rows of no bytes: nothing to read
    for k in (1, 2):
        assert cyext.read_floor(arrays, k) == _words_sum(arrays)
        assert cyext.read_floor(arrays[6:7], k) == _words_sum(arrays[6:7])


@pytest.mark.parametrize("arrays, message", [
    ([], "1 to 8 arrays"),
    ([np.zeros(4, np.uint64)] * 9, "1 to 8 arrays"),
    ([np.zeros(4, np.uint64), np.zeros(5, np.uint64)], "array 1 is not a C-contiguous array of 4 rows"),
    ([np.zeros((4, 4), np.uint64)[:, ::2]], "array 0 is not a C-contiguous"),
    ([np.zeros((4, 3), np.uint16)], "array 0's rows are not a multiple of 8 bytes"),
    ([[1, 2]], "array 0 is not a C-contiguous"),
])
def test_read_floor_refuses_arrays_it_cannot_read_whole(cyext, arrays, message):
    with pytest.raises(ValueError, match=message):
        cyext.read_floor(arrays)


@pytest.mark.parametrize("n, n_codes", [(3 * (1 << 16), 6), (300, 40)])  # a copy put back / looked up first
def test_refused_range_leaves_the_accumulator_as_it_was(cyext, tmp_path, n, n_codes):
    pair = _pair(tmp_path, n=n, maxrec=2, seed=3, n_codes=n_codes, nan=2)
    cuts = Cuts.for_domains(pair.domains)
    sa, sb = np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis)
    groups = np.unique(sa[sa == sb])
    # a history missing from the index near the end of the range, after most photons were seen
    bad_a, bad_b = sa.copy(), sb.copy()
    bad_a[-1] = bad_b[-1] = np.uint64(0xDEAD)
    acc = cyext.DeviationAccumulator(cyext.GroupIndex(groups), cuts.record_thresholds(), cuts.ox.values, 2)
    with pytest.raises(ValueError, match="not in the index; nothing was added"):
        acc.add(pair.a.rx, pair.b.rx, pair.a.ox, pair.b.ox, bad_a, bad_b, 0, n)
    empty = cyext.DeviationAccumulator(cyext.GroupIndex(groups), cuts.record_thresholds(), cuts.ox.values, 2)
    for name in ("records", "finals", "sums"):
        assert np.array_equal(acc.result()[name], empty.result()[name], equal_nan=name == "sums"), name
    # and it goes on as if the refused range had not been offered
    acc.add(pair.a.rx, pair.b.rx, pair.a.ox, pair.b.ox, sa, sb, 0, n)
    want = _accumulate(cyext, pair, groups, cuts, [(0, n)], 2)
    for name in ("records", "finals", "sums"):
        assert np.array_equal(acc.result()[name], want[name]), name


@pytest.mark.parametrize("n_threads", [1, 2])
def test_record_deviations_by_hand(cyext, n_threads):
    a, b, want = hand_records()
    assert np.array_equal(kernel_record_deviations(cyext, a, b, n_threads), want)
    # the numpy reference of the other engines agrees with the same hand-made numbers
    dev = reference.record_deviations(a, b)
    assert np.array_equal(np.stack([dev[t] for t in RECORD_TABLES], axis=1), want)
    assert cyext.RECORD_TABLES == ("rpost", "rtime", "rpol")  # the column order of ``want``


def test_record_aggregates_by_hand(cyext):
    """One history, the seven hand-made photons: counts beyond integer thresholds
    (d >= threshold), max with the photon that reaches it, min and sum, by hand."""
    a, b, _ = hand_records()
    seq = np.full(len(a), 0xD, np.uint64)
    thresholds = np.array([[2, 6, 65535], [7, 8, 40000], [1, 2, 255]])
    acc = cyext.DeviationAccumulator(cyext.GroupIndex([0xD]), thresholds, np.zeros(3), 1, finals=False)
    acc.add(a, b, None, None, seq, seq, 0, len(a))
    rec = acc.result()["records"]
    assert rec.dtype == cyext.RECORD_DTYPE and rec["nitem"].tolist() == [7]
    # rpost 5, 0, 65535, 0, 0, 0, 1; rtime 0, 7, 32768, 0, 0, 0, 0; rpol 0, 0, 0, 254, 0, 2, 0
    by_hand = {"rpost": ([2, 1, 1], 65535, 0, 65541, 2), "rtime": ([2, 1, 0], 32768, 0, 32775, 2),
               "rpol": ([2, 2, 0], 254, 0, 256, 3)}
    for k, (table, (ndisc, mx, mn, total, argmax)) in enumerate(by_hand.items()):
        row = {name: column[0] for name, column in record_table(rec, k).items()}
        assert row["ndisc"].tolist() == ndisc, table
        assert (row["max"], row["min"], row["sum"], row["argmax"]) == (mx, mn, total, argmax), table


def test_record_argmax_ties_keep_the_lowest_photon(cyext):
    a, b, _ = hand_records()
    a, b = np.concatenate([a, a]), np.concatenate([b, b])  # photons 7..13 repeat 0..6
    seq = np.full(len(a), 0xD, np.uint64)
    for n_threads in (1, 2):
        acc = cyext.DeviationAccumulator(cyext.GroupIndex([0xD]), np.ones((3, 3), np.int64), np.zeros(3),
                                         n_threads, finals=False)
        acc.add(a, b, None, None, seq, seq, 0, len(a))
        rec = acc.result()["records"]
        assert rec["argmax"][0, :3].tolist() == [2, 2, 3]


def test_effective_threads(cyext):
    with pytest.raises(ValueError, match="n_threads = 0 is invalid"):
        cyext.effective_threads(0)
    assert cyext.effective_threads(1) == 1
    top = cyext.max_threads()
    if cyext.openmp_enabled():
        assert cyext.effective_threads(None) == cyext.effective_threads(-1) == top
        assert cyext.effective_threads(-2) == max(1, top - 1)
        assert cyext.effective_threads(-1000) == 1
        assert cyext.effective_threads(3) == 3
    else:
        assert cyext.effective_threads(None) == cyext.effective_threads(3) == 1


def test_zero_threads_is_an_input_error():
    from photonab import InputError
    from photonab.engines import get_engine
    with pytest.raises(InputError, match="n_threads = 0 is invalid"):
        get_engine("cython", n_threads=0)


# ---- SIMD paths (docs/kernels.md, "SIMD paths"): every path gives the reference's bits.
# These tests run on the path this process has; test_simd_paths_agree reruns them with
# CYEXT_ISA=sse2 and test_packaging's scalar build (CYEXT_SIMD=0) with the scalar loops.

INT16_EDGES = np.array([-32768, -32767, -256, -255, -129, -128, -1, 0, 1, 127, 128, 255, 256, 32766, 32767],
                       np.int16)
FLOAT32_EDGES = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 3.4028235e38, -3.4028235e38,
                          1e38, 1e-45, -1e-45, 1.1754942e-38, 1.1754944e-38, 16777217.0, 0.1], np.float32)
CHECK_THRESHOLDS = np.array([[1, 300, 40000], [2, 1000, 65535], [1, 3, 200]], np.int64)
CHECK_CUTS = np.array([1e-30, 0.5, 1e30])


def _mixed(rng, shape, edges, random_values):
    """Edges, random values and (for B) copies of A mixed element by element."""
    out = random_values(shape)
    pick = rng.random(shape)
    out[pick < 0.3] = rng.choice(edges, int((pick < 0.3).sum()))
    return out


def _simd_records(rng, n, maxrec):
    rx_a = _mixed(rng, (n, maxrec, 2, 4), INT16_EDGES,
                  lambda s: rng.integers(-32768, 32768, s).astype(np.int16))
    rx_b = _mixed(rng, rx_a.shape, INT16_EDGES, lambda s: rng.integers(-32768, 32768, s).astype(np.int16))
    near = rng.random(rx_a.shape) < 0.4  # small differences too, and equal values
    rx_b[near] = (rx_a[near] + rng.integers(-3, 4, int(near.sum()))).astype(np.int16)
    return rx_a, rx_b


@np.errstate(all="ignore")  # inf and NaN are the point
def _simd_finals(rng, n):
    bits = lambda s: rng.integers(0, 2**32, s, dtype=np.uint64).astype(np.uint32).view(np.float32)  # noqa: E731
    ox_a = _mixed(rng, (n, 4, 4), FLOAT32_EDGES, bits)
    ox_b = _mixed(rng, ox_a.shape, FLOAT32_EDGES, bits)
    near = rng.random(ox_a.shape) < 0.4
    ox_b[near] = ox_a[near] * np.float32(1 + 1e-6)
    same = rng.random(ox_a.shape) < 0.2  # equal values: 0, and inf - inf = NaN
    ox_b[same] = ox_a[same]
    clean = rng.random(n) < 0.5  # half the photons without NaN, so max/min see their values
    for ox in (ox_a, ox_b):
        ox[clean] = np.where(np.isnan(ox[clean]), np.float32(2.5), ox[clean])
    return ox_a, ox_b


def _check_simd_records(cyext, rx_a, rx_b, mask, n_groups, lanes=None):
    """The accumulator's record rows and per-slot maxima for table ``mask`` against numpy
    (with ``lanes`` 4 or 8: slot rows that wide, whatever NARROW_SLOTS_FROM says);
    returns the accumulator."""
    n, maxrec = rx_a.shape[:2]
    group = np.arange(n) % n_groups
    codes = np.arange(n_groups, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) | np.uint64(0xD)
    seq = codes[group]
    names = [t for k, t in enumerate(RECORD_TABLES) if mask >> k & 1]
    before = cyext.NARROW_SLOTS_FROM
    if lanes is not None:
        cyext.NARROW_SLOTS_FROM = 0 if lanes == 4 else 1 << 62
    try:
        acc = cyext.DeviationAccumulator(cyext.GroupIndex(codes), CHECK_THRESHOLDS, CHECK_CUTS, 1, records=names,
                                         finals=False, maxrec=maxrec)
    finally:
        cyext.NARROW_SLOTS_FROM = before
    assert lanes is None or acc.slot_lanes == lanes
    acc.add(rx_a, rx_b, None, None, seq, seq, 0, n)
    res = acc.result()
    slot_dev = reference.record_slot_deviations(rx_a, rx_b)
    rec = res["records"]
    assert np.array_equal(rec["nitem"], np.bincount(group, minlength=n_groups))
    # lane 3 of a row's fields is no table's: every path keeps its empty value
    assert (rec["max"][:, 3] == -1).all() and (rec["min"][:, 3] == cyext.RECORD_MIN_START).all()
    assert (rec["argmax"][:, 3] == -1).all() and (rec["ndisc"][:, :, 3] == 0).all()
    for k, table in enumerate(RECORD_TABLES):
        got, slots = record_table(rec, k), res["slots"][:, k, :]
        if table not in names:  # not computed: empty rows
            assert (got["max"] == -1).all() and (slots == 0).all(), table
            assert (got["min"] == cyext.RECORD_MIN_START).all() and (got["argmax"] == -1).all(), table
            assert (got["sum"] == 0).all() and (got["ndisc"] == 0).all(), table
            continue
        want_slots = np.zeros((n_groups, maxrec), np.uint16)
        np.maximum.at(want_slots, group, slot_dev[table])
        assert np.array_equal(slots, want_slots), (table, "slots")
        d = slot_dev[table].max(axis=1, initial=0).astype(np.int64)
        dmax = np.full(n_groups, -1, np.int64)
        np.maximum.at(dmax, group, d)
        dmin = np.full(n_groups, cyext.RECORD_MIN_START, np.int64)
        np.minimum.at(dmin, group, d)
        assert np.array_equal(got["max"], dmax) and np.array_equal(got["min"], dmin), table
        assert np.array_equal(got["sum"], np.bincount(group, d, n_groups).astype(np.int64)), table
        for j in range(3):
            want = np.bincount(group, d >= CHECK_THRESHOLDS[k, j], n_groups).astype(np.int64)
            assert np.array_equal(got["ndisc"][:, j], want), (table, j)
        first = np.full(n_groups, -1, np.int64)
        for i in range(n - 1, -1, -1):  # the lowest photon reaching its group's max
            if d[i] == dmax[group[i]]:
                first[group[i]] = i
        assert np.array_equal(got["argmax"], first), table
    return acc


def _bits(x):
    return np.asarray(x, np.float64).view(np.uint64)


def _check_simd_finals(cyext, ox_a, ox_b):
    """Per-photon ox deviations (chase, and the accumulator with one group a photon)
    against numpy, bit for bit."""
    n = len(ox_a)
    with np.errstate(all="ignore"):
        want = reference.final_deviation(ox_a, ox_b)
    nan = np.isnan(want)
    codes = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) | np.uint64(0xD)
    index, dev = np.zeros(n, np.int64), np.zeros(n)
    k, found = cyext.chase(index, dev, 3, 0xD, True, 0.0, ox_a, ox_b, codes, codes, 0, n, 1)
    assert k == found == n
    by_photon = np.empty(n)
    by_photon[index] = dev
    assert np.array_equal(_bits(by_photon), _bits(np.where(nan, np.inf, want)))
    acc = cyext.DeviationAccumulator(cyext.GroupIndex(codes), CHECK_THRESHOLDS, CHECK_CUTS, 1, records=False)
    acc.add(None, None, ox_a, ox_b, codes, codes, 0, n)
    res = acc.result()
    f = res["finals"]
    assert np.array_equal(f["nnan"], nan.astype(np.int64))
    assert np.array_equal(_bits(f["max"]), _bits(np.where(nan, -np.inf, want)))
    assert np.array_equal(_bits(f["min"]), _bits(np.where(nan, np.inf, want)))
    assert np.array_equal(_bits(res["sums"]), _bits(np.where(nan, 0.0, want)))
    for j in range(3):
        assert np.array_equal(f["ndisc"][:, j], (nan | (want > CHECK_CUTS[j])).astype(np.int64))


PATHS = ("scalar", "sse2", "avx2", "avx512")  # in order: CYEXT_ISA caps the path at one


def test_simd_path_is_known(cyext):
    import os
    path = cyext.simd_path()
    assert path in PATHS
    cap = os.environ.get("CYEXT_ISA")
    if cap in PATHS:
        assert PATHS.index(path) <= PATHS.index(cap)


@pytest.fixture(params=["wide", "narrow"])
def slot_rows(request, monkeypatch, cyext):
    """Each record check with 8-lane slot rows and again with the narrow 4-lane ones that
    tables of many groups take (NARROW_SLOTS_FROM lowered to 0)."""
    if request.param == "narrow":
        monkeypatch.setattr(cyext, "NARROW_SLOTS_FROM", 0)
    return 4 if request.param == "narrow" else 8


@pytest.mark.parametrize("maxrec", [*range(17), 31, 32])  # odd and even: AVX2 takes slot pairs, then a last slot;
# 31 and 32: the longest SEvt records
def test_simd_records_every_maxrec_and_mask(cyext, maxrec, slot_rows):
    rng = np.random.default_rng(maxrec)
    rx_a, rx_b = _simd_records(rng, 300, maxrec)
    for mask in range(1, 8):
        assert _check_simd_records(cyext, rx_a, rx_b, mask, 7).slot_lanes == slot_rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 60), maxrec=st.integers(0, 16), mask=st.integers(1, 7), n_groups=st.integers(1, 5),
       seed=st.integers(0, 2**32 - 1))
@pytest.mark.parametrize("lanes", [8, 4])
def test_simd_records_hypothesis(cyext, n, maxrec, mask, n_groups, seed, lanes):
    rx_a, rx_b = _simd_records(np.random.default_rng(seed), n, maxrec)
    _check_simd_records(cyext, rx_a, rx_b, mask, n_groups, lanes)


def test_simd_records_extremes(cyext, slot_rows):
    # every slot at -32768 against 32767 (|d| = 65535 everywhere) and the reverse; bytes 0 vs 255
    for maxrec in (1, 2, 9, 10, 16):
        rx_a = np.full((4, maxrec, 2, 4), -32768, np.int16)
        rx_b = np.full_like(rx_a, 32767)
        rx_a[1], rx_b[1] = 32767, -32768
        rx_a[2], rx_b[2] = 0, -1  # q1 bytes 0 against 255
        rx_a[3], rx_b[3] = 0, 0
        for mask in range(1, 8):
            _check_simd_records(cyext, rx_a, rx_b, mask, 4)


def test_simd_finals_special_values(cyext):
    rng = np.random.default_rng(12)
    _check_simd_finals(cyext, *_simd_finals(rng, 5000))
    # each special value against each other, in each of the 12 compared positions
    e = FLOAT32_EDGES
    pa, pb = np.repeat(e, len(e)), np.tile(e, len(e))
    ox_a = np.zeros((len(pa) * 12, 4, 4), np.float32)
    ox_b = ox_a.copy()
    for c in range(12):
        rows = slice(c * len(pa), (c + 1) * len(pa))
        ox_a[rows, c // 4, c % 4], ox_b[rows, c // 4, c % 4] = pa, pb
    ox_a[:, 3], ox_b[:, 3] = np.nan, 7.0  # row 3 (not compared)
    _check_simd_finals(cyext, ox_a, ox_b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 80), seed=st.integers(0, 2**32 - 1))
def test_simd_finals_hypothesis(cyext, n, seed):
    _check_simd_finals(cyext, *_simd_finals(np.random.default_rng(seed), n))


@pytest.mark.parametrize("cap", ["sse2", "avx2"])
def test_simd_paths_agree(cyext, cap):
    """The SIMD tests above again with each lower path (CYEXT_ISA=sse2, avx2): every path
    meets the same reference bits (the scalar one: tests/test_packaging.py)."""
    import os
    import subprocess
    import sys
    if PATHS.index(cyext.simd_path()) <= PATHS.index(cap):
        pytest.skip(f"this build and CPU run {cyext.simd_path()}: {cap} is not a second path here")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                          "simd and not simd_paths_agree"], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, CYEXT_ISA=cap))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout


def test_accumulator_wants_thresholds_that_grow_with_the_level(cyext):
    """The partial rows count each photon once, at its level: the cuts must be ordered."""
    with pytest.raises(ValueError, match="must not decrease with the level"):
        cyext.DeviationAccumulator(cyext.GroupIndex([0xD]), np.array([[2, 1, 3], [1, 2, 3], [1, 2, 3]]), np.zeros(3))


@pytest.mark.parametrize("cuts", [[0.2, 0.1, 0.3], [0.1, float("nan"), 0.3]])
def test_accumulator_wants_ox_cuts_that_grow_with_the_level(cyext, cuts):
    """The ox rows test the higher cuts only for photons beyond the lowest."""
    with pytest.raises(ValueError, match="cuts must not decrease with the level nor be NaN"):
        cyext.DeviationAccumulator(cyext.GroupIndex([0xD]), np.ones((3, 3), np.int64), np.array(cuts))


def test_result_without_copy_is_the_last_word(cyext):
    """result(copy=False) gives the accumulator's own rows (the slot maxima written over
    its lanes): again gives the same rows, and nothing more can be added."""
    a, b, _ = hand_records()
    seq = np.full(len(a), 0xD, np.uint64)
    acc = cyext.DeviationAccumulator(cyext.GroupIndex([0xD]), np.array([[2, 6, 65535], [7, 8, 40000], [1, 2, 255]]),
                                     np.zeros(3), 1, finals=False)
    acc.add(a, b, None, None, seq, seq, 0, len(a))
    first = acc.result(copy=False)["records"].copy()
    assert acc.result(copy=False)["records"].tobytes() == first.tobytes() == acc.result()["records"].tobytes()
    assert first["ndisc"][:, 0, :3].tolist() == [[2, 1, 1]]  # rpost 5, 0, 65535, 0, 0, 0, 1 beyond 2, 6, 65535
    with pytest.raises(ValueError, match="nothing more can be added"):
        acc.add(a, b, None, None, seq, seq, 0, len(a))


def test_accumulator_refuses_events_beyond_its_32_bit_level_counts(cyext):
    """A history's level counts are 32-bit: an event of more than MAX_PHOTONS photons is
    refused with a clear error, before anything is read (a zero-stride seqhis here)."""
    seq = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint64), (cyext.MAX_PHOTONS + 1,), (0,))
    acc = cyext.DeviationAccumulator(cyext.GroupIndex([0xD]), np.ones((3, 3), np.int64), np.zeros(3), 1,
                                     finals=False)
    with pytest.raises(ValueError, match="at most 2147483647"):
        acc.add(None, None, None, None, seq, seq, 0, 0)
    one = cyext.PairPass(np.ones((3, 3), np.int64), np.zeros(3), 1, finals=False)
    with pytest.raises(ValueError, match="32-bit"):
        one.add(None, None, None, None, seq, seq, 0, 0)


def _codes(draw_rng, n, bytes_used, repeats):
    """n uint64 codes using the low ``bytes_used`` bytes (the rest 0: constant digits the
    radix sort skips), a fraction ``repeats`` of them copies of others."""
    top = np.uint64((1 << (8 * bytes_used)) - 1) if bytes_used < 8 else np.uint64(2**64 - 1)
    codes = draw_rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False) & top
    if n:
        copies = draw_rng.random(n) < repeats
        codes[copies] = codes[draw_rng.integers(0, n, int(copies.sum()))]
    return codes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.sampled_from([0, 1, 2, 100, 4095, 4096, 5000, 70000]), bytes_used=st.integers(0, 8),
       repeats=st.sampled_from([0.0, 0.5, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_radix_sorts_are_numpys(cyext, n, bytes_used, repeats, seed):
    """sort_codes is np.sort and lexorder is np.lexsort (stable: equal codes in row
    order), on both sides of RADIX_MIN, with constant and varying digits, for 1-3 words."""
    rng = np.random.default_rng(seed)
    codes = _codes(rng, n, bytes_used, repeats)
    got = codes.copy()
    cyext.sort_codes(got)
    assert np.array_equal(got, np.sort(codes))
    hi = _codes(rng, n, 8 - bytes_used, repeats)
    if n:
        hi[rng.random(n) < 0.3] = np.uint64(2**64 - 1)  # the top digits set too
    top = rng.integers(0, 3, n).astype(np.uint64)  # a third word of few values (QCF's max(a, b))
    lo_before, hi_before = codes.copy(), hi.copy()
    for keys in ((codes,), (codes, hi), (hi, codes, top)):
        order = cyext.lexorder(keys)
        assert order.dtype == np.int64 and np.array_equal(order, np.lexsort(keys))
    assert np.array_equal(cyext.lexorder(np.stack([codes, hi])), np.lexsort((codes, hi)))
    assert np.array_equal(codes, lo_before) and np.array_equal(hi, hi_before)  # inputs untouched


def test_radix_sorts_refuse_bad_input(cyext):
    with pytest.raises(ValueError, match="lexorder: keys must be 1-d uint64 columns of one length"):
        cyext.lexorder((np.zeros(3, np.uint64), np.zeros(2, np.uint64)))
    with pytest.raises(ValueError, match="lexorder: keys must be"):
        cyext.lexorder((np.zeros(3, np.int64),))
    with pytest.raises(ValueError, match="lexorder: no keys"):
        cyext.lexorder(())
    for bad in (np.zeros(5, np.uint64), np.uint64(3)):  # one column, a scalar: not a list of columns
        with pytest.raises(ValueError, match="lexorder: give a list or tuple of key columns"):
            cyext.lexorder(bad)
    with pytest.raises(ValueError):  # not a uint64 column: a memoryview type error, no crash
        cyext.sort_codes(np.zeros(5, np.int32))
