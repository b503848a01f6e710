"""A run of events: combined tables equal the tables of the concatenated events."""
import numpy as np
import pytest

from conftest import FDOM, random_pair, write_event
from photonab import EventPair, InputError, compare
from photonab.cli import main
from photonab.runs import compare_run, parse_tags


def _concatenate(tmp_path, dirs):
    """One event holding the photons of several, in order."""
    out = []
    for side in (0, 1):
        arrays = {name: np.concatenate([np.load(d[side] / f"{name}.npy") for d in dirs]) for name in ("ox", "rx", "ph")}
        out.append(write_event(tmp_path / "cat" / str(side), **arrays))
    return out


def test_combined_tables_equal_one_big_event(tmp_path):
    dirs = [random_pair(tmp_path / f"e{k}", 3000 + 500 * k, seed=k, nan=1, spread=4) for k in range(3)]
    run = compare_run(dirs)
    big = compare(EventPair.open(*_concatenate(tmp_path, dirs)))
    assert np.array_equal(run.history.codes, big.history.codes)
    assert np.array_equal(run.history.a, big.history.a)
    for t in ("rpost", "rtime", "rpol"):
        r, b = run.tables[t], big.tables[t]
        for name in ("codes", "nitem", "ndisc", "nnan", "mx", "mn"):
            assert np.array_equal(getattr(r, name), getattr(b, name), equal_nan=True), (t, name)
        assert np.allclose(r.avg, b.avg)
        assert r.level == b.level
    # the worst photon of a combined row, mapped back to the big event, is the big event's worst
    offsets = np.cumsum([0, 3000, 3500])
    t = run.tables["rpost"]
    mapped = offsets[t.worst_event] + t.argmax
    assert np.array_equal(np.sort(mapped), np.sort(big.tables["rpost"].argmax))
    assert run.rc == big.rc
    assert len(run.events) == 3 and "run of 3 events" in run.render()
    assert run.to_dict()["deviations"]["rpost"]["rows"][0]["worst_event"] in (0, 1, 2)


def test_parse_tags():
    assert parse_tags("1-3,7") == ["1", "2", "3", "7"]
    for bad in ("x", "3-1", ""):
        with pytest.raises(InputError, match="--tags"):
            parse_tags(bad)


def test_run_domains_must_agree(tmp_path):
    d1 = random_pair(tmp_path / "e1", 100)
    d2 = random_pair(tmp_path / "e2", 100)
    fdom = FDOM.copy()
    fdom[0, 0, 3] = 900
    for d in d2:
        np.save(d / "fdom.npy", fdom)
    with pytest.raises(InputError, match="domains differ from the run's first event"):
        compare_run([d1, d2])


def test_run_cli_by_tags(tmp_path, capsys):
    root = tmp_path / "base" / "p" / "evt" / "box" / "torch"
    for tag in (1, 2):
        a, b = random_pair(tmp_path / f"t{tag}", 400, seed=tag)
        (root / str(tag)).parent.mkdir(parents=True, exist_ok=True)
        a.rename(root / str(tag))
        b.rename(root / f"-{tag}")
    rc = main(["run", "--base", str(tmp_path / "base"), "--pfx", "p", "--tags", "1-2", "--no-progress",
               "--json", str(tmp_path / "run.json")])
    out = capsys.readouterr().out
    assert "run of 2 events, 800 photons" in out and "combined history table" in out
    assert rc in range(32)
    assert main(["run", "A_ONLY", "--no-progress"]) == 64


def test_run_with_reference_engines_when_an_event_shares_no_history(tmp_path):
    d1 = random_pair(tmp_path / "e1", 300, p_aligned=0.0, n_codes=1)  # no aligned photon
    ph = np.load(d1[1] / "ph.npy")
    ph[:, 0, 0] = 0xcd  # B's history never appears in A
    np.save(d1[1] / "ph.npy", ph)
    d2 = random_pair(tmp_path / "e2", 500, nan=1)
    runs = {e: compare_run([d1, d2], e) for e in ("cython", "numpy")}
    for t in ("rpost", "ox"):
        assert runs["cython"].tables[t].raw.equals(runs["numpy"].tables[t].raw)
    assert runs["numpy"].tables["ox"].mx.dtype == np.float64


def test_run_rejects_chase(tmp_path, capsys):
    d = random_pair(tmp_path, 100)
    assert main(["run", str(d[0]), str(d[1]), "--chase", "3", "--no-progress"]) == 64
    assert "--chase works on one event" in capsys.readouterr().err


