"""cyext.PairPass (histories and deviations in one pass) against the two-pass way
(HistoryCounter, then DeviationAccumulator over HistoryCounts.groups())."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import random_pair
from photonab import EventPair
from photonab.cuts import RECORD_TABLES, Cuts
from photonab.engines.base import HistoryCounts


def two_pass(cyext, pair, cuts, n_threads, ranges, records, finals):
    counter = cyext.HistoryCounter()
    for start, stop in ranges:
        counter.add(pair.a.seqhis, pair.b.seqhis, start, stop, n_threads)
    codes, counts = counter.result()
    groups = HistoryCounts.from_unsorted(codes, counts[:, 0], counts[:, 1]).groups()
    acc = cyext.DeviationAccumulator(cyext.GroupIndex(groups), cuts.record_thresholds(), cuts.ox.values, n_threads,
                                     records=records, finals=finals, maxrec=pair.a.rx.shape[1])
    for start, stop in ranges:
        acc.add(pair.a.rx, pair.b.rx, pair.a.ox, pair.b.ox, pair.a.seqhis, pair.b.seqhis, start, stop)
    return codes, counts, groups, acc.result()


def one_pass(cyext, pair, cuts, n_threads, ranges, records, finals, migrations=None):
    one = cyext.PairPass(cuts.record_thresholds(), cuts.ox.values, n_threads, records=records, finals=finals,
                         maxrec=pair.a.rx.shape[1], migrations=migrations)
    for start, stop in ranges:
        one.add(pair.a.rx, pair.b.rx, pair.a.ox, pair.b.ox, pair.a.seqhis, pair.b.seqhis, start, stop)
    return one, one.result()


def assert_same(cyext, got, want):
    codes, counts, groups, res = got
    wcodes, wcounts, wgroups, wres = want
    order, worder = np.argsort(codes), np.argsort(wcodes)
    assert np.array_equal(codes[order], wcodes[worder]) and np.array_equal(counts[order], wcounts[worder])
    assert np.array_equal(groups, wgroups)
    assert res.keys() == wres.keys()
    for key in res:
        assert res[key].tobytes() == wres[key].tobytes(), key  # bit for bit, the ox sums too


def _ranges(n, chunk):
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.integers(1, 4), extra=st.integers(0, 3000), n_codes=st.sampled_from([1, 5, 300, 40_000]),
       n_threads=st.integers(1, 3), chunk_blocks=st.integers(1, 3), seed=st.integers(0, 2**16),
       tables=st.sampled_from([RECORD_TABLES + ("ox",), ("rpost",), ("rtime", "ox"), ("ox",)]),
       p_aligned=st.sampled_from([0.0, 0.5, 0.95]))
def test_one_pass_is_the_two_pass_way(cyext, tmp_path_factory, blocks, extra, n_codes, n_threads, chunk_blocks,
                                      seed, tables, p_aligned):
    n = (blocks - 1) * cyext.SUM_BLOCK + extra + 1
    a, b = random_pair(tmp_path_factory.mktemp("p"), n, seed=seed, n_codes=n_codes, p_aligned=p_aligned,
                       nan=3, extreme=True)
    pair = EventPair.open(a, b)
    cuts = Cuts.for_domains(pair.domains)
    ranges = _ranges(n, chunk_blocks * cyext.SUM_BLOCK)
    records, finals = [t for t in RECORD_TABLES if t in tables], "ox" in tables
    mig = cyext.MigrationCounter(1 << 20, keep=25, room=cyext.SUM_BLOCK)
    _, got = one_pass(cyext, pair, cuts, n_threads, ranges, records, finals, mig)
    assert_same(cyext, got, two_pass(cyext, pair, cuts, n_threads, ranges, records, finals))
    assert_same_migrations(mig.result(), separate_migrations(cyext, pair, ranges, n_threads))


def separate_migrations(cyext, pair, ranges, n_threads, capacity=1 << 20):
    counter = cyext.MigrationCounter(capacity, keep=25)
    for start, stop in ranges:
        counter.add(pair.a.seqhis, pair.b.seqhis, start, stop, n_threads)
    return counter.result()


def assert_same_migrations(got, want):
    order = np.lexsort(got["pairs"].T)
    worder = np.lexsort(want["pairs"].T)
    for key in ("pairs", "counts", "first"):
        assert np.array_equal(got[key][order], want[key][worder]), key
    for key in ("n_migrated", "lowest", "overflowed", "unplaced"):
        assert np.array_equal(got[key], want[key]), key


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("room, many", [(None, None), (3 * 4096, 10), (3 * 4096, 1 << 30)])
def test_distinct_histories_take_rounds_and_fold_threads(cyext, tmp_path, monkeypatch, n_threads, room, many):
    """Every photon its own history: the private tables fill, blocks wait for rounds, the
    index grows past PARTIALS_BUDGET (made small here) and the threads fold into one."""
    n = 3 * cyext.SUM_BLOCK + 5
    pair = EventPair.open(*random_pair(tmp_path, n, distinct=True, p_aligned=0.7, seed=3))
    cuts = Cuts.for_domains(pair.domains)
    monkeypatch.setattr(cyext, "PARTIALS_BUDGET", 1 << 20)
    if room:  # small private tables: blocks counted over several rounds, with or without counting first
        monkeypatch.setattr(cyext, "PAIR_PASS_ROOM", room)
        monkeypatch.setattr(cyext, "MANY_NEW_HISTORIES", many)
    ranges = _ranges(n, 2 * cyext.SUM_BLOCK)
    mig = cyext.MigrationCounter(50_000, keep=25, room=cyext.SUM_BLOCK)  # overflows: 30% of 200k migrate
    one, got = one_pass(cyext, pair, cuts, n_threads, ranges, True, True, mig)
    assert one.rounds > len(ranges)  # blocks waited for the index
    assert one.deviations.n_threads == 1  # 100k groups of partials do not fit 1 MB
    assert_same(cyext, got, two_pass(cyext, pair, cuts, n_threads, ranges, True, True))
    res = mig.result()
    assert res["overflowed"] and res["n_migrated"] == np.count_nonzero(pair.a.seqhis != pair.b.seqhis)


@pytest.mark.parametrize("tables", [RECORD_TABLES + ("ox",), ("rtime",), ("ox",)])
def test_threads_sharing_one_table_give_one_threads_bits(cyext, tmp_path, monkeypatch, tables):
    """Rows for one part only (PARTIALS_BUDGET) and more threads: the threads share the
    table, each taking the histories it owns in every block; the tables, the ox sums
    included, are those of one thread, in the one pass and in the accumulator."""
    n = 2 * cyext.SUM_BLOCK + 77
    pair = EventPair.open(*random_pair(tmp_path, n, distinct=True, p_aligned=0.8, seed=5))
    cuts = Cuts.for_domains(pair.domains)
    records, finals = tuple(t for t in tables if t != "ox") or False, "ox" in tables
    ranges = _ranges(n, cyext.SUM_BLOCK)
    alone = one_pass(cyext, pair, cuts, 1, ranges, records, finals)[1]
    monkeypatch.setattr(cyext, "PARTIALS_BUDGET", 0)
    one, shared = one_pass(cyext, pair, cuts, 2, ranges, records, finals)
    assert one.deviations.n_threads == 1 and one.deviations.n_threads_asked == 2
    assert_same(cyext, shared, alone)
    assert_same(cyext, two_pass(cyext, pair, cuts, 2, ranges, records, finals), alone)
    if finals:  # kept block partials (distributed runs), ranges in any order: one entry a block
        groups = alone[2]
        acc = cyext.DeviationAccumulator(cyext.GroupIndex(groups), cuts.record_thresholds(), cuts.ox.values, 2,
                                         records=records, finals=True, keep_blocks=True, maxrec=pair.a.rx.shape[1])
        for start, stop in ranges[::-1]:
            acc.add(pair.a.rx, pair.b.rx, pair.a.ox, pair.b.ox, pair.a.seqhis, pair.b.seqhis, start, stop)
        assert acc.n_threads == 1
        assert cyext.merge_block_sums(len(groups), acc.result()["blocks"]).tobytes() == alone[3]["sums"].tobytes()


def test_compare_makes_the_migration_table_in_its_pass(tmp_path):
    from photonab.comparison import compare
    from photonab.migration import count_migrations
    pair = EventPair.open(*random_pair(tmp_path, 70_000, n_codes=30, p_aligned=0.6))
    result = compare(pair, "cython")
    assert "histories and deviations" in result.seconds
    assert result.migration.n_migrated > 0 and result.migration.equals(count_migrations(pair.a.seqhis, pair.b.seqhis))


def test_one_pass_refuses_what_the_accumulator_refuses(cyext, tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 1000))
    cuts = Cuts.for_domains(pair.domains)
    one = cyext.PairPass(cuts.record_thresholds(), cuts.ox.values)
    args = (pair.a.rx, pair.b.rx, pair.a.ox, pair.b.ox, pair.a.seqhis, pair.b.seqhis)
    with pytest.raises(ValueError, match="not a multiple of SUM_BLOCK"):
        one.add(*args, 7, 100)
    with pytest.raises(ValueError, match="outside"):
        one.add(*args, 0, 1001)
    with pytest.raises(ValueError, match="room >= 4096 photons"):
        cyext.PairPass(cuts.record_thresholds(), cuts.ox.values, migrations=cyext.MigrationCounter(room=100))
    one.add(*args, 0, 1000)
    codes, counts, groups, res = one.result()
    assert counts.sum() == 2000 and len(res["records"]) == len(groups)
    with pytest.raises(ValueError, match="result"):
        one.add(*args, 0, 1000)
    with pytest.raises(ValueError, match="once"):
        one.result()


@pytest.mark.parametrize("new_groups", [0, 3, 1024])
def test_histories_found_during_a_round_get_their_groups(cyext, tmp_path, monkeypatch, new_groups):
    """Later chunks meet rare histories: they get a group at once (the same one in every
    thread), or with no room left their blocks wait for the round's end."""
    n = 6 * cyext.SUM_BLOCK + 77
    # 20000 histories: the first chunk meets ~96% of them, the second ~700 new, the rest fewer
    pair = EventPair.open(*random_pair(tmp_path, n, n_codes=20_000, p_aligned=0.7, seed=11, nan=2))
    cuts = Cuts.for_domains(pair.domains)
    monkeypatch.setattr(cyext, "NEW_GROUPS_PER_ROUND", new_groups)
    ranges = _ranges(n, cyext.SUM_BLOCK)
    mig = cyext.MigrationCounter(1 << 20, keep=25, room=cyext.SUM_BLOCK)
    one, got = one_pass(cyext, pair, cuts, 2, ranges, True, True, mig)
    assert (one.rounds == len(ranges) + 1) == (new_groups == 1024)  # the first chunk counts first
    assert_same(cyext, got, two_pass(cyext, pair, cuts, 2, ranges, True, True))
    # ~30% of the photons migrate: a counting range counts its batch of migrants many times
    assert_same_migrations(mig.result(), separate_migrations(cyext, pair, ranges, 2))
    assert_same_migrations(mig.result(), separate_migrations(cyext, pair, ranges, 2))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 5000), n_codes=st.sampled_from([1, 7, 3000]), seed=st.integers(0, 2**16),
       records=st.sampled_from([True, ("rpost",), ("rtime",), ("rpol", "rtime")]), finals=st.booleans())
