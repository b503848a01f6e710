import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from photonab import EventPair, InputError
from photonab.migration import (chase_migrated, count_migrations, count_migrations_reference, migrations)
from photonab.patterns import history_label

from conftest import random_pair


def columns(n, n_codes, p_migrate, seed):
    rng = np.random.default_rng(seed)
    pool = (np.arange(n_codes, dtype=np.uint64) * np.uint64(0x101) + np.uint64(0xcd))
    a = pool[rng.integers(0, n_codes, n)]
    b = np.where(rng.random(n) < p_migrate, pool[rng.integers(0, n_codes, n)], a)
    ph = np.zeros((2, n, 1, 2), np.uint64)
    ph[0, :, 0, 0], ph[1, :, 0, 0] = a, b
    return ph[0, :, 0, 0], ph[1, :, 0, 0]  # strided views, as Event.seqhis gives


def assert_same(t, r):
    assert t.equals(r), (t, r)
    assert t.counts.sum() + t.other_photons == t.n_migrated


def test_small_exact_table(cyext):
    a = np.array([0x8ccd, 0x8ccd, 0x8ccd, 0x8ccd, 0x8bd, 0x8bd, 0x4cd], np.uint64)
    b = np.array([0x8cbcd, 0x8ccd, 0x8cbcd, 0x4cd, 0x8ccd, 0x8ccd, 0x4cd], np.uint64)
    t = count_migrations(a, b)
    assert (t.n, t.n_migrated, t.n_aligned) == (7, 5, 2)
    assert t.first_migrated.tolist() == [0, 2, 3, 4, 5]
    assert t.counts.tolist() == [2, 2, 1]
    # ties (count 2) by A code then B code ascending
    assert [(history_label(x), history_label(y)) for x, y in zip(t.codes_a, t.codes_b)] == [
        ("TO BR SA", "TO BT BT SA"), ("TO BT BT SA", "TO BT BR BT SA"), ("TO BT BT SA", "TO BT AB")]
    assert t.labels_a[1] == "TO BT BT SA" and t.labels_b[1] == "TO BT BR BT SA"
    assert t.first.tolist() == [4, 0, 3]
    assert t.rows_matching("TO BT .. -> *").tolist() == [1, 2]
    assert_same(t, count_migrations_reference(a, b))


@pytest.mark.parametrize("n, n_codes, p, top, max_pairs", [
    (0, 3, 0.5, None, 64), (1, 3, 1.0, None, 64), (20_000, 6, 0.3, None, 1 << 18),
    (50_000, 40, 0.5, 30, 1 << 18), (50_000, 40, 0.5, 30, 64), (30_000, 200, 0.9, 100, 200),
])
def test_equals_reference(cyext, n, n_codes, p, top, max_pairs):
    a, b = columns(n, n_codes, p, seed=n + n_codes)
    ref = count_migrations_reference(a, b, top=top, max_pairs=max_pairs)
    for threads in (1, 2, 3):
        for chunk in (4096, 12_345, 1 << 22):
            assert_same(count_migrations(a, b, top=top, max_pairs=max_pairs, n_threads=threads, chunk=chunk), ref)


def test_adversarial_every_photon_its_own_pair(cyext):
    """Bounded memory: the table never holds more than max_pairs pairs, and the top
    rows are still exact (counted in hash partitions)."""
    n = 60_000
    rng = np.random.default_rng(9)
    a = rng.permutation(n).astype(np.uint64) + np.uint64(1)
    b = a * np.uint64(3) + np.uint64(7)
    a[:500] = 0x8ccd  # one heavy pair among 59500 singletons
    b[:500] = 0x8cbcd
    ref = count_migrations_reference(a, b, top=50, max_pairs=1000)
    t = count_migrations(a, b, top=50, max_pairs=1000, chunk=8192)
    assert_same(t, ref)
    assert t.passes > 1 and t.n_pairs == n - 499
    assert t.counts[0] == 500 and t.labels_a[0] == "TO BT BT SA"
    assert t.other_pairs == n - 499 - 50 and t.other_photons == n - 500 - 49
    # the compiled counter itself never grows past its capacity
    c = cyext.MigrationCounter(1000, 1, 0, 0)
    c.add(a, b)
    r = c.result()
    assert r["overflowed"] and len(r["pairs"]) == 1000 and r["unplaced"] == n - r["counts"].sum()


def test_partitions_cover_every_pair_once(cyext):
    a, b = columns(40_000, 30, 0.6, seed=2)
    full = cyext.MigrationCounter()
    full.add(a, b)
    whole = full.result()
    got = {}
    for part in range(8):
        c = cyext.MigrationCounter(1 << 18, 8, part, 0)
        c.add(a, b, n_threads=2)
        r = c.result()
        for (x, y), k in zip(r["pairs"].tolist(), r["counts"].tolist()):
            assert (x, y) not in got
            got[(x, y)] = k
        assert r["n_migrated"] == whole["n_migrated"]
    assert got == {tuple(p): k for p, k in zip(whole["pairs"].tolist(), whole["counts"].tolist())}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3000), st.integers(1, 12), st.floats(0, 1), st.integers(1, 40), st.integers(0, 30),
       st.integers(0, 2**32))
def test_hypothesis_against_reference(n, n_codes, p, max_pairs, first, seed):
    a, b = columns(n, n_codes, p, seed)
    top = min(max_pairs, 10)
    ref = count_migrations_reference(a, b, top=top, max_pairs=max_pairs, first=first)
    assert_same(count_migrations(a, b, top=top, max_pairs=max_pairs, first=first, chunk=1024), ref)


