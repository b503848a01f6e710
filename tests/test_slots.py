"""Per-slot deviations (issue 11): the largest deviation per record slot of each history
row and the slot where the row's max occurs, from the deviation pass itself; every engine,
thread count and chunking gives the same numbers (docs/event-format.md, section 5)."""
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import hand_records, random_pair
from photonab import EventPair, compare
from photonab.cuts import RECORD_TABLES, Cuts
from photonab.engines import get_engine, reference
from photonab.engines.compiled import record_table


def _slot_reference(rx_a, rx_b, seq_a, seq_b, groups):
    """(G, 3, maxrec) per-slot maxima by brute force, one photon and slot at a time."""
    groups = list(groups)
    maxrec = rx_a.shape[1]
    out = np.zeros((len(groups), 3, maxrec), np.int64)
    pa = rx_a.view(np.uint8).reshape(len(rx_a), maxrec, 2, 8)[:, :, 1, :3].astype(np.int64)
    pb = rx_b.view(np.uint8).reshape(len(rx_b), maxrec, 2, 8)[:, :, 1, :3].astype(np.int64)
    qa, qb = rx_a[:, :, 0, :].astype(np.int64), rx_b[:, :, 0, :].astype(np.int64)
    for i in range(len(seq_a)):
        if seq_a[i] != seq_b[i]:
            continue
        g = groups.index(seq_a[i])
        for r in range(maxrec):
            out[g, 0, r] = max(out[g, 0, r], np.abs(qa[i, r, :3] - qb[i, r, :3]).max())
            out[g, 1, r] = max(out[g, 1, r], abs(qa[i, r, 3] - qb[i, r, 3]))
            out[g, 2, r] = max(out[g, 2, r], np.abs(pa[i, r] - pb[i, r]).max())
    return out


def _accumulate(cy, rx_a, rx_b, seq_a, seq_b, groups, ranges, n_threads, records=True):
    acc = cy.DeviationAccumulator(cy.GroupIndex(groups), np.ones((3, 3), np.int64), np.zeros(3), n_threads,
                                  finals=False, records=records)
    for start, stop in ranges:
        acc.add(rx_a, rx_b, None, None, seq_a, seq_b, start, stop)
    return acc.result()


def test_slot_maxima_by_hand(cyext):
    a, b, _ = hand_records()
    seq = np.full(len(a), 0xD, np.uint64)
    slots = _accumulate(cyext, a, b, seq, seq, [0xD], [(0, len(a))], 1)["slots"]
    # rpost: photon 0 y 5 at slot 0, x 3 at slot 2; photon 2 z 65535 at slot 0; photon 6 1 at slot 2
    # rtime: photon 1 7 at slot 1, photon 2 32768 at slot 1; rpol: photon 3 254 at slot 0, 3 at
    # slot 1; photon 5 pol y 2 at slot 0
    assert slots.dtype == np.uint16 and slots.shape == (1, 3, 3)
    assert slots[0].tolist() == [[65535, 0, 3], [0, 32768, 0], [254, 3, 0]]


@st.composite
def records(draw):
    n = draw(st.integers(1, 300))
    maxrec = draw(st.integers(1, 17))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # few distinct values, so that ties between slots and photons are common, plus the extremes
    values = np.array([-32768, -32767, -1, 0, 1, 2, 32767, 254, 255, 3], np.int16)
    a = values[rng.integers(0, len(values), (n, maxrec, 2, 4))]
    b = np.where(rng.random(a.shape) < 0.7, a, values[rng.integers(0, len(values), a.shape)]).astype(np.int16)
    codes = np.array([0xD, 0xCD, 0x8CCD], np.uint64)
    sa = codes[rng.integers(0, 3, n)]
    sb = np.where(rng.random(n) < 0.8, sa, codes[rng.integers(0, 3, n)])
    return a, b, sa, sb, codes


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(records(), st.sampled_from([1, 2, 3]), st.sampled_from([None, ("rpost",), ("rtime", "rpol"), ("rpol",)]))
def test_slot_maxima_match_brute_force(cyext, case, n_threads, tables):
    a, b, sa, sb, codes = case
    got = _accumulate(cyext, a, b, sa, sb, codes, [(0, len(a))], n_threads,
                      records=True if tables is None else tables)
    want = _slot_reference(a, b, sa, sb, codes)
    asked = [k for k, t in enumerate(RECORD_TABLES) if tables is None or t in tables]
    for k in range(3):
        if k in asked:
            assert np.array_equal(got["slots"][:, k], want[:, k]), RECORD_TABLES[k]
            # the row max is the max over the slots; the per-photon tables are unchanged
            assert np.array_equal(np.where(got["records"]["nitem"] > 0, want[:, k].max(axis=1), -1),
                                  got["records"]["max"][:, k])
        else:  # not asked: not computed
            assert not got["slots"][:, k].any()
            assert (got["records"]["max"][:, k] == -1).all()


