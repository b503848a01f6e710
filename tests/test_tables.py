"""History and deviation tables: ordering, chi-square, levels, return code, rendering."""
import json

import numpy as np
import pytest
from scipy.stats import chi2

from conftest import random_pair
from photonab import EventPair, compare, seqhis
from photonab.cuts import Cuts, TableCuts
from photonab.engines.base import DeviationAggregate, HistoryCounts
from photonab.render.json import history_dict, plain
from photonab.tables import DeviationTable, HistoryTable


def test_history_table_order_and_chi2():
    codes = np.array([0x8ccd, 0x8bd, 0x4cd, 0x7ccd, 0xd], np.uint64)
    a = np.array([500, 40, 40, 10, 5])
    b = np.array([520, 30, 40, 20, 0])
    t = HistoryTable(HistoryCounts.from_unsorted(codes, a, b))
    # a+b descending, ties (80 and 70 are not ties; 80 vs 80) by code ascending
    assert [seqhis.label(c) for c in t.codes] == ["TO BT BT SA", "TO BT AB", "TO BR SA", "TO BT BT SD", "TO"]
    assert t.c2[0] == pytest.approx(400 / 1020)
    assert t.counted.tolist() == [True, True, True, False, False]  # a+b > 30 only
    assert t.ndf == 2
    assert t.c2p == pytest.approx(t.c2sum / 2)
    assert t.pvalue == pytest.approx(chi2.sf(t.c2sum, 2))
    assert t.ab[0] == pytest.approx(500 / 520) and t.ab_err[0] == pytest.approx(np.sqrt(500) / 520)
    assert np.isnan(t.ab[4])  # b == 0
    row = plain(history_dict(t))["rows"][4]
    assert row["a/b"] is None and row["a"] == 5 and row["code"] == "d"


def test_history_rows_skip_tokens():
    codes = np.array([seqhis.code("TO BT BT SA"), seqhis.code("TO SC BT SA"), seqhis.code("TO BT AB")], np.uint64)
    t = HistoryTable(HistoryCounts.from_unsorted(codes, np.array([3, 2, 1]), np.array([3, 2, 1])))
    assert t.labels(t.shown(skip="SC AB RE")) == ["TO BT BT SA"]


def _aggregate(nitem, ndisc, nnan=None, table="rpost"):
    g = len(nitem)
    return DeviationAggregate(table, np.arange(g, dtype=np.uint64) + 0xd, np.array(nitem), np.array(ndisc),
                              np.zeros(g, np.int64) if nnan is None else np.array(nnan),
                              np.ones(g, np.int64), np.zeros(g, np.int64), np.ones(g, np.int64),
                              np.zeros(g, np.int64), TableCuts(table, (1.0, 2.0, 3.0), 1.0))


@pytest.mark.parametrize("ndisc, nnan, level, rc", [
    ([[0, 0, 0]], [0], "INFO", 0), ([[1, 0, 0]], [0], "WARNING", 0),
    ([[2, 1, 0]], [0], "ERROR", 1), ([[2, 2, 1]], [0], "FATAL", 1), ([[0, 0, 0]], [1], "FATAL", 1),
])
def test_levels_and_return_code(ndisc, nnan, level, rc):
    t = DeviationTable(_aggregate([5], ndisc, nnan))
    assert t.level == level and t.rc == rc


def test_deviation_rows_order_by_nitem_then_code():
    t = DeviationTable(_aggregate([3, 9, 3, 0], [[0, 0, 0]] * 4))
    assert t.nitem.tolist() == [9, 3, 3]  # the empty row is dropped
    assert t.codes.tolist() == [0xe, 0xd, 0xf]


def test_comparison_rc_has_one_bit_per_failing_table(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 2000, spread=50, p_flip=0.5))
    r = compare(pair)
    assert r.rc == sum(1 << k for k, t in enumerate(r.tables.values()) if t.fails)
    assert r.rc & 1  # rpost fails with 50-count flips


