"""The analysis options on the command line (docs/analysis.md, section 5): material
table, --order, --cmx, --select, --skip patterns, migration table, chase by pattern and
--migrated, hist. Numbers are checked against numpy references computed here."""
import json

import numpy as np
import pytest

from conftest import random_pair
from photonab.analysis import View, parse_skip, row_order
from photonab.cli import EXIT_INPUT_ERROR, main
from photonab.events import EventPair
from photonab.patterns import parse_pattern


def _strict(path):
    def no_constant(name):
        raise ValueError(f"non-strict JSON constant {name}")
    return json.loads(path.read_text(), parse_constant=no_constant)


@pytest.fixture(scope="module")
def synth_pair(tmp_path_factory):
    from photonab.synth import DEFAULT_FAULTS, DEFAULT_MIGRATIONS, synthesize
    out = tmp_path_factory.mktemp("synth")
    a, b = synthesize(out, 20_000, seed=3, faults=DEFAULT_FAULTS, migrations=DEFAULT_MIGRATIONS, nan=2,
                      progress=False)
    return out, a, b


def _material_pair(tmp_path, n=3000, names=True):
    """A random pair with a seqmat column (and material names in the parent folder)."""
    a, b = random_pair(tmp_path, n, seed=5)
    rng = np.random.default_rng(7)
    for folder in (a, b):
        ph = np.load(folder / "ph.npy")
        steps = rng.integers(1, 5, n)
        mat = np.zeros(n, np.uint64)
        for k in range(4):
            nib = rng.integers(1, 4, n).astype(np.uint64)
            mat |= np.where(k < steps, nib << np.uint64(4 * k), np.uint64(0))
        ph[:, 0, 1] = mat
        np.save(folder / "ph.npy", ph)
    if names:
        (a.parent / "materials.txt").write_text("Air\nGlass\nRock\n")
    return a, b


def _counts(seq_a, seq_b):
    codes = np.union1d(seq_a, seq_b)
    return (codes, np.array([(seq_a == c).sum() for c in codes]), np.array([(seq_b == c).sum() for c in codes]))


# ---------------------------------------------------------------- material table


@pytest.mark.parametrize("engine", ["cython", "numpy"])
def test_material_table_json_matches_numpy(tmp_path, capsys, engine):
    a, b = _material_pair(tmp_path)
    out = tmp_path / "r.json"
    rc = main(["compare", str(a), str(b), "--no-progress", "--tables", "rpost,materials", "--engine", engine,
               "--json", str(out)])
    text = capsys.readouterr().out
    assert "material table" in text and "Air" in text  # names from the parent folder
    data = _strict(out)
    pair = EventPair.open(a, b)
    codes, na, nb = _counts(np.asarray(pair.a.seqmat), np.asarray(pair.b.seqmat))
    rows = {int(r["code"], 16): (r["a"], r["b"]) for r in data["materials"]["rows"]}
    assert rows == {int(c): (int(x), int(y)) for c, x, y in zip(codes, na, nb)}
    assert data["materials"]["names"] == ["Air", "Glass", "Rock"]
    assert data["rc_bits"]["materials"] == 16 and "materials" in data["levels"]
    assert rc == data["rc"]


def test_material_skip_and_indices_without_names(tmp_path, capsys):
    a, b = _material_pair(tmp_path, names=False)
    main(["compare", str(a), str(b), "--no-progress", "--tables", "materials", "--skip", "mat:3",
          "--hist-rows", "-1"])
    text = capsys.readouterr().out
    block = text.split("material table")[1].split("\n\n")[0]
    assert "material indices" in block
    shown = [line.split()[2:-8] for line in block.splitlines()[3:] if line.strip()[:1].isdigit()]
    assert shown and all("3" not in labels for labels in shown)
    assert "hidden by --skip" in block


def test_material_failure_sets_the_history_bit(tmp_path):
    a, b = _material_pair(tmp_path, names=False)
    ph = np.load(b / "ph.npy")
    ph[:, 0, 1] = np.uint64(0x1)  # every B photon in one material history
    np.save(b / "ph.npy", ph)
    from photonab.comparison import compare
    result = compare(EventPair.open(a, b), tables=("rpost", "materials"))
    assert result.materials.fails and result.rc & 16
    assert not result.history.fails  # the seqhis table alone passes here