def test_slot_maxima_merge_exactly_across_ranges_and_threads(cyext, tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 3 * cyext.SUM_BLOCK + 5, maxrec=12, extreme=True, seed=3))
    groups = np.unique(np.asarray(pair.a.seqhis))
    args = (pair.a.rx, pair.b.rx, pair.a.seqhis, pair.b.seqhis, groups)
    n, blk = pair.n, cyext.SUM_BLOCK
    one = _accumulate(cyext, *args, [(0, n)], 1)
    for ranges, threads in (([(0, blk), (blk, 3 * blk), (3 * blk, n)], 2), ([(0, n)], 3)):
        other = _accumulate(cyext, *args, ranges, threads)
        assert np.array_equal(one["slots"], other["slots"])
        assert np.array_equal(one["records"], other["records"])
    # parts of separate accumulators merge by max (as the dask engine does)
    left = _accumulate(cyext, *args, [(0, blk)], 1)
    right = _accumulate(cyext, *args, [(blk, n)], 2)
    assert np.array_equal(np.maximum(left["slots"], right["slots"]), one["slots"])
    sd = reference.record_slot_deviations(pair.a.rx, pair.b.rx)
    aligned = np.flatnonzero(np.asarray(pair.a.seqhis) == np.asarray(pair.b.seqhis))
    g = np.searchsorted(groups, np.asarray(pair.a.seqhis)[aligned])
    for k, t in enumerate(RECORD_TABLES):
        want = np.zeros((len(groups), 12), np.int64)
        np.maximum.at(want, g, sd[t][aligned].astype(np.int64))
        assert np.array_equal(one["slots"][:, k], want), t


def test_merge_slot_partials(cyext):
    parts = cyext.new_slot_partials(4, 2, 10)
    assert parts.shape == (2, 4, 10, 8) and parts.dtype == np.uint16
    assert cyext.SLOT_LANES == ((0, 1, 2), (3,), (4, 5, 6))  # x y z | t | pol x y z (lane 7: wavelength)
    parts[0, 1, 3, 5], parts[1, 1, 3, 4], parts[1, 0, 9, 2], parts[0, 2, 0, 7] = 7, 9, 65535, 99
    merged = cyext.merge_slot_partials(parts)
    assert merged.shape == (4, 3, 10) and merged[1, 2, 3] == 9 and merged[0, 0, 9] == 65535
    assert merged.sum() == 9 + 65535  # the wavelength lane is no table's
    assert not cyext.merge_slot_partials(parts, 0b011)[:, 2].any()  # rpol not asked


def test_worst_slot_is_the_lowest_slot_reaching_the_max(tmp_path):
    # one history, two photons: max 5 reached at slot 3 (photon 0) and slot 1 (photon 1)
    rx_a = np.zeros((2, 4, 2, 4), np.int16)
    rx_b = rx_a.copy()
    rx_b[0, 3, 0, 0], rx_b[1, 1, 0, 2], rx_b[1, 2, 0, 1] = 5, -5, 4
    from conftest import write_event
    ph = np.zeros((2, 1, 2), np.uint64)
    ph[:, 0, 0] = 0x8ccd
    ox = np.zeros((2, 4, 4), np.float32)
    pair = EventPair.open(write_event(tmp_path / "1", ox, rx_a, ph), write_event(tmp_path / "-1", ox, rx_b, ph))
    for engine in ("cython", "numpy", "select"):
        c = compare(pair, engine)
        rpost, rtime = c.tables["rpost"].raw, c.tables["rtime"].raw
        assert rpost.slot_max.tolist() == [[0, 5, 4, 5]] and rpost.worst_slot.tolist() == [1], engine
        assert rtime.slot_max.tolist() == [[0, 0, 0, 0]] and rtime.worst_slot.tolist() == [0], engine
        assert c.tables["ox"].raw.slot_max is None and c.tables["ox"].raw.worst_slot is None


