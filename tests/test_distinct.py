"""Many distinct histories (issue 12): the tables' fast paths give the numbers of the
plain algorithm (lexsort order, every column in table order), and compare() makes no
column a view does not ask for. Timings are the harness's (profiles.distinct), not here."""
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import REPO, random_pair
from photonab import EventPair, compare
from photonab.cuts import LEVELS, TableCuts
from photonab.engines.base import DeviationAggregate, HistoryCounts
from photonab.migration import _smallest
from photonab.tables import C2_MIN_COUNT, DROPOUT_MIN, DeviationTable, HistoryTable, table_order

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _lexsorted(codes, counts):
    return np.lexsort((codes, -np.asarray(counts, np.int64)))


@st.composite
def keyed_rows(draw, sorted_codes=None):
    n = draw(st.integers(0, 60))
    pool = draw(st.integers(1, 6))
    codes = np.array(draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)), np.uint64)
    if draw(st.booleans()):
        codes %= np.uint64(pool)  # equal codes
    if sorted_codes if sorted_codes is not None else draw(st.booleans()):
        codes.sort()
    big = draw(st.sampled_from([3, 40, 2**40]))
    counts = np.array(draw(st.lists(st.integers(0, big), min_size=n, max_size=n)), np.int64)
    if draw(st.booleans()):
        counts = np.sort(counts)[::-1].copy()  # already in order (as one photon per history)
    return codes, counts


@SETTINGS
@given(keyed_rows())
def test_table_order_is_the_two_key_lexsort(rows):
    codes, counts = rows
    order = table_order(codes, counts)
    want = _lexsorted(codes, counts)
    got = np.arange(len(codes)) if order is None else order
    assert np.array_equal(got, want)


def test_table_order_packs_or_falls_back():
    codes = np.arange(5, dtype=np.uint64)
    assert table_order(codes, np.array([4, 4, 3, 3, 0])) is None  # in order: no permutation
    assert table_order(codes, np.array([1, 3, 3, 0, 2])).tolist() == [1, 2, 4, 0, 3]
    huge = np.array([2**62, 0, 5, 2**62, 1])  # too wide for the packed key: lexsort
    assert np.array_equal(table_order(codes, huge), _lexsorted(codes, huge))


def _reference_history(codes, a, b):
    """The plain algorithm: every column in table order."""
    order = _lexsorted(codes, a + b)
    codes, a, b = codes[order], a[order], b[order]
    total = (a + b).astype(np.float64)
    counted = total > C2_MIN_COUNT
    diff = (a - b).astype(np.float64)
    c2 = np.where(counted, diff * diff / np.where(total > 0, total, 1), 0.0)
    dropout = ((a > DROPOUT_MIN) & (b == 0)) | ((b > DROPOUT_MIN) & (a == 0))
    return {"codes": codes, "a": a, "b": b, "counted": counted, "c2": c2, "dropout": dropout,
            "level_index": np.where(dropout, 2, 0), "c2sum": float(c2.sum()), "ndf": int(counted.sum()) - 1}


