"""Per-slot deviations in the tables, text, JSON and runs (issue 11, docs/tables.md,
docs/json.md): `slot_max`/`worst_slot` of DeviationTable against a numpy reference on a
synthetic pair with the default faults."""
import json

import numpy as np
import pytest

from photonab import EventPair, compare, seqhis
from photonab.cuts import RECORD_TABLES
from photonab.engines import reference
from photonab.render.json import deviation_dict, dumps, plain
from photonab.render.text import render_deviation
from photonab.runs import compare_run
from photonab.synth import DEFAULT_FAULTS, synthesize


@pytest.fixture(scope="module")
def synth_pair(tmp_path_factory):
    out = tmp_path_factory.mktemp("slots")
    return synthesize(out, 4000, seed=5, faults=DEFAULT_FAULTS, maxrec=10, progress=False)


@pytest.fixture(scope="module")
def synth_pair2(tmp_path_factory):
    out = tmp_path_factory.mktemp("slots2")
    return synthesize(out, 3000, seed=9, faults=DEFAULT_FAULTS, maxrec=10, progress=False)


def _reference_slots(pair, table, codes):
    """(G, maxrec) per-slot maxima in stored counts, by numpy over the aligned photons."""
    sa, sb = np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis)
    aligned = np.flatnonzero(sa == sb)
    sd = reference.record_slot_deviations(np.asarray(pair.a.rx), np.asarray(pair.b.rx), (table,))[table]
    out = np.zeros((len(codes), sd.shape[1]), np.int64)
    for g, c in enumerate(codes):
        rows = aligned[sa[aligned] == c]
        if len(rows):
            out[g] = sd[rows].max(axis=0)
    return out


def _worst(slots_counts, mx_counts):
    reaches = slots_counts == mx_counts[:, None]
    return np.where(reaches.any(axis=1), reaches.argmax(axis=1), -1)


@pytest.mark.parametrize("engine", ["cython", "numpy"])
def test_table_slots_match_numpy_reference(synth_pair, engine):
    pair = EventPair.open(*synth_pair)
    c = compare(pair, engine)
    for t in RECORD_TABLES:
        tab = c.tables[t]
        want = _reference_slots(pair, t, tab.codes)
        assert tab.slot_max.shape == (len(tab), pair.a.maxrec)
        np.testing.assert_array_equal(tab.slot_max, want * tab.cuts.bin)
        mx_counts = want.max(axis=1)
        np.testing.assert_array_equal(tab.worst_slot, _worst(want, mx_counts))
        np.testing.assert_allclose(tab.slot_max.max(axis=1), tab.mx)
    assert c.tables["ox"].slot_max is None and c.tables["ox"].worst_slot is None
    # the faults show up somewhere along the path
    assert any((c.tables[t].worst_slot > 0).any() for t in RECORD_TABLES)


def test_text_has_slot_column_for_record_tables_only(synth_pair):
    c = compare(EventPair.open(*synth_pair), "cython")
    for t in RECORD_TABLES:
        tab = c.tables[t]
        lines = render_deviation(tab, limit=None).splitlines()
        assert lines[1].split()[-1] == "slot"
        for i, line in zip(range(len(tab)), lines[2:]):
            ws = int(tab.worst_slot[i])
            assert line.split()[-1] == (str(ws) if ws >= 0 else "-")
    assert "slot" not in render_deviation(c.tables["ox"]).splitlines()[1].split()


def test_text_dash_when_no_worst_slot(synth_pair):
    tab = compare(EventPair.open(*synth_pair), "cython").tables["rpost"]
    tab.worst_slot = tab.worst_slot.copy()
    tab.worst_slot[0] = -1
    assert render_deviation(tab, limit=1).splitlines()[2].split()[-1] == "-"


def test_json_mx_slot_and_slot(synth_pair):
    c = compare(EventPair.open(*synth_pair), "cython")
    data = json.loads(dumps(c.to_dict()), parse_constant=lambda x: pytest.fail(f"non-strict {x}"))
    for t in RECORD_TABLES:
        tab = c.tables[t]
        rows = data["deviations"][t]["rows"]
        assert len(rows) == len(tab)
        for i, row in enumerate(rows):
            n = min(seqhis.nstep(int(row["code"], 16)), tab.slot_max.shape[1])
            assert row["mx_slot"] == pytest.approx(list(tab.slot_max[i, :n]))
            assert len(row["mx_slot"]) == n
            assert row["slot"] == int(tab.worst_slot[i])
            if row["slot"] >= 0 and row["mx"] is not None:
                assert row["slot"] < n and row["mx_slot"][row["slot"]] == pytest.approx(row["mx"])
    for row in data["deviations"]["ox"]["rows"]:
        assert "mx_slot" not in row and "slot" not in row
    d = plain(deviation_dict(c.tables["ox"]))
    assert all("slot" not in r for r in d["rows"])


def test_run_combines_slots(synth_pair, synth_pair2):
    run = compare_run([synth_pair, synth_pair2], "cython")
    events = [compare(EventPair.open(*p), "cython") for p in (synth_pair, synth_pair2)]
    for t in RECORD_TABLES:
        tab = run.tables[t]
        want = np.zeros(tab.slot_max.shape)
        for e in events:
            et = e.tables[t]
            row = {int(c): i for i, c in enumerate(tab.codes)}  # table order, not sorted
            pos = [row[int(c)] for c in et.codes]
            want[pos] = np.maximum(want[pos], et.slot_max)
        np.testing.assert_array_equal(tab.slot_max, want)
        counts = np.rint(want / tab.cuts.bin).astype(np.int64)
        np.testing.assert_array_equal(tab.worst_slot, _worst(counts, np.rint(tab.mx / tab.cuts.bin).astype(np.int64)))
        np.testing.assert_allclose(tab.slot_max.max(axis=1), tab.mx)
    assert run.tables["ox"].slot_max is None
    data = json.loads(run.to_json())
    assert all("slot" in r and "mx_slot" in r for r in data["deviations"]["rpost"]["rows"])
    assert all("slot" not in r for r in data["deviations"]["ox"]["rows"])
    assert "slot" in run.render(rows=3)


def test_help_explains_slot_column():
    from photonab.cli import COLUMNS
    assert any(line.split()[:1] == ["slot"] for line in COLUMNS.splitlines())