def test_result_without_copies_is_the_merged_result(cyext, tmp_path_factory, n, n_codes, seed, records, finals):
    """One part, copy=False: the slot maxima written over the lanes, the rows as views,
    the pages past them given back: the same bytes as the merged copies, every time."""
    pair = EventPair.open(*random_pair(tmp_path_factory.mktemp("p"), n, seed=seed, n_codes=n_codes, p_aligned=0.6,
                                       nan=2, extreme=True))
    cuts = Cuts.for_domains(pair.domains)
    counter = cyext.HistoryCounter()
    counter.add(pair.a.seqhis, pair.b.seqhis)
    codes, counts = counter.result(copy=False)
    view_codes, view_counts = counter.result()
    assert np.array_equal(codes, view_codes) and np.array_equal(counts, view_counts)
    groups = HistoryCounts.from_unsorted(codes, counts[:, 0], counts[:, 1]).groups()

    acc = cyext.DeviationAccumulator(cyext.GroupIndex(groups), cuts.record_thresholds(), cuts.ox.values, 1,
                                     records=records, finals=finals, maxrec=pair.a.rx.shape[1])
    twin = cyext.DeviationAccumulator(cyext.GroupIndex(groups), cuts.record_thresholds(), cuts.ox.values, 1,
                                      records=records, finals=finals, maxrec=pair.a.rx.shape[1])
    for x in (acc, twin):
        x.add(pair.a.rx, pair.b.rx, pair.a.ox, pair.b.ox, pair.a.seqhis, pair.b.seqhis, 0, n)
    want = twin.result()
    first, again = acc.result(copy=False), acc.result(copy=False)
    assert first.keys() == want.keys() == again.keys()
    for key in want:
        assert first[key].tobytes() == want[key].tobytes() == again[key].tobytes(), key