@st.composite
def history_counts(draw):
    n = draw(st.integers(0, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    codes = np.unique(rng.integers(0, 2**63, n).astype(np.uint64))
    scale = draw(st.sampled_from([1, 2, 20, 400]))
    a = rng.integers(0, scale + 1, len(codes))
    b = np.where(rng.random(len(codes)) < draw(st.floats(0, 1)), a, rng.integers(0, scale + 1, len(codes)))
    return HistoryCounts(codes, a.astype(np.int64), b.astype(np.int64))


@SETTINGS
@given(history_counts())
def test_history_table_equals_the_plain_algorithm(counts):
    t = HistoryTable(counts)
    ref = _reference_history(counts.codes, counts.a, counts.b)
    for name in ("codes", "a", "b", "counted", "c2", "dropout", "level_index"):
        assert np.array_equal(getattr(t, name), ref[name]), name
    assert t.c2sum == ref["c2sum"] and t.ndf == ref["ndf"]  # to the bit: summed in table order
    assert t.ndropout == int(ref["dropout"].sum())
    both = (ref["a"] > 0) & (ref["b"] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.array_equal(t.ab, np.where(both, ref["a"] / ref["b"], np.nan), equal_nan=True)
        assert np.array_equal(t.ba_err, np.where(both, np.sqrt(ref["b"]) / ref["a"], np.nan), equal_nan=True)
    rows = np.arange(len(t))[::3]
    for name, values in t.row_values(rows).items():
        assert np.array_equal(values, np.asarray(getattr(t, name))[rows], equal_nan=True), name


@st.composite
def aggregates(draw):
    n = draw(st.integers(0, 200))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    table = draw(st.sampled_from(["rpost", "ox"]))
    codes = np.unique(rng.integers(0, 2**63, n).astype(np.uint64))
    g = len(codes)
    if draw(st.booleans()):
        codes = rng.permutation(codes)  # a run's combined rows need not be sorted
    nitem = rng.integers(0, draw(st.sampled_from([1, 2, 50])) + 1, g)
    if draw(st.booleans()):
        nitem = np.maximum(nitem, 1)
    ndisc = np.minimum(rng.integers(0, 3, (g, 3)), nitem[:, None])
    nnan = np.minimum(rng.integers(0, 2, g), nitem) if table == "ox" else np.zeros(g, np.int64)
    if table == "ox":
        mx = rng.normal(size=g)
        values = dict(max=mx, min=mx - 1, sum=mx * nitem)
        slots = {}
    else:
        mx = rng.integers(0, 9, g)
        values = dict(max=mx, min=mx // 2, sum=mx * nitem)
        slots = dict(slot_max=rng.integers(0, 9, (g, 4)).astype(np.uint16), worst_slot=rng.integers(-1, 4, g))
    agg = DeviationAggregate(table, codes, nitem.astype(np.int64), ndisc.astype(np.int64), nnan.astype(np.int64),
                             argmax=rng.integers(-1, 1000, g), cuts=TableCuts(table, (1.0, 2.0, 3.0), 0.5),
                             **values, **slots)
    return agg, (rng.integers(0, 5, g) if draw(st.booleans()) else None)


@SETTINGS
@given(aggregates())
def test_deviation_table_equals_the_plain_algorithm(case):
    agg, worst_event = case
    t = DeviationTable(agg, worst_event=worst_event)
    kept = np.flatnonzero(agg.nitem > 0)
    order = kept[_lexsorted(agg.codes[kept], agg.nitem[kept])]
    assert len(t) == len(order)
    for name in ("codes", "nitem", "ndisc", "nnan", "argmax"):
        assert np.array_equal(getattr(t, name), getattr(agg, name)[order]), name
    nfinite = agg.nitem[order] - agg.nnan[order]
    none = nfinite <= 0
    mx = agg.max[order].astype(np.float64) * 0.5
    mx[none] = np.nan
    avg = agg.sum[order].astype(np.float64) * 0.5
    avg[none] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        avg /= np.where(none, 1, nfinite)
    assert np.array_equal(t.mx, mx, equal_nan=True) and np.array_equal(t.avg, avg, equal_nan=True)
    nd, nn = agg.ndisc[order], agg.nnan[order]
    level = np.select([(nd[:, 2] > 0) | (nn > 0), nd[:, 1] > 0, nd[:, 0] > 0], [3, 2, 1], 0)
    assert np.array_equal(t.level_index, level)
    assert t.level == LEVELS[int(level.max(initial=0))] and t.nitem_total == int(agg.nitem.sum())
    assert np.array_equal(t.fdisc, nd / agg.nitem[order][:, None])
    if worst_event is not None:
        assert np.array_equal(t.worst_event, worst_event[order])
    if t.has_slots:
        assert np.array_equal(t.slot_max, agg.slot_max[order] * 0.5)
        assert np.array_equal(t.worst_slot, agg.worst_slot[order])
    assert t.raw.equals(agg.nonempty())
    rows = np.arange(len(t))[1::2]
    fresh = DeviationTable(agg, worst_event=worst_event)  # no column made yet: computed at the rows
    for name, values in fresh.row_values(rows).items():
        whole = getattr(t, name)
        assert (values is None) == (whole is None), name
        if values is not None:
            assert np.array_equal(values, whole[rows], equal_nan=True), name


class _View:
    """A view with its own hidden rows and order (as photonab.analysis.View)."""

    def __init__(self, hide, order):
        self.hide, self.order = hide, order

    def __bool__(self):
        return True

    def mask(self, table):
        return self.hide

    def order_of(self, table):
        return self.order


@SETTINGS
@given(history_counts(), st.integers(-3, 40) | st.none(), st.integers(0, 2**32 - 1), st.booleans())
def test_views_count_what_they_hide(counts, limit, seed, own_order):
    t = HistoryTable(counts)
    rng = np.random.default_rng(seed)
    n = len(t)
    hide = rng.random(n) < rng.random()
    order = rng.permutation(n) if own_order else np.arange(n)
    kept = order[~hide[order]]
    shown, beyond = kept[:limit], (kept[limit:] if limit is not None else kept[:0])
    view = _View(hide, order)
    assert np.array_equal(t.shown(limit, view), shown)
    bad = t.level_index >= 2
    assert t.hidden(limit, view) == {
        "rows": int(hide.sum()) + len(beyond), "skip": int(hide.sum()), "limit": len(beyond),
        "failing": int(bad[hide].sum()) + int(bad[beyond].sum()), "failing_skip": int(bad[hide].sum()),
        "failing_limit": int(bad[beyond].sum())}
    plain = np.arange(n)[:limit]
    assert np.array_equal(t.shown(limit), plain)
    assert t.hidden(limit)["limit"] == n - len(plain)


def test_from_unsorted_sorts_once_and_keeps_equal_codes_in_order():
    codes = np.array([9, 3, 7, 3, 1], np.uint64)
    c = HistoryCounts.from_unsorted(codes, np.arange(5), np.arange(5) * 10)
    assert c.codes.tolist() == [1, 3, 3, 7, 9] and c.a.tolist() == [4, 1, 3, 2, 0]  # stable on ties
    done = HistoryCounts.from_unsorted(c.codes[[0, 1, 3, 4]], c.a[[0, 1, 3, 4]], c.b[[0, 1, 3, 4]])
    assert done.codes.tolist() == [1, 3, 7, 9]
    assert HistoryCounts(np.array([1, 2], np.uint64), np.array([1, 1]), np.array([1, 1])).groups().tolist() == [1, 2]


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)), max_size=50),
       st.integers(0, 55))