# ---------------------------------------------------------------- --order and --cmx


@pytest.mark.parametrize("order", ["sum", "max", "a", "b"])
def test_order_matches_a_python_sort(tmp_path, capsys, order):
    a, b = random_pair(tmp_path, 3000, n_codes=12, p_aligned=0.5)
    main(["compare", str(a), str(b), "--no-progress", "--tables", "rpost", "--order", order, "--hist-rows", "-1"])
    text = capsys.readouterr().out
    block = text.split("history table")[1].split("\n\n")[0].splitlines()
    assert f"order {order}" in block[0]
    codes_shown = [int(line.split()[1], 16) for line in block[2:] if line.strip()[:1].isdigit()]
    pair = EventPair.open(a, b)
    codes, na, nb = _counts(np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis))
    key = {"sum": lambda i: (-(na[i] + nb[i]), codes[i]),
           "max": lambda i: (-max(na[i], nb[i]), -(na[i] + nb[i]), codes[i]),
           "a": lambda i: (-na[i], -nb[i], codes[i]), "b": lambda i: (-nb[i], -na[i], codes[i])}[order]
    expect = [int(codes[i]) for i in sorted(range(len(codes)), key=key)]
    assert codes_shown == expect
    assert [int(codes[i]) for i in row_order(na, nb, codes, order)] == expect


def test_cmx_hides_rows_in_text_not_json_and_counts_failing(tmp_path, capsys):
    a, b = random_pair(tmp_path, 4000, n_codes=10, p_aligned=0.3)
    out = tmp_path / "r.json"
    main(["compare", str(a), str(b), "--no-progress", "--tables", "rpost", "--cmx", "3", "--hist-rows", "-1",
          "--json", str(out)])
    text = capsys.readouterr().out
    data = _strict(out)
    rows = data["history"]["rows"]
    block = text.split("history table")[1].split("\n\n")[0]
    shown = {int(line.split()[1], 16) for line in block.splitlines()[2:] if line.strip()[:1].isdigit()}
    assert shown == {int(r["code"], 16) for r in rows if r["c2"] >= 3}
    assert len(rows) == data["history"]["histories"] > len(shown)
    hidden_failing = sum(1 for r in rows if r["c2"] < 3 and r["level"] in ("ERROR", "FATAL"))
    if hidden_failing:
        assert f"{hidden_failing} of them at ERROR/FATAL" in block


def test_cmx_hidden_dropout_is_counted(tmp_path):
    from photonab.comparison import compare
    from photonab.render.text import render_comparison
    a, b = random_pair(tmp_path, 400, n_codes=3, p_aligned=1.0)
    ph = np.load(b / "ph.npy")
    ph[:15, 0, 0] = np.uint64(0x4d)  # TO AB, 15 photons in B only: a dropout row with c2 0 (a+b <= 30)
    np.save(b / "ph.npy", ph)
    result = compare(EventPair.open(a, b), tables=("rpost",))
    assert result.history.ndropout >= 1
    text = render_comparison(result, skip=View(cmx=1.0))
    assert "ERROR/FATAL rows hidden" in text and "--cmx" in text


# ---------------------------------------------------------------- --select