def test_run_has_the_migration_table_of_all_its_photons(tmp_path, capsys):
    """The combined migration table is the table of the concatenated events, its photons
    as event:photon; in the text and in the JSON; with --select, the matching pairs."""
    import json
    from photonab.migration import count_migrations_reference
    dirs = [random_pair(tmp_path / f"e{k}", 2000 + 700 * k, seed=k, p_aligned=0.6, n_codes=12) for k in range(3)]
    run = compare_run(dirs)
    big = EventPair.open(*_concatenate(tmp_path, dirs))
    ref = count_migrations_reference(big.a.seqhis, big.b.seqhis)
    m = run.migration
    offsets = np.cumsum([0, 2000, 2700])
    assert (m.n, m.n_migrated) == (ref.n, ref.n_migrated) and m.n_migrated > 0
    assert np.array_equal(m.codes_a, ref.codes_a) and np.array_equal(m.counts, ref.counts)
    assert np.array_equal(offsets[m.first_event] + m.first, ref.first)
    assert np.array_equal(offsets[m.first_migrated_event] + m.first_migrated, ref.first_migrated)
    assert compare_run(dirs, "numpy").migration.equals(m)  # every engine: the same table
    assert compare_run(dirs, migration=False).migration is None
    rc = main(["run", *[str(p) for d in dirs for p in d], "--no-progress", "--migration-rows", "3",
               "--json", str(tmp_path / "run.json")])
    out = capsys.readouterr().out
    assert rc == run.rc and "combined migration: " in out
    row = next(line for line in out.splitlines() if line.strip().startswith("0 ") and "->" in line)
    assert f"{m.first_event[0]}:{m.first[0]}" in row
    doc = json.loads((tmp_path / "run.json").read_text())["migration"]
    assert doc["migrated"] == ref.n_migrated and doc["rows"][0]["first_event"] == int(m.first_event[0])
    assert doc["first_migrated_events"] == m.first_migrated_event.tolist()
    # --select: the pairs with a matching side, the photons of those pairs
    from photonab.patterns import parse_pattern
    pattern = ".cd"  # TO BT .., in every event
    sel = compare_run(dirs, select=pattern).migration
    match = parse_pattern(pattern).match
    keep = match(m.codes_a) | match(m.codes_b)
    assert 0 < keep.sum() < len(keep)
    assert np.array_equal(sel.counts, m.counts[keep]) and sel.n_migrated == int(m.counts[keep].sum())


def test_run_select_matching_some_events_only(tmp_path, capsys):
    """--select needs a match in the run, not in every event: an event without one gives
    empty tables, and the combined tables are those of the concatenated events."""
    from photonab import seqhis
    d1 = random_pair(tmp_path / "e1", 2000, seed=1, n_codes=6)
    d2 = random_pair(tmp_path / "e2", 1500, seed=2, n_codes=6)
    codes1 = np.load(d1[0] / "ph.npy")[:, 0, 0]
    only = np.setdiff1d(codes1, np.concatenate([np.load(d / "ph.npy")[:, 0, 0] for d in d2]))
    pattern = seqhis.label(only[np.argmax([np.count_nonzero(codes1 == c) for c in only])])
    run = compare_run([d1, d2], select=pattern)
    big = compare(EventPair.open(*_concatenate(tmp_path, [d1, d2])), select=pattern)
    assert len(run.events[1].history) == 0 and run.events[1].rc == 0
    assert np.array_equal(run.history.codes, big.history.codes) and np.array_equal(run.history.b, big.history.b)
    for t in ("rpost", "ox"):
        assert np.array_equal(run.tables[t].nitem, big.tables[t].nitem) and len(run.tables[t]) > 0
    assert run.migration.n_migrated == big.migration.n_migrated
    assert main(["run", *map(str, d1 + d2), "--select", pattern, "--no-progress"]) == run.rc
    assert "run of 2 events" in capsys.readouterr().out
    with pytest.raises(InputError, match="no history of A or B matches in any of the run's 2 events"):
        compare_run([d1, d2], select="TO TO TO TO TO TO")
    with pytest.raises(InputError, match="no history of A or B matches"):
        compare(EventPair.open(*d2), select=pattern)  # one event alone still needs a match


def test_union_codes_is_numpys_unique():
    from photonab.runs import union_codes
    rng = np.random.default_rng(2)
    for sizes in ([0], [0, 0], [5, 0, 7], [3000, 2000, 1]):
        parts = [rng.integers(0, 50, n).astype(np.uint64) for n in sizes]
        assert np.array_equal(union_codes(parts), np.unique(np.concatenate(parts)))
        assert union_codes(parts).dtype == np.uint64