def test_smallest_rows_are_the_lexsort_prefix(rows, k):
    keys = [np.array([r[j] for r in rows], np.int64) for j in range(3)]
    want = np.sort(np.lexsort(keys[::-1])[:k]) if rows else np.zeros(0, np.int64)
    assert np.array_equal(_smallest(keys, k), want)


def test_one_photon_per_history_makes_no_column_compare_does_not_need(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 3000, distinct=True, p_aligned=0.9, spread=40, nan=3))
    r = compare(pair)
    assert len(r.history) > 3000 and repr(r) and r.rc >= 0
    for t in r.tables.values():  # level, rc, repr and aligned need no row order and no column
        assert not {"codes", "mx", "fdisc", "slot_max", "_rows"} & set(t.__dict__), t.table
    assert not {"ab", "nstep", "codes", "_order"} & set(r.history.__dict__)
    assert r.same_tables(compare(pair, "numpy"))
    text = r.render(rows=3, history_rows=4)
    assert "more histories" in text and text.count("\n") < 60
    data = json.loads(r.to_json())
    assert len(data["history"]["rows"]) == len(r.history)
    assert data["deviations"]["ox"]["nnan"] == 3


def test_distinct_harness_smoke(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "profiles.run", "distinct", "--photons", "3k", "--histories",
                           "synth,3k,2k~0.1", "--repeats", "1", "--cache", str(tmp_path / "cache"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    cases = results["cases"]["this"]
    assert set(cases) == {"synth", "3k", "2k~0.1"}
    assert cases["3k"]["timing"]["histories"] == 3000 and cases["3k"]["memory"]["histories"] == 3000
    moved = cases["2k~0.1"]["memory"]
    assert moved["histories"] > 2000 and 1500 < moved["deviation_rows"]["rpost"] <= 2000  # 10% of B migrated
    assert "bytes per extra history" in (out / "summary.txt").read_text()
