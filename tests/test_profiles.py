"""The profiling harness: a smoke run at a tiny size writes every report, and the
regression check fails against a doctored baseline and passes against itself."""
import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytest.importorskip("line_profiler")
pytest.importorskip("memory_profiler")
pytest.importorskip("matplotlib")

from profiles import regression, targets  # noqa: E402
from profiles.timing import keep_going  # noqa: E402
from profiles.pairs import Pair, parse_count, size_label  # noqa: E402
from profiles.run import plan  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def harness(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "profiles.run", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One tiny run of every engine and every report (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("profiles")
    out = tmp / "out"
    proc = harness("--sizes", "5k", "--repeats", "2", "--min-seconds", "0", "--out", out,
                   "--cache", tmp / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), proc.stdout


def test_smoke_run_writes_every_report(smoke):
    out, results, stdout = smoke
    cases = {c["engine"]: c for c in results["cases"]}
    assert set(cases) == {"cython", "numpy", "select"}
    assert not results["failed"]
    for engine, case in cases.items():
        t = case["timing"]
        assert t["repeats"] == 2 and t["engine"]["min"] > 0 and t["floor"]["min"] > 0
        assert t["ratio"]["min"] > 0 and t["ratio"]["median"] > 0
        m = case["memory"]
        for key in ("heap_peak_mb", "anon_peak_mb", "file_touched_mb", "rss_peak_mprof_mb"):
            assert isinstance(m[key], float), (engine, key)
        assert m["heap_peak_mb"] > 0 and m["rss_peak_mprof_mb"] > m["file_touched_mb"] > 0
        prof = case["cprofile"]
        assert (out / prof["prof"]).stat().st_size > 0
        text = (out / prof["text"]).read_text()
        assert "Ordered by: internal time" in text
        if engine in ("numpy", "select"):
            lines = (out / case["lines"]["text"]).read_text()
            assert "Line #" in lines and "% Time" in lines
        else:
            assert "lines" not in case
    select = cases["select"]["cprofile"]
    assert select["selection"]["ncalls"] > 0 and 0 < select["selection"]["share"] <= 1
    assert "set_selection" in (out / cases["select"]["lines"]["text"]).read_text()
    assert len(set(results["tables_agree"]["5k"].values())) == 1  # the engines agree
    for png in ("time.png", "ratio.png", "memory.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert (out / "summary.txt").read_text().strip() in stdout
    assert "x floor" in stdout and "anon MB" in stdout and "targets of the compiled engine" in stdout
    assert results["machine"]["cores"] >= 1 and "openmp_enabled" in results["machine"]


def _doctored(results, factor):
    """A baseline whose time/floor ratios are ``factor`` times the low end of the measured
    spread, measured without spread (so that the run cannot be within it)."""
    base = copy.deepcopy(results)
    for case in base["cases"]:
        ratio = case["timing"]["ratio"]
        ratio["min"] = ratio["median"] = factor * min(ratio["min"], ratio["median"])
    return base


def test_regression_check_against_doctored_and_own_baseline(smoke, tmp_path):
    out, results, _ = smoke
    doctored = tmp_path / "doctored.json"
    doctored.write_text(json.dumps(_doctored(results, 0.01)))  # a baseline 100x better than now
    check = [sys.executable, "-m", "profiles.regression", str(out / "results.json")]
    bad = subprocess.run(check + [str(doctored)], cwd=REPO, capture_output=True, text=True)
    # a case whose floor stalled even after re-measuring is "floor suspect", never a regression
    suspect = sum(bool((c["timing"].get("floor_check") or {}).get("suspect")) for c in results["cases"])
    assert bad.stdout.count("REGRESSION") == 3 - suspect
    assert bad.stdout.count("floor suspect") == suspect
    if suspect < 3:
        assert bad.returncode == regression.EXIT_REGRESSION, bad.stdout + bad.stderr
    same = subprocess.run(check + [str(out / "results.json")], cwd=REPO, capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "0 regression(s) in 3 case(s)" in same.stdout


def test_harness_exit_code_on_regression(smoke, tmp_path):
    out, results, _ = smoke
    doctored = tmp_path / "doctored.json"
    # far below what a new run measures, even if a busy machine stalls its floor
    doctored.write_text(json.dumps(_doctored(results, 1e-4)))
    proc = harness("--sizes", "5k", "--engines", "cython", "--repeats", "1", "--min-seconds", "0",
                   "--timing-only", "--out", tmp_path / "again", "--cache", out.parent / "cache",
                   "--compare", doctored)
    if "REGRESSION" not in proc.stdout and "floor suspect" in proc.stdout:
        pytest.skip("the read floor stalled on this busy machine even after re-measuring: no verdict to check")
    assert proc.returncode == regression.EXIT_REGRESSION, proc.stdout + proc.stderr[-2000:]
    assert "REGRESSION" in proc.stdout


def test_help():
    proc = harness("--help")
    assert proc.returncode == 0
    for option in ("--sizes", "--engines", "--quick", "--compare", "--threshold", "--out", "--select-limit"):
        assert option in proc.stdout


def test_rounds_stop_after_repeats_and_min_seconds_and_before_max_seconds():
    assert keep_going(4, 10.0, repeats=5, min_seconds=3, max_seconds=60)
    assert keep_going(5, 1.0, repeats=5, min_seconds=3, max_seconds=60)  # short case: more rounds
    assert not keep_going(5, 3.5, repeats=5, min_seconds=3, max_seconds=60)
    assert keep_going(1, 100.0, repeats=5, min_seconds=3, max_seconds=60)  # at least two rounds
    assert not keep_going(2, 100.0, repeats=5, min_seconds=3, max_seconds=60)
    assert not keep_going(1, 0.0, repeats=1, min_seconds=0, max_seconds=60)


def test_select_is_skipped_above_the_limit_unless_forced():
    pairs = [Pair(n, Path("/nowhere")) for n in (10**5, 10**7)]
    args = argparse.Namespace(select_limit=10**6, timing_only=False)
    steps, skipped = plan(pairs, ["cython", "select"], args)
    assert {(s.engine, s.pair.photons) for s in steps} == {("cython", 10**5), ("cython", 10**7), ("select", 10**5)}
    assert [(s["engine"], s["size"]) for s in skipped] == [("select", "10M")]
    assert "--select-limit" in skipped[0]["reason"]
    assert {s.kind for s in steps if s.engine == "select"} == {"timing", "memory", "cprofile", "lines"}
    assert "lines" not in {s.kind for s in steps if s.engine == "cython"}
    args.select_limit = 0  # no limit
    steps, skipped = plan(pairs, ["select"], args)
    assert not skipped and {s.pair.photons for s in steps} == {10**5, 10**7}


def test_counts_and_labels():
    assert parse_count("100k") == 100_000 and parse_count("1M") == 1_000_000 and parse_count("2.5M") == 2_500_000
    assert [size_label(n) for n in (5000, 100_000, 1_000_000, 2_500_000, 10_000_000, 1234)] == \
        ["5k", "100k", "1M", "2.5M", "10M", "1234"]
    with pytest.raises(ValueError):
        parse_count("many")


@pytest.mark.parametrize("new, spread, status", [
    (1.1, (1.05, 1.1), "ok"),  # within the threshold
    (1.5, (0.95, 1.5), "not significant"),  # beyond it, but the spreads overlap
    (1.5, (1.45, 1.5), "REGRESSION"),
    (0.5, (0.5, 0.55), "improved"),
])
def test_verdicts(new, spread, status):
    v = regression.Verdict("cython", "1M", 10**6, 1.0, (0.98, 1.0), new, spread)
    assert v.status(0.25) == status


def test_targets_on_made_up_numbers():
    def case(engine, n, median, ratio=None, heap=None, anon=None):
        c = {"engine": engine, "photons": n, "size": size_label(n),
             "timing": {"engine": {"median": median, "min": median}, "ratio": {"median": ratio, "min": ratio}}}
        if heap is not None:
            c["memory"] = {"heap_peak_mb": heap, "anon_peak_mb": anon}
        return c
    results = {"cases": [case("cython", 10**6, 0.1, 1.2, 5.0, 3.0), case("cython", 10**7, 1.0, 1.4, 5.5, 3.0),
                         case("numpy", 10**7, 40.0), case("select", 10**6, 10.0)]}
    got = {t["target"]: t for t in targets.evaluate(results)}
    assert all(t["status"] == "met" for t in got.values()), got
    results["cases"][1]["memory"]["heap_peak_mb"] = 50.0  # 10x the peak at 10x N: not independent of N
    got = [t for t in targets.evaluate(results) if "heap" in t["target"] and "independent" in t["target"]]
    assert got[0]["status"] == "MISSED"


def test_streaming_reports_cold_and_warm(tmp_path):
    from profiles import streaming
    proc = subprocess.run([sys.executable, "-m", "profiles.streaming", "--sizes", "3k", "--cache", tmp_path / "c",
                           "--json", tmp_path / "s.json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert rows[0]["photons"] == 3000 and rows[0]["cold_s"] > 0 and rows[0]["warm_s"] > 0
    assert rows[0]["anon_peak_mb"] < 64 and "cold GB/s" in proc.stdout
    assert streaming.pair_bytes(Pair(3000, tmp_path / "c" / "pair-3k-seed1")) == rows[0]["bytes_read"]


def test_dask_scaling_checks_tables(tmp_path):
    pytest.importorskip("distributed")
    from conftest import random_pair
    from profiles import scaling
    a, b = random_pair(tmp_path, 3000)
    assert scaling.main([str(a), str(b), "--workers", "1", "--repeat", "1", "--json", str(tmp_path / "w.json")]) == 0
    data = json.loads((tmp_path / "w.json").read_text())
    assert data["photons"] == 3000 and data["dask"]["1"]["min"] > 0


def test_floor_is_checked_against_a_one_thread_read(smoke):
    _, results, stdout = smoke
    for case in results["cases"]:
        check = case["timing"]["floor_check"]
        assert check["reference_gbps"] > 0 and check["floor_gbps"] > 0 and check["retries"] >= 0
        assert isinstance(check["suspect"], bool)
    assert "one thread reads them at" in stdout


def test_a_stalled_floor_is_measured_again_then_flagged(monkeypatch):
    from profiles import timing
    calls = []

    def slow_floor(words, n_threads=None):  # every multi-thread read stalls; one thread does not
        calls.append(n_threads)
        return 1.0 if n_threads != 1 else 0.01
    monkeypatch.setattr(timing, "read_floor", slow_floor)
    floor, retries, suspect = timing.checked_floor([], 2, timing.reference_read([]))
    assert (floor, retries, suspect) == (1.0, timing.FLOOR_RETRIES, True)
    check = timing.floor_check([1.0, 1.0], 0.01, retries, 2, 10**6)
    assert check["suspect"] and check["reference_gbps"] == pytest.approx(0.1)
    t = {"engine": {"median": 1, "min": 1}, "ratio": {"median": 0.5, "min": 0.5}, "floor_check": check}
    got = targets.evaluate({"cases": [{"engine": "cython", "photons": 10**7, "size": "10M", "timing": t}]})
    assert got[0]["status"] == "suspect"
    v = regression.Verdict("cython", "1M", 10**6, 1.0, (1.0, 1.0), 9.0, (9.0, 9.0), suspect=True)
    assert v.status(0.25) == "floor suspect"


def test_streaming_and_scaling_are_subcommands_of_run():
    for name in ("streaming", "scaling"):
        proc = harness(name, "--help")
        assert proc.returncode == 0, proc.stderr
        assert f"profiles.{name}" in proc.stdout


def test_peers_are_skipped_with_a_note_when_missing(monkeypatch):
    from profiles import peers, run
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(run, "missing", peers.missing)
    args = argparse.Namespace(select_limit=0, timing_only=True, peers=True)
    steps, skipped = plan([Pair(1000, Path("/nowhere"))], ["cython"], args)
    assert [s.engine for s in steps] == ["cython", "cython-rpost"]
    assert {s["engine"] for s in skipped} == {"numba", "polars", "pandas"}
    assert all("pip install '.[peers]'" in s["reason"] for s in skipped)


@pytest.mark.parametrize("peer", ["numba", "polars", "pandas", "cython-rpost"])
def test_peer_gives_photonabs_rpost_maxima(tmp_path, peer):
    from profiles import peers
    if peer in peers.PEERS:
        pytest.importorskip(peers.PEERS[peer])
    from photonab import EventPair
    from photonab.synth import DEFAULT_FAULTS, synthesize
    pair = EventPair.open(*synthesize(tmp_path, 4000, seed=2, faults=DEFAULT_FAULTS, progress=False))
    run = peers.checked_run(peer, pair, 2)  # raises when the maxima differ
    table = run()
    assert table.equals(peers.photonab_rpost(pair)) and table.max.max() >= 2  # the pos faults


# ---------------------------------------------------------------- the SEvt history case (issue 10)


@pytest.fixture(scope="module")
def sevt_smoke(tmp_path_factory):
    """One tiny run of the sevt case: photonab at 3k (and the old sizes), qcf.py at 1k and 2k."""
    tmp = tmp_path_factory.mktemp("sevt")
    out = tmp / "out"
    proc = harness("sevt", "--sizes", "3k", "--old-sizes", "1k,2k", "--repeats", "2", "--min-seconds", "0",
                   "--out", out, "--cache", tmp / "cache", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), proc.stdout


def test_sevt_smoke_run_measures_every_method(sevt_smoke):
    out, results, stdout = sevt_smoke
    assert not results["failed"]
    cases = {(c["method"], c["size"]): c for c in results["cases"]}
    assert set(cases) == {(m, s) for m in ("cython", "numpy") for s in ("1k", "2k", "3k")} | \
        {("qcf.py", "1k"), ("qcf.py", "2k")}
    for (method, size), case in cases.items():
        t = case["timing"]
        assert t["repeats"] == 2 and t["engine"]["min"] > 0 and t["floor"]["min"] > 0
        assert t["floor_bytes"] == 2 * int(float(size[:-1]) * 1000) * 32  # seq.npy of A and B
        assert t["table"]["histories"] > 0
        for key in ("heap_peak_mb", "anon_peak_mb", "file_touched_mb"):
            assert isinstance(case["memory"][key], float), (method, size, key)
        assert (out / case["cprofile"]["prof"]).stat().st_size > 0
        assert "Ordered by: internal time" in (out / case["cprofile"]["text"]).read_text()
    # the three give the same table where they all ran; photonab's two everywhere
    for size in ("1k", "2k", "3k"):
        digests = results["tables_agree"][size]
        assert len(set(digests.values())) == 1, digests
    assert set(results["tables_agree"]["1k"]) == {"cython", "numpy", "qcf.py"}
    [ext] = results["extrapolated"]
    assert ext["extrapolated"] is True and ext["size"] == "3k" and ext["median_s"] > 0
    assert ext["fits"]["median_s"]["sizes"] == [1000, 2000]
    assert "EXTRAPOLATED" in stdout and "extrapolated: t ~ N^" in stdout
    targets = {t["target"]: t for t in results["targets"]}
    assert any("<= 0.1 s" in k for k in targets) and any("CLI" in k for k in targets)
    cli = results["cli"]["3k"]
    assert cli["status"] in ("measured", "pending")
    assert (out / "sevt.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "summary.txt").read_text().strip() in stdout


def test_sevt_is_a_subcommand_of_run():
    proc = harness("sevt", "--help")
    assert proc.returncode == 0 and "--old-sizes" in proc.stdout and "extrapolated" in proc.stdout.lower()


def test_power_fit_and_extrapolation_are_labelled():
    from profiles.sevt import extrapolate, fit_power
    fit = fit_power({1000: 2.0, 2000: 8.0, 4000: 32.0})
    assert fit["k"] == pytest.approx(2.0) and fit["c"] * 8000 ** fit["k"] == pytest.approx(128.0)
    assert fit_power({1000: 1.0}) is None
    results = {"cases": [{"method": "qcf.py", "photons": n, "timing": {"engine": {"median": s, "min": s}},
                          "memory": {"anon_peak_mb": n / 1000}} for n, s in ((1000, 1.0), (2000, 2.0))]}
    [row] = extrapolate(results, [2000, 10_000])  # 2000 was measured: not extrapolated
    results["cases"].insert(0, {"method": "qcf.py", "photons": 500, "timing": {"engine": {"median": 9.0, "min": 9.0}},
                                "memory": {"anon_peak_mb": 9.0}})
    assert extrapolate(results, [10_000])[0]["median_s"] == pytest.approx(10.0)  # the two largest sizes only
    assert row["extrapolated"] and row["size"] == "10k" and row["median_s"] == pytest.approx(10.0)
    assert row["anon_peak_mb"] == pytest.approx(10.0) and row["note"].startswith("extrapolated")


def test_table_digest_ignores_the_order_of_tied_rows():
    from profiles.sevt import table_digest
    one = table_digest(["TO SA", "TO AB", "TO SD"], [5, 3, 3], [4, 3, 2], [0, 1, 2], [0, 1, 3], 0, [], [])
    two = table_digest(["TO SA", "TO SD", "TO AB"], [5, 3, 3], [4, 2, 3], [0, 2, 1], [0, 3, 1], 0, [], [])
    other = table_digest(["TO SA", "TO SD", "TO AB"], [5, 3, 3], [4, 2, 3], [0, 2, 1], [0, 4, 1], 0, [], [])
    assert one[0] == two[0] != other[0]


def test_cached_pair_recipes_read_back_equal():
    """A cached pair is reused when its marker's JSON equals the recipe: a tuple in a
    recipe (read back as a list) made the distinct SEvt pair again on every run."""
    from profiles import pairs, sevt
    for recipe in (pairs._recipe(1000), sevt._recipe(1000), sevt._recipe(1000, distinct=True),
                   sevt._recipe(1000, aligned=True)):
        assert json.loads(json.dumps(recipe)) == recipe


def test_sevt_pair_without_records_has_the_same_histories(tmp_path):
    import numpy as np
    from photonab.synth.sevt import synthesize_sevt
    [(a, b)] = synthesize_sevt(tmp_path / "full", 3000, seed=2, aligned=False, progress=False)
    [(a0, b0)] = synthesize_sevt(tmp_path / "lean", 3000, seed=2, aligned=False, records=False, progress=False)
    assert not (a0 / "record.npy").exists() and "record.npy" not in (a0 / "NPFold_index.txt").read_text()
    for x, y in ((a, a0), (b, b0)):
        for name in ("seq", "photon", "hit"):
            assert np.array_equal(np.load(x / f"{name}.npy"), np.load(y / f"{name}.npy")), name


def test_process_quick_smoke(tmp_path):
    """python -m profiles.run process --quick: start-up, whole process and threads, every file."""
    out = tmp_path / "out"
    proc = harness("process", "--quick", "--startup-repeats", "2", "--out", out, "--cache", tmp_path / "cache",
                   timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert not results["failed"]
    assert set(results["startup"]) == {"cached", "none"} == set(results["bytecode"]["modes"])
    for st in results["startup"].values():  # both bytecode modes
        assert set(st) == {"bare", "numpy", "import", "compare", "help", "cmp_help"}
        assert all(d["heavy"] == [] for d in st.values())
        assert all(len(d["seconds"]) == 2 and d["min"] > 0 for d in st.values())
    (whole,) = results["whole"]
    assert set(whole["cli"]) == set(whole["ratio"]) == {"cached", "none"} and whole["floor"]["median"] > 0
    for mode, cli in whole["cli"].items():
        assert cli["median"] > 0 and 0 <= cli["rc"] < 64 and whole["ratio"][mode]["median"] > 0
    assert whole["floor"]["bytes"] > 0
    (threads,) = results["threads"]
    assert set(threads["cases"]) == {"quiet", "loaded"} and threads["tables_equal"]
    for case in threads["cases"].values():
        assert set(case["threads"]) == {"1", "2"} and case["ratio"]["median"] > 0
    assert {t["status"] for t in results["targets"]} <= {"met", "MISSED", "n/a"}
    summary = (out / "summary.txt").read_text()
    assert summary.strip() in proc.stdout
    assert "start-up, bytecode cached" in summary and "start-up, bytecode none" in summary
    assert "CLI (bytecode cached) / floor process" in summary and "loaded" in summary and "quiet" in summary


def test_sevt_distinct_pairs_give_every_photon_its_own_history(tmp_path):
    """--distinct: random histories of 17-32 steps that the era detection still reads as
    the current era, almost all distinct (2N rows), and the same table from both engines."""
    import numpy as np
    from photonab import qcf
    from photonab.sevt import SEvtPair
    from photonab.synth.sevt import synthesize_sevt
    from profiles.sevt import distinct_histories
    [(a, b)] = synthesize_sevt(tmp_path, 3000, aligned=False, records=False, progress=False)
    rng = np.random.default_rng(0)
    for folder in (a, b):
        distinct_histories(folder, rng)
    pair = SEvtPair.open(a, b)
    tables = {e: qcf.compare_histories(pair, engine=e) for e in ("cython", "numpy")}
    assert len(tables["cython"].a) > 5990
    assert np.array_equal(tables["cython"].lo, tables["numpy"].lo) and np.array_equal(tables["cython"].a,
                                                                                       tables["numpy"].a)
    assert all(17 <= len(tables["cython"].label(i).split()) <= 32 for i in range(20))


def test_aligned_case_smoke(tmp_path):
    """python -m profiles.run aligned: both engines beside the floor, their tables the same bits."""
    out = tmp_path / "out"
    proc = harness("aligned", "--sizes", "5k", "--engines", "cython,numpy", "--rounds", "1", "--repeats", "2",
                   "--out", out, "--cache", tmp_path / "cache", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["tables_agree"] and not results["failed"]
    assert [m["engine"] for m in results["measurements"]] == ["cython", "numpy"]
    for m in results["measurements"]:
        assert m["photons"] == 5000 and m["bytes"] > 0 and m["compare"]["min"] > 0 and m["ratio"]["median"] > 0
    assert (out / "summary.txt").read_text().strip() in proc.stdout


def test_cached_folder_is_made_once_per_recipe(tmp_path):
    """profiles.pairs.cached_folder: made when missing, kept while the marker holds the
    recipe, made again for another recipe, a damaged marker or an interrupted make."""
    from profiles.pairs import MARKER, cached_folder
    root, made = tmp_path / "cache" / "pair", []

    def make(folder):
        made.append(folder)
        (folder / "data").write_text(str(len(made)))

    assert cached_folder(root, {"n": 1}, make) and len(made) == 1
    assert not cached_folder(root, {"n": 1}, make) and (root / "data").read_text() == "1"
    assert cached_folder(root, {"n": 2}, make) and (root / "data").read_text() == "2"
    (root / MARKER).write_text("{not json")
    assert cached_folder(root, {"n": 2}, make) and len(made) == 3

    def interrupted(folder):
        (folder / "part").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_folder(root, {"n": 3}, interrupted)
    assert not (root / MARKER).exists()
    assert cached_folder(root, {"n": 3}, make) and not (root / "part").exists()
    with pytest.raises(OSError, match="GB on disk"):
        cached_folder(tmp_path / "cache" / "big", {"n": 1}, make, need_bytes=1 << 62)


@pytest.mark.parametrize("args, message", [(["--engines", "numba"], "--engines: numba; choose from cython, numpy"),
                                           (["--engines", ","], "--engines: none given"),
                                           (["--rounds", "0"], "--rounds and --repeats must be >= 1"),
                                           (["--sizes", "lots"], "lots")])
def test_aligned_case_refuses_bad_options(tmp_path, args, message):
    """profiles.run aligned: a clear message and a failing exit before any pair is made."""
    proc = harness("aligned", *args, "--out", tmp_path / "out", "--cache", tmp_path / "cache", timeout=120)
    assert proc.returncode != 0 and message in proc.stderr
    assert not (tmp_path / "cache").exists()