def test_rendering_and_json(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 3000, n_codes=30, nan=2))
    r = compare(pair)
    text = r.render(rows=3, history_rows=5)
    assert "history table" in text and "rpost deviations [mm]" in text and "ox deviations" in text
    assert "more histories" in text
    assert repr(r).startswith("<Comparison cython n=3000")
    assert r.to_json(tmp_path / "out.json") is None  # written, not returned
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["photons"] == 3000 and set(data["deviations"]) == {"rpost", "rtime", "rpol", "ox"}
    assert data["deviations"]["ox"]["nnan"] == sum(row["nnan"] for row in data["deviations"]["ox"]["rows"])
    assert json.loads((tmp_path / "out.json").read_text())["rc"] == r.rc


def test_chase_from_bad_row(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 3000, spread=50, p_flip=0.5, seed=8))
    r = compare(pair)
    rows = r.tables["rpost"].worst_rows("FATAL")
    assert len(rows)
    found = r.chase("rpost", row=int(rows[0]), limit=5)
    assert len(found) == 5 and found.found >= 5
    assert found.deviation[0] == pytest.approx(r.tables["rpost"].mx[rows[0]])
    assert found.index[0] == r.tables["rpost"].argmax[rows[0]]
    assert np.all(np.diff(found.deviation) <= 0)
    text = found.render()
    assert "A x,y,z,t" in text and "B x,y,z,t" in text
    by_label = r.chase("rpost", seqhis.label(r.tables["rpost"].codes[rows[0]]), limit=5)
    assert np.array_equal(by_label.index, found.index)


def test_chase_maps_back_to_file_rows(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 3000, spread=50, p_flip=0.5), msli="100::3")
    found = compare(pair).chase("rtime", limit=3, level=None)
    assert np.array_equal(found.file_index, 100 + 3 * found.index)


def test_ox_cuts_are_user_settable(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 1000))
    loose = compare(pair, ox_cuts=(10, 20, 30))
    assert loose.tables["ox"].ndisc.sum() == 0
    with pytest.raises(ValueError, match="increasing"):
        Cuts.for_domains(pair.domains, ox=(0.5, 0.1, 0.2))


def test_tables_show_themselves(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 500))
    r = compare(pair)
    assert repr(r.history).startswith("<HistoryTable") and "history table" in r.history.render()
    assert repr(r["rtime"]).startswith("<DeviationTable rtime") and "rtime deviations" in r["rtime"].render()


def test_engines_agree_on_one_photon(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 1, p_aligned=1.0))
    results = [compare(pair, e) for e in ("cython", "numpy", "select")]
    assert all(results[0].same_tables(r) for r in results[1:])
    assert results[0]["rpost"].nitem.tolist() == [1]


def test_tables_asked_twice_or_none(tmp_path):
    from photonab import InputError
    pair = EventPair.open(*random_pair(tmp_path, 800))
    once = [compare(pair, e, tables=("rpost", "rpost")) for e in ("cython", "numpy", "select")]
    assert all(list(r.tables) == ["rpost"] for r in once)
    assert once[0].same_tables(once[1]) and once[0].same_tables(once[2])
    with pytest.raises(InputError, match="no table"):
        compare(pair, tables=())


def test_json_names_the_file_row_of_the_worst_photon(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 3000, spread=50, p_flip=0.5), msli="100::3")
    rows = compare(pair).to_dict()["deviations"]["rpost"]["rows"]
    assert rows
    assert all(r["worst_file_row"] == 100 + 3 * r["worst_photon"] for r in rows)


@pytest.mark.parametrize("table", ["rpost", "rtime", "rpol", "ox"])
@pytest.mark.parametrize("level", ["WARNING", "FATAL", None])
def test_every_engine_chases_the_same_photons(tmp_path, table, level):
    from photonab.chase import chase
    from photonab.engines import get_engine
    from photonab.engines.reference import chase_photons
    pair = EventPair.open(*random_pair(tmp_path, 3000, spread=20, p_flip=0.3, nan=3, seed=4, maxrec=4),
                          msli="7::2")
    cuts = Cuts.for_domains(pair.domains)
    code = int(pair.a.seqhis[0])
    for history in (None, code):
        found = [chase(pair, cuts, table, history, limit=7, level=level, engine=e)
                 for e in ("cython", "numpy", "select")]
        for other in found[1:]:
            assert np.array_equal(found[0].index, other.index)
            assert found[0].deviation.tobytes() == other.deviation.tobytes()
            assert found[0].found == other.found
    # the numpy chase in small chunks ranks as one pass does
    eng = get_engine("cython", n_threads=2)
    whole = eng.chase(pair, table, None, 1.0, 25)
    chunked = chase_photons(pair, table, None, 1.0, 25, chunk=97)
    assert np.array_equal(whole[0], chunked[0]) and np.array_equal(whole[1], chunked[1]) and whole[2] == chunked[2]