def test_worst_slots_refuses_more_slots_than_int16_numbers():
    import cyext
    records = cyext.merge_record_partials(cyext.new_record_partials(1, 1))
    assert cyext.worst_slots(np.zeros((1, 3, 32767), np.uint16), records).tolist() == [[-1, -1, -1]]
    with pytest.raises(ValueError, match="maxrec 32768 does not fit"):
        cyext.worst_slots(np.zeros((1, 3, 32768), np.uint16), records)


def test_history_without_aligned_photons_has_no_worst_slot(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 400, p_aligned=0.0, n_codes=2, maxrec=5))
    for engine in ("cython", "numpy", "select"):
        agg = get_engine(engine).deviations(pair, compare(pair, "numpy").history_counts.groups(),
                                            Cuts.for_domains(pair.domains), tables=("rpost",))["rpost"]
        assert agg.slot_max.shape == (len(agg.codes), 5)
        assert (agg.worst_slot[agg.nitem == 0] == -1).all() and not agg.slot_max[agg.nitem == 0].any()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3000), st.integers(1, 16), st.integers(0, 2**31), st.booleans(),
       st.sampled_from([("rpost", "rtime", "rpol", "ox"), ("rpost",), ("rtime", "ox"), ("rpol",)]))
def test_engines_agree_on_slots(n, maxrec, seed, extreme, tables):
    with tempfile.TemporaryDirectory() as tmp:
        pair = EventPair.open(*random_pair(Path(tmp), n, maxrec=maxrec, seed=seed, extreme=extreme, spread=50))
        results = [compare(pair, e, tables=tables) for e in ("cython", "numpy", "select")]
        results.append(compare(pair, get_engine("cython", n_threads=1), tables=tables))
        for t in tables:
            first = results[0].tables[t].raw
            if t != "ox":
                assert first.slot_max.shape == (len(first.codes), maxrec)
                has = first.nitem > 0
                assert np.array_equal(first.slot_max.max(axis=1, initial=0)[has], first.max[has])
            for other in results[1:]:
                assert first.equals(other.tables[t].raw), (t, other.engine)


def test_dask_engine_gives_the_same_slots(tmp_path):
    pytest.importorskip("distributed")
    pair = EventPair.open(*random_pair(tmp_path, 2 * (1 << 16) + 77, maxrec=11, extreme=True, seed=8))
    want = compare(pair, "cython")
    with get_engine("dask", n_workers=2, chunk=1 << 16) as eng:
        got = compare(pair, eng)
    for t in RECORD_TABLES:
        assert got.tables[t].raw.equals(want.tables[t].raw), t
        assert got.tables[t].raw.slot_max.shape[1] == 11


def test_fewer_threads_when_partials_would_pass_the_budget(cyext, tmp_path, monkeypatch):
    pair = EventPair.open(*random_pair(tmp_path, 20_000, distinct=True, maxrec=4, seed=2, extreme=True))
    groups = np.unique(np.asarray(pair.a.seqhis))
    cuts = Cuts.for_domains(pair.domains)

    def run():
        acc = cyext.DeviationAccumulator(cyext.GroupIndex(groups), cuts.record_thresholds(), cuts.ox.values, 2,
                                         maxrec=4)
        acc.add(pair.a.rx, pair.b.rx, pair.a.ox, pair.b.ox, pair.a.seqhis, pair.b.seqhis, 0, pair.n)
        return acc.n_threads, acc.n_threads_asked, acc.result()

    wide = run()
    monkeypatch.setattr(cyext, "PARTIALS_BUDGET", 0)
    narrow = run()
    assert narrow[:2] == (1, 2) and wide[1] == 2
    for name in ("records", "slots", "finals", "sums"):
        assert np.array_equal(wide[2][name], narrow[2][name]), name
    worst = cyext.worst_slots(wide[2]["slots"], wide[2]["records"])
    for k, t in enumerate(RECORD_TABLES):
        rec = record_table(wide[2]["records"], k)
        reaches = wide[2]["slots"][:, k].astype(np.int64) == rec["max"][:, None]
        assert np.array_equal(worst[:, k], np.where(reaches.any(axis=1), reaches.argmax(axis=1), -1))