def test_select_restricts_every_table(synth_pair, tmp_path, capsys):
    _, a, b = synth_pair
    out = tmp_path / "s.json"
    pattern = "TO BR .., TO BT BT SA"
    main(["compare", str(a), str(b), "--no-progress", "--tables", "rpost,ox,materials", "--select", pattern,
          "--json", str(out)])
    assert "--select" in capsys.readouterr().out
    data = _strict(out)
    pat = parse_pattern(pattern)
    pair = EventPair.open(a, b)
    sa, sb = np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis)
    codes, na, nb = _counts(sa, sb)
    keep = pat.match(codes)
    assert {int(r["code"], 16): (r["a"], r["b"]) for r in data["history"]["rows"]} == {
        int(c): (int(x), int(y)) for c, x, y in zip(codes[keep], na[keep], nb[keep])}
    for t in ("rpost", "ox"):
        assert all(pat.match(np.array([int(r["code"], 16)], np.uint64))[0] for r in data["deviations"][t]["rows"])
    # materials of the selected photons, A by A's history and B by B's
    ma, mb = np.asarray(pair.a.seqmat)[pat.match(sa)], np.asarray(pair.b.seqmat)[pat.match(sb)]
    mc, mna, mnb = _counts(ma, mb)
    assert {int(r["code"], 16): (r["a"], r["b"]) for r in data["materials"]["rows"]} == {
        int(c): (int(x), int(y)) for c, x, y in zip(mc, mna, mnb)}
    # migration: pairs whose A or B history matches
    mig = (sa != sb) & (pat.match(sa) | pat.match(sb))
    assert data["migration"]["migrated"] == int(mig.sum())
    assert data["migration"]["first_migrated"] == [int(i) for i in np.flatnonzero(mig)[:25]]
    assert sum(r["photons"] for r in data["migration"]["rows"]) + data["migration"]["other_photons"] == mig.sum()
    aligned = int(((sa == sb) & pat.match(sa)).sum())
    assert data["history"]["aligned"] == aligned == data["deviations"]["rpost"]["nitem"]
    assert data["select"] == pattern


def test_select_that_matches_nothing_or_is_bad_exits_64(tmp_path, capsys):
    a, b = random_pair(tmp_path, 500)
    assert main(["compare", str(a), str(b), "--no-progress", "--select", "TO SD SD SD SD"]) == EXIT_INPUT_ERROR
    assert "no history of A or B matches" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--no-progress", "--select", "TO XX"]) == EXIT_INPUT_ERROR
    assert "--select" in capsys.readouterr().err


# ---------------------------------------------------------------- --skip


def test_skip_rule():
    r = parse_skip("SC AB RE")
    assert r.steps == ("SC", "AB", "RE") and r.pattern is None
    r = parse_skip("SC, TO BT BT SA, .6ccd, TO BR ..")
    assert r.steps == ("SC",) and len(r.pattern.alternatives) == 3
    codes = np.array([0x8ccd, 0x86ccd, 0x8bd, 0x8c6cd, 0x4cd], np.uint64)
    assert list(parse_skip("SC AB RE").history_mask(codes)) == [False, True, False, True, True]
    assert list(parse_skip("TO BT BT SA").history_mask(codes)) == [True, False, False, False, False]
    assert list(parse_skip("TO BR ..").history_mask(codes)) == [False, False, True, False, False]
    assert parse_skip("TO").steps == ("TO",)  # one step: passes through it, as before
    with pytest.raises(Exception, match="unknown step"):
        parse_skip("TO XX ..")


def test_skip_pattern_in_cli_hides_matching_rows(tmp_path, capsys):
    a, b = random_pair(tmp_path, 2000, n_codes=10)
    main(["compare", str(a), str(b), "--no-progress", "--tables", "rpost", "--hist-rows", "-1",
          "--skip", "TO BT .., SC"])
    block = capsys.readouterr().out.split("history table")[1].split("\n\n")[0]
    for line in block.splitlines()[2:]:
        if line.strip()[:1].isdigit():
            label = line.split()[2:-7]
            assert label[:2] != ["TO", "BT"], line


# ---------------------------------------------------------------- migration


