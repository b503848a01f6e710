import json

import numpy as np
import pytest

from photonab import EventPair, InputError
from photonab.engines.base import HistoryCounts
from photonab.materials import (MaterialNames, MaterialTable, contains_materials, count_histories_and_materials,
                                count_materials, count_materials_reference, find_material_names,
                                material_code, material_label, material_table, read_material_names)
from photonab.tables import HistoryTable

from conftest import random_pair

MAT_POOL = np.array([0x1, 0x21, 0x221, 0x3221, 0x32221, 0x12221, 0x31], np.uint64)


def pair_with_seqmat(tmp_path, n=5000, seed=0, p_same=0.8, **kw):
    a_dir, b_dir = random_pair(tmp_path, n, seed=seed, **kw)
    rng = np.random.default_rng(seed)
    mat_a = MAT_POOL[rng.integers(0, len(MAT_POOL), n)]
    mat_b = np.where(rng.random(n) < p_same, mat_a, MAT_POOL[rng.integers(0, len(MAT_POOL), n)])
    for d, m in ((a_dir, mat_a), (b_dir, mat_b)):
        ph = np.load(d / "ph.npy")
        ph[:, 0, 1] = m
        np.save(d / "ph.npy", ph)
    return EventPair.open(a_dir, b_dir)


def test_counts_equal_reference_and_one_pass(tmp_path, cyext):
    pair = pair_with_seqmat(tmp_path)
    ref = count_materials_reference(pair)
    for threads in (1, 2):
        for chunk in (4096, 10_000, 1 << 22):
            assert count_materials(pair, chunk=chunk, n_threads=threads).equals(ref)
            his, mat = count_histories_and_materials(pair, chunk=chunk, n_threads=threads)
            assert mat.equals(ref)
            from photonab.engines.compiled import CythonEngine
            assert his.equals(CythonEngine(n_threads=1).histories(pair))
    assert int(ref.a.sum()) == int(ref.b.sum()) == pair.n


def test_strided_seqmat_is_not_copied(tmp_path, cyext):
    # HistoryCounter takes `const uint64_t[:]`: the ph[:, 0, 1] view of a read-only map is used in place
    pair = pair_with_seqmat(tmp_path, n=100)
    view = pair.a.seqmat
    assert not view.flags.c_contiguous and not view.flags.writeable
    counter = cyext.HistoryCounter()
    counter.add(view, pair.b.seqmat)
    assert sum(counter.result()[1][:, 0]) == 100


def test_table_arithmetic_mirrors_history_table(tmp_path, cyext):
    pair = pair_with_seqmat(tmp_path, n=4000, p_same=0.3)
    counts = count_materials(pair)
    mt, ht = MaterialTable(counts), HistoryTable(counts)
    for k in ("codes", "a", "b", "c2", "nstep"):
        assert np.array_equal(getattr(mt, k), getattr(ht, k))
    assert (mt.c2sum, mt.ndf, mt.pvalue) == (ht.c2sum, ht.ndf, ht.pvalue)
    assert mt.labels()[0].split()[0] == "1"


def test_labels_names_and_skip(tmp_path):
    names = MaterialNames(("Air", "Glass", "Rock"))
    assert material_label(0x3221) == "1 2 2 3"
    assert material_label(0x3221, names) == "Air Glass Glass Rock"
    assert material_label(0x521, names) == "Air Glass 5"
    assert material_code("Air glass Glass 3", names) == 0x3221
    with pytest.raises(InputError, match="unknown material 'Water'"):
        material_code("Air Water", names)
    codes = np.array([0x1, 0x21, 0x3221, 0x31], np.uint64)
    assert contains_materials(codes, "Glass", names).tolist() == [False, True, True, False]
    assert contains_materials(codes, ["3", "Glass"], names).tolist() == [False, True, True, True]
    assert contains_materials(codes, "2", None).tolist() == [False, True, True, False]
    counts = HistoryCounts(codes, np.array([50, 40, 30, 20]), np.array([50, 40, 30, 20]))
    table = MaterialTable(counts, names)
    assert table.labels(table.shown(skip="Rock")) == ["Air", "Air Glass"]
    assert table.level == "INFO"


def test_levels():
    codes = np.array([0x1, 0x21, 0x31], np.uint64)
    same = MaterialTable(HistoryCounts(codes, np.array([100, 100, 100]), np.array([100, 100, 100])))
    assert same.level == "INFO"
    bad = MaterialTable(HistoryCounts(codes, np.array([100, 200, 100]), np.array([200, 100, 100])))
    assert bad.c2p > 2.5 and bad.level == "FATAL"
    drop = MaterialTable(HistoryCounts(codes, np.array([100, 11, 100]), np.array([100, 0, 100])))
    assert drop.dropout.sum() == 1 and drop.c2p == 0 and drop.level == "ERROR"
    few = MaterialTable(HistoryCounts(codes[:1], np.array([5]), np.array([200])))
    assert few.ndf < 1 and few.level == "INFO"  # chi-square alone cannot fail it


def test_names_files(tmp_path):
    evt = tmp_path / "torch"
    (evt / "1").mkdir(parents=True)
    assert find_material_names(evt / "1") is None
    (evt / "GItemList").mkdir()
    (evt / "GItemList" / "GMaterialLib.txt").write_text("Air\nGlass\nRock\n\n")
    (evt / "GMaterialLib").mkdir()
    (evt / "GMaterialLib" / "GPropertyLibMetadata.json").write_text(
        json.dumps({"abbrev": {"Air": "Ai", "Glass": "Gl", "Rock": "Rk"}}))
    names = find_material_names(evt / "1")
    assert names.names == ("Air", "Glass", "Rock") and names.abbreviations == ("Ai", "Gl", "Rk")
    assert material_label(0x321, names, abbreviate=True) == "Ai Gl Rk"
    assert names.index("gl") == 2
    # a plain materials.txt in the event folder wins over the parent's
    (evt / "1" / "materials.txt").write_text("Vacuum\n")
    assert find_material_names(evt / "1").names == ("Vacuum",)
    (evt / "bad.txt").write_text("Air\n\nRock\n")
    with pytest.raises(InputError, match="one non-empty name per line"):
        read_material_names(evt / "bad.txt")
    (evt / "dup.txt").write_text("Air\nAir\n")
    with pytest.raises(InputError, match="repeat"):
        read_material_names(evt / "dup.txt")


def test_material_table_of_a_pair(tmp_path, cyext):
    pair = pair_with_seqmat(tmp_path, n=3000)
    (tmp_path / "evt" / "materials.txt").write_text("Air\nGlass\nRock\n")
    t = material_table(pair)
    assert t.names.names == ("Air", "Glass", "Rock")
    ref = material_table(pair, engine="numpy", names=None)
    assert np.array_equal(t.codes, ref.codes) and np.array_equal(t.a, ref.a) and ref.labels()[0][0].isdigit()
    assert "Glass" in " ".join(t.labels())
    assert list(t.names.names) == ["Air", "Glass", "Rock"]