def test_one_thread_pass_with_rows_reserved_past_its_groups(cyext, tmp_path):
    """One thread, later chunks finding histories: rows reserved past the groups (given
    back at the end), the slot maxima made over the lanes, the rows put in code order."""
    n = 4 * cyext.SUM_BLOCK + 77
    pair = EventPair.open(*random_pair(tmp_path, n, n_codes=20_000, p_aligned=0.7, seed=5, nan=2))
    cuts = Cuts.for_domains(pair.domains)
    ranges = _ranges(n, cyext.SUM_BLOCK)
    one, got = one_pass(cyext, pair, cuts, 1, ranges, True, True)
    assert one.deviations.rows > len(got[2])  # rows were reserved past the groups
    assert_same(cyext, got, two_pass(cyext, pair, cuts, 1, ranges, True, True))


def test_a_finished_pass_releases_its_hash_tables(cyext, tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 3000, n_codes=50))
    cuts = Cuts.for_domains(pair.domains)
    one, (codes, counts, groups, _) = one_pass(cyext, pair, cuts, 2, [(0, 3000)], True, True)
    assert counts.sum() == 6000 and len(one.counter) == len(codes)
    with pytest.raises(ValueError, match="released"):
        one.counter.add(pair.a.seqhis, pair.b.seqhis)
    with pytest.raises(ValueError, match="released"):
        one.counter.add_counts(codes, counts)
    with pytest.raises(ValueError, match="released"):
        one.deviations.index.lookup(groups)
    with pytest.raises(ValueError):
        one.deviations.add(pair.a.rx, pair.b.rx, pair.a.ox, pair.b.ox, pair.a.seqhis, pair.b.seqhis, 0, 3000)