def test_migration_json_matches_the_reference(synth_pair, tmp_path, capsys):
    from photonab.migration import count_migrations_reference
    _, a, b = synth_pair
    out = tmp_path / "m.json"
    main(["compare", str(a), str(b), "--no-progress", "--tables", "rpost", "--migration-rows", "3",
          "--json", str(out)])
    text = capsys.readouterr().out
    assert "migration:" in text and "-> " in text and "--migration-rows N" in text
    data = _strict(out)["migration"]
    pair = EventPair.open(a, b)
    ref = count_migrations_reference(pair.a.seqhis, pair.b.seqhis)
    assert data["migrated"] == ref.n_migrated and data["photons"] == pair.n
    assert [(int(r["a_code"], 16), int(r["b_code"], 16), r["photons"], r["first"]) for r in data["rows"]] == [
        (int(x), int(y), int(c), int(f)) for x, y, c, f in zip(ref.codes_a, ref.codes_b, ref.counts, ref.first)]
    assert data["first_migrated"] == [int(i) for i in ref.first_migrated]
    assert data["other_pairs"] == 0 and data["other_photons"] == 0
    # the explicit migrations of the generator are the top rows
    top = {(r["a_label"], r["b_label"]) for r in data["rows"][:3]}
    assert ("TO BT BT SA", "TO BT BT SD") in top


def test_chase_migrated_lists_the_photons(synth_pair, capsys):
    _, a, b = synth_pair
    assert main(["chase", str(a), str(b), "--migrated", "TO BR SA -> *", "--limit", "4"]) == 0
    text = capsys.readouterr().out
    pair = EventPair.open(a, b)
    sa, sb = np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis)
    want = np.flatnonzero((sa == 0x8bd) & (sb != sa))
    assert f"{len(want)} migrated photons" in text
    listed = [int(line.split()[0]) for line in text.splitlines()[2:6]]
    assert listed == [int(i) for i in want[:4]]
    assert " | " in text  # A and B records side by side


@pytest.mark.parametrize("spec", ["TO BR SA", "TO XX -> *", "TO BT SD SD SD SD -> *"])
def test_chase_migrated_bad_inputs(synth_pair, capsys, spec):
    _, a, b = synth_pair
    assert main(["chase", str(a), str(b), "--migrated", spec]) == EXIT_INPUT_ERROR
    assert "photonab: error:" in capsys.readouterr().err


# ---------------------------------------------------------------- chase --history PATTERN


def test_chase_pattern_merges_the_matching_histories(synth_pair, capsys):
    from photonab.chase import chase, chase_pattern
    from photonab.cuts import Cuts
    _, a, b = synth_pair
    pair = EventPair.open(a, b)
    cuts = Cuts.for_domains(pair.domains)
    got = chase_pattern(pair, cuts, "rpost", "TO BT ..", limit=50, level=None)
    assert len(got.codes) > 1 and all(parse_pattern("TO BT ..").match(np.array(got.codes, np.uint64)))
    parts = [chase(pair, cuts, "rpost", int(c), limit=50, level=None) for c in got.codes]
    assert got.found == sum(p.found for p in parts)
    idx = np.concatenate([p.index for p in parts])
    dev = np.concatenate([p.deviation for p in parts])
    order = np.lexsort((idx, -np.where(np.isnan(dev), np.inf, dev)))[:50]
    assert np.array_equal(got.index, idx[order])
    numpy_got = chase_pattern(pair, cuts, "rpost", "TO BT ..", limit=50, level=None, engine="numpy")
    assert np.array_equal(numpy_got.index, got.index)
    assert main(["chase", str(a), str(b), "--history", "TO BT ..", "--limit", "3"]) == 0
    assert "'TO BT ..'" in capsys.readouterr().out
    assert main(["chase", str(a), str(b), "--history", "TO SD SD SD .."]) == EXIT_INPUT_ERROR
    assert "matches no history" in capsys.readouterr().err


# ---------------------------------------------------------------- hist