def test_bad_arguments(cyext):
    a = np.zeros(4, np.uint64)
    with pytest.raises(InputError, match="one length"):
        count_migrations(a, a[:3])
    with pytest.raises(InputError, match="uint64"):
        count_migrations(a.astype(np.int64), a)
    with pytest.raises(InputError, match="top"):
        count_migrations(a, a, top=10, max_pairs=5)
    with pytest.raises(ValueError, match="part"):
        cyext.MigrationCounter(10, 2, 2)


def test_event_pair_and_chase(tmp_path, cyext):
    a_dir, b_dir = random_pair(tmp_path, 3000, n_codes=5, p_aligned=0.6, seed=4)
    pair = EventPair.open(a_dir, b_dir)
    t = migrations(pair)
    assert t.equals(migrations(pair, engine="numpy"))
    la, lb = t.labels_a[0], t.labels_b[0]
    ch = chase_migrated(pair, f"{la} -> {lb}", limit=5)
    sa, sb = np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis)
    want = np.flatnonzero((sa == t.codes_a[0]) & (sb == t.codes_b[0]))
    assert ch.found == t.counts[0] == len(want)
    assert ch.indices.tolist() == want[:5].tolist() and ch.indices[0] == t.first[0]
    assert ch.labels_a == [la] * len(ch) and ch.labels_b == [lb] * len(ch)
    assert np.array_equal(ch.positions_a, pair.a.positions(want[:5]))
    assert np.array_equal(ch.times_b, pair.b.times(want[:5]))
    assert ch.polarizations_a.shape == (5, pair.a.maxrec, 3) and ch.wavelengths_b.shape == (5, pair.a.maxrec)
    # a pattern side, and "*"
    every = chase_migrated(pair, "* -> *", limit=3, codes=np.union1d(sa, sb))
    assert every.found == t.n_migrated and every.indices.tolist() == t.first_migrated[:3].tolist()
    with pytest.raises(InputError, match="no history of the events matches the B pattern"):
        chase_migrated(pair, f"{la} -> CK SI CK")


def test_chase_with_msli_file_rows(tmp_path, cyext):
    a_dir, b_dir = random_pair(tmp_path, 2000, n_codes=4, p_aligned=0.5, seed=6)
    pair = EventPair.open(a_dir, b_dir, msli="100::3")
    ch = chase_migrated(pair, "* -> *", limit=4)
    assert ch.file_rows.tolist() == [100 + 3 * i for i in ch.indices]


# ---------------------------------------------------------------- a run's combined table


def _run_reference(events, top=None, max_pairs=1 << 18, first=25):
    """The reference table of all events' photons in one, its photon indices as (event, index)."""
    a = np.concatenate([e[0] for e in events])
    b = np.concatenate([e[1] for e in events])
    ref = count_migrations_reference(a, b, top=top, max_pairs=max_pairs, first=first)
    offsets = np.cumsum([0] + [len(e[0]) for e in events])

    def where(idx):
        event = np.searchsorted(offsets, idx, side="right") - 1
        return event.astype(np.int64), (idx - offsets[event]).astype(np.int64)
    return ref, where(ref.first), where(ref.first_migrated)


def assert_run_table(got, events, **kw):
    ref, (ev, first), (mev, mfirst) = _run_reference(events, **kw)
    assert (got.n, got.n_migrated, got.other_pairs, got.other_photons) == (
        ref.n, ref.n_migrated, ref.other_pairs, ref.other_photons)
    for k in ("codes_a", "codes_b", "counts"):
        assert np.array_equal(getattr(got, k), getattr(ref, k)), k
    assert np.array_equal(got.first_event, ev) and np.array_equal(got.first, first)
    assert np.array_equal(got.first_migrated_event, mev) and np.array_equal(got.first_migrated, mfirst)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=4), n_codes=st.sampled_from([1, 4, 30, 3000]),
       p=st.sampled_from([0.0, 0.1, 0.9]), max_pairs=st.sampled_from([3, 50, 1 << 18]), seed=st.integers(0, 999))
def test_run_table_is_the_table_of_all_photons(sizes, n_codes, p, max_pairs, seed):
    """Events whose tables hold every pair are added; when one keeps only its top
    max_pairs, every pair is counted again partition by partition: the same table."""
    from photonab.migration import combine_migrations
    events = [columns(n, n_codes, p, seed + k) for k, n in enumerate(sizes)]
    tables = [count_migrations(a, b, max_pairs=max_pairs, chunk=1024) for a, b in events]
    got = combine_migrations(tables, events, chunk=1024)
    assert_run_table(got, events, max_pairs=max_pairs)
    assert got.passes >= max(t.passes for t in tables)


def test_run_table_of_events_each_within_the_bound_but_not_together():
    from photonab.migration import combine_migrations
    events = [columns(4000, 5000, 0.5, k) for k in range(3)]  # ~2000 pairs an event, 6000 together
    tables = [count_migrations(a, b, max_pairs=3000) for a, b in events]
    assert all(t.other_pairs == 0 for t in tables)
    got = combine_migrations(tables, events)
    assert got.passes == 1 and got.other_pairs > 0  # added, then trimmed to the bound
    assert_run_table(got, events, max_pairs=3000)


def test_run_table_refuses_mismatched_inputs():
    from photonab.migration import combine_migrations
    a, b = columns(100, 3, 0.5, 0)
    with pytest.raises(InputError, match="one table and one pair of seqhis columns per event"):
        combine_migrations([count_migrations(a, b)], [(a, b), (a, b)])