def test_comparison_chases_through_its_engine(tmp_path):
    pair = EventPair.open(*random_pair(tmp_path, 2000, spread=50, p_flip=0.5))
    r = compare(pair, "numpy")
    assert r.runner.name == "numpy"
    calls = []
    real = r.runner.chase
    r.runner.chase = lambda *a, **k: calls.append(a) or real(*a, **k)
    found = r.chase("rtime", limit=4)
    assert calls and len(found) == 4


def test_model_modules_do_not_import_the_renderers():
    import subprocess
    import sys
    code = ("import sys, photonab.tables, photonab.comparison, photonab.runs, photonab.chase;"
            "print(sorted(m for m in sys.modules if m.startswith('photonab.render') or m in "
            "('photonab.report', 'photonab.plots', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_history_table_view_hides_and_counts(tmp_path):
    codes = [seqhis.code("TO BT SA"), seqhis.code("TO SC SA"), seqhis.code("TO AB")]
    t = HistoryTable(HistoryCounts.from_unsorted(np.array(codes, np.uint64), np.array([50, 40, 20]),
                                                 np.array([50, 40, 0])))
    assert t.level == "ERROR" and t.labels(t.worst_rows()) == ["TO AB"]
    h = t.hidden(1, "SC")
    assert h == {"rows": 2, "skip": 1, "limit": 1, "failing": 1, "failing_skip": 0, "failing_limit": 1}
    text = t.render(1, "SC")
    assert "1 of them at ERROR/FATAL (1 by --hist-rows)" in text


def test_text_view_computes_its_rows_as_the_columns(tmp_path):
    """A view computes only its rows (row_values); once the columns exist it reads them:
    the same text both ways, for every table and a skip that hides rows."""
    pair = EventPair.open(*random_pair(tmp_path, 3000, n_codes=40, nan=3, spread=20, p_flip=0.3))
    for skip in ((), "BT"):
        fresh = compare(pair).render(rows=7, history_rows=9, skip=skip)
        made = compare(pair)
        for t in [made.history, *made.tables.values()]:
            for name in ("codes", "nitem", "ndisc", "fdisc", "nnan", "mx", "mn", "avg", "argmax", "worst_slot",
                         "a", "b", "ab", "ba", "nstep", "dropout", "level_index"):
                getattr(t, name, None)
        assert made.render(rows=7, history_rows=9, skip=skip) == fresh


def test_level_and_rc_need_no_row_order():
    # one photon per history in table order already: the engine's arrays are the columns
    g = 5
    agg = _aggregate([1] * g, [[0, 0, 0]] * (g - 1) + [[1, 1, 0]])
    t = DeviationTable(agg)
    assert t.level == "ERROR" and t.rc == 1 and len(t) == g and t.nitem_total == g
    assert "_rows" not in t.__dict__
    assert t.codes is agg.codes and t.level_index.dtype == np.int8
    counts = HistoryCounts(np.arange(4, dtype=np.uint64), np.ones(4, np.int64), np.ones(4, np.int64))
    h = HistoryTable(counts)
    assert h.level == "INFO" and h.c2sum == 0.0 and h.ndf == -1 and h.codes is counts.codes


def _reference_rows(table, file_rows, rows):
    """The row dicts of a deviation or history table as the report had them before it wrote
    their text itself (python objects for the json module)."""
    import math

    from photonab import seqhis
    from photonab.cuts import LEVELS

    def nums(values):
        return [None if not math.isfinite(x) else x for x in np.asarray(values, np.float64).ravel().tolist()]

    v = table.row_values(rows)
    labels, codes = seqhis.labels(v["codes"]), v["codes"].tolist()
    if "a" in v:  # the history table
        return [{"index": i, "code": f"{c:x}", "label": lab, "a": a, "b": b, "a-b": a - b, "counted": counted,
                 "c2": c2, "a/b": ab, "a/b_err": abe, "b/a": ba, "b/a_err": bae, "nstep": nstep, "dropout": dropout,
                 "level": LEVELS[level]}
                for i, lab, c, a, b, counted, c2, ab, abe, ba, bae, nstep, dropout, level in zip(
                    rows.tolist(), labels, codes, v["a"].tolist(), v["b"].tolist(), table.counted[rows].tolist(),
                    nums(v["c2"]), nums(v["ab"]), nums(v["ab_err"]), nums(v["ba"]), nums(v["ba_err"]),
                    v["nstep"].tolist(), v["dropout"].tolist(), v["level_index"].tolist())]
    fdisc = nums(v["fdisc"])
    out = [{"index": i, "code": f"{c:x}", "label": lab, "nitem": nitem, "ndisc": nd, "fdisc": fdisc[3 * k:3 * k + 3],
            "nnan": nnan, "mx": mx, "mn": mn, "avg": avg, "level": LEVELS[level], "worst_photon": w}
           for k, (i, lab, c, nitem, nd, nnan, mx, mn, avg, level, w) in enumerate(zip(
               rows.tolist(), labels, codes, v["nitem"].tolist(), np.asarray(v["ndisc"], np.int64).tolist(),
               v["nnan"].tolist(), nums(v["mx"]), nums(v["mn"]), nums(v["avg"]), v["level_index"].tolist(),
               np.asarray(v["argmax"], np.int64).tolist()))]
    if v["worst_event"] is not None:
        for row, event in zip(out, np.asarray(v["worst_event"], np.int64).tolist()):
            row["worst_event"] = event
    if table.has_slots:
        slots, count = table.slot_block(rows)
        for row, values, n, slot in zip(out, slots, count.tolist(), v["worst_slot"].tolist()):
            row["mx_slot"], row["slot"] = nums(values[:n]), slot
    if file_rows is not None:
        for row in out:
            row["worst_file_row"] = file_rows[row["worst_photon"]] if row["worst_photon"] >= 0 else -1
    return out


def test_row_text_is_what_json_writes(tmp_path):
    """The report writes its history and deviation rows as text itself (docs/json.md,
    "Large reports"): byte for byte what json.dumps writes for the row dicts, for events
    with NaN photons, a sliced pair (file rows), a run (worst events) and empty ranges."""
    from photonab.render import json as report
    from photonab.runs import compare_run
    dirs = [random_pair(tmp_path / f"e{k}", 1200, seed=k + 3, n_codes=40, nan=4) for k in range(2)]
    pair = EventPair.open(*dirs[0])
    sliced = EventPair.open(*dirs[0], msli="100:1100:2")
    for result, file_rows in ((compare(pair), None), (compare(sliced), sliced.a.file_rows), (compare_run(dirs), None)):
        tables = [(result.history, None, lambda s, e, t=result.history: report._history_text(t, s, e))]
        tables += [(t, file_rows, lambda s, e, t=t: report._deviation_text(t, file_rows, s, e))
                   for t in result.tables.values()]
        for table, rows_file, text in tables:
            n = len(table)
            for start, stop in ((0, n), (3, min(n, 17)), (n, n)):
                assert text(start, stop) == json.dumps(_reference_rows(table, rows_file, np.arange(start, stop)))[1:-1]


def test_json_streamed_in_chunks_is_to_dict(tmp_path, monkeypatch):
    """The report written to a file, its rows made and written ROW_CHUNK at a time, parses
    to exactly to_dict(); the text returned without a path is the same document."""
    from photonab.render import json as report
    from photonab.runs import compare_run
    monkeypatch.setattr(report, "ROW_CHUNK", 7)  # many chunks, one partial
    dirs = [random_pair(tmp_path / f"e{k}", 1500, seed=k, n_codes=40, nan=3) for k in range(2)]
    for result in (compare(EventPair.open(*dirs[0]), select=None), compare_run(dirs)):
        path = tmp_path / "r.json"
        assert result.to_json(path) is None
        written = json.loads(path.read_text())
        assert written == json.loads(json.dumps(result.to_dict())) == json.loads(result.to_json())
        assert len(written["deviations"]["rpost"]["rows"]) > 14 and written["deviations"]["rpost"]["rows"][0]["mx_slot"]