def test_hist_text_json_png(synth_pair, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _, a, b = synth_pair
    js, png = tmp_path / "h.json", tmp_path / "h.png"
    assert main(["hist", str(a), str(b), "--history", "TO BT BT SA", "--slot", "2", "--quantity", "x",
                 "--json", str(js), "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert "bins" in text and "c2/ndf" in text
    data = _strict(js)
    assert data["kind"] == "hist" and data["slot"] == 2
    pair = EventPair.open(a, b)
    sa = np.asarray(pair.a.seqhis)
    assert data["photons_a"] == int((sa == 0x8ccd).sum())
    h = data["histograms"][0]
    assert sum(x["a"] for x in h["bins"]) + h["under"][0] + h["over"][0] + h["outside"][0] == data["photons_a"]
    # the bins are the numpy histogram of the decoded values on the same edges
    xs = pair.a.positions(np.flatnonzero(sa == 0x8ccd))[:, 2, 0].astype(np.float64)
    edges = [x["lo"] for x in h["bins"]] + [h["bins"][-1]["hi"]]
    assert [x["a"] for x in h["bins"]] == list(np.histogram(xs, edges)[0])
    assert png.stat().st_size > 5000


@pytest.mark.parametrize("extra, words", [
    (["--slot", "10", "--quantity", "x"], "slot 10 outside the records"),
    (["--slot", "1", "--quantity", "q"], "quantities are"),
    (["--slot", "1", "--quantity", "x", "--png", "NOFOLDER/x.png"], "does not exist"),
    (["--slot", "1", "--quantity", "x", "--png", "x.txt"], "PNG"),
    (["--slot", "1", "--quantity", "x", "--json", "NOFOLDER/x.json"], "does not exist"),
])
def test_hist_bad_inputs(tmp_path, capsys, extra, words):
    a, b = random_pair(tmp_path, 200)
    extra = [str(tmp_path / x) if "NOFOLDER" in x else x for x in extra]
    assert main(["hist", str(a), str(b), "--history", "TO ..", *extra]) == EXIT_INPUT_ERROR
    assert words in capsys.readouterr().err


def test_hist_bad_pattern(tmp_path, capsys):
    a, b = random_pair(tmp_path, 200)
    assert main(["hist", str(a), str(b), "--history", "TO .. BT", "--slot", "1", "--quantity", "x"]) == 64
    assert "may only end a pattern" in capsys.readouterr().err


# ---------------------------------------------------------------- bad options, strict JSON


@pytest.mark.parametrize("argv", [["--order", "bogus"], ["--cmx", "nan"], ["--cmx", "x"],
                                  ["--tables", "rpost,bogus"], ["--skip", "TO XX .."]])
def test_bad_analysis_options_exit_64(tmp_path, capsys, argv):
    a, b = random_pair(tmp_path, 200)
    try:
        rc = main(["compare", str(a), str(b), "--no-progress", *argv])
    except SystemExit as exc:  # argparse's own errors exit 64 too
        rc = exc.code
    assert rc == EXIT_INPUT_ERROR
    assert "error" in capsys.readouterr().err


def test_demo_json_is_strict_and_has_every_table(tmp_path, capsys):
    out = tmp_path / "d.json"
    assert main(["demo", "--photons", "20k", "--cache", str(tmp_path / "c"), "--no-progress", "--tables",
                 "rpost,rtime,rpol,ox,materials", "--json", str(out), "--hist-rows", "3", "--cmx", "2"]) == 0
    capsys.readouterr()
    data = _strict(out)
    assert {"materials", "migration", "history", "deviations"} <= set(data)
    assert len(data["history"]["rows"]) == data["history"]["histories"]
    assert len(data["materials"]["rows"]) == data["materials"]["histories"]
    assert data["migration"]["migrated"] > 0
    assert (tmp_path / "c" / "demo-v2-20000" / "synth.json").is_file()
    explicit = [m for m in json.loads((tmp_path / "c" / "demo-v2-20000" / "synth.json").read_text())["migrations"]
                if m["kind"] == "explicit"]
    assert len(explicit) == 2


def test_run_with_materials_and_select(synth_pair, tmp_path, capsys):
    _, a, b = synth_pair
    out = tmp_path / "run.json"
    main(["run", str(a), str(b), str(a), str(b), "--no-progress", "--tables", "rpost,materials",
          "--select", "TO BT BT SA", "--json", str(out)])
    text = capsys.readouterr().out
    assert "combined material table" in text
    data = _strict(out)
    assert data["select"] == "TO BT BT SA"
    assert [r["code"] for r in data["history"]["rows"]] == ["8ccd"]
    assert data["materials"]["photons_a"] == data["history"]["photons_a"] == 2 * int(
        (np.asarray(EventPair.open(a, b).a.seqhis) == 0x8ccd).sum())
