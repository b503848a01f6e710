"""The verdict never passes a wrong event (docs/verdict.md), the JSON is complete and
strict (docs/json.md), and failures are clear: one case per item of the issue."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, random_pair, write_event
from photonab import EventPair, InputError, compare, seqhis
from photonab.chase import Chase
from photonab.cli import EXIT_INPUT_ERROR, main
from photonab.engines.base import HistoryCounts
from photonab.runs import compare_run
from photonab.tables import C2MAX, RC_BIT, HistoryTable


def _no_constants(name):
    raise ValueError(f"non-standard JSON constant {name}")


def strict(text: str):
    return json.loads(text, parse_constant=_no_constants)


def _history(codes, a, b, **kw):
    return HistoryTable(HistoryCounts.from_unsorted(np.array(codes, np.uint64), np.array(a), np.array(b)), **kw)


def _set_seqhis(folder, values):
    ph = np.load(folder / "ph.npy")
    ph[:, 0, 0] = values
    np.save(folder / "ph.npy", ph)


# ---------------------------------------------------------------- the verdict


def test_rc_bits_keep_the_tables_and_add_history():
    assert RC_BIT == {"rpost": 1, "rtime": 2, "rpol": 4, "ox": 8, "history": 16}
    assert C2MAX == (1.5, 2.0, 2.5)


@pytest.mark.parametrize("c2p, level", [(1.4, "INFO"), (1.6, "WARNING"), (2.2, "ERROR"), (2.6, "FATAL")])
def test_history_level_on_c2_per_ndf(c2p, level):
    # two rows of 1000 photons; row 0 carries the chi-square, ndf = 1
    d = int(round(np.sqrt(c2p * 2000)))
    t = _history([0xd, 0x8d], [1000 + d // 2, 1000], [1000 - (d - d // 2), 1000])
    assert t.ndf == 1 and t.level == level, t.c2p
    assert t.rc == (16 if level in ("ERROR", "FATAL") else 0)


def test_c2max_is_configurable_and_checked():
    t = _history([0xd, 0x8d], [1060, 1000], [940, 1000], c2max=(10, 20, 30))
    assert t.c2p > 2.5 and t.level == "INFO"
    for bad in ("1,2,3", (1, 2), (3, 2, 1), (0, 1, 2), (1, 2, float("nan"))):
        with pytest.raises(InputError, match="c2max"):
            _history([0xd], [1], [1], c2max=bad)


def test_a_dropout_is_at_least_error_and_few_photons_cannot_fail_on_chi2():
    t = _history([0xd, 0x8d, 0x4d], [11, 5, 0], [0, 0, 3])
    assert t.ndf < 1 and t.c2_level_index == 0
    assert t.dropout.tolist() == [True, False, False] and t.level == "ERROR" and t.rc == 16
    assert _history([0xd, 0x8d], [10, 3], [0, 3]).level == "INFO"  # 10 is not more than 10
    assert "1 dropout histories" in " ".join(t.reasons)


def test_all_zero_seqhis_in_a_fails_the_history_table(tmp_path):
    a, b = random_pair(tmp_path, 3000)
    _set_seqhis(a, 0)
    r = compare(EventPair.open(a, b))
    assert r.history.level == "FATAL" and r.rc & 16
    assert r.aligned == 0 and r.history.none_aligned
    text = r.render()
    assert "no photon aligned: every history differs photon by photon" in text.splitlines()[3]
    assert main(["compare", str(a), str(b), "--no-progress"]) & 16


def test_no_photon_aligned_sets_the_history_bit_even_when_counts_agree(tmp_path):
    a, b = random_pair(tmp_path, 2000, distinct=True, p_aligned=0.0)  # every photon its own history
    r = compare(EventPair.open(a, b))
    assert r.history.c2_level_index == 0  # few photons per history: chi-square says nothing
    assert r.history.level == "FATAL" and r.rc & 16


def test_matching_events_pass(tmp_path):
    a, b = random_pair(tmp_path, 3000, p_aligned=1.0, p_flip=0.0)
    r = compare(EventPair.open(a, b), ox_cuts=(1, 2, 3))
    assert r.history.level == "INFO" and r.rc == 0


@pytest.mark.parametrize("msli, words", [("5:2", "--msli 5:2 leaves 0 of the 100 photons"),
                                         ("200k:", "--msli 200000: leaves 0 of the 100 photons")])
def test_zero_photons_after_slicing_is_an_input_error(tmp_path, capsys, msli, words):
    a, b = random_pair(tmp_path, 100)
    assert main(["compare", str(a), str(b), "--msli", msli, "--no-progress"]) == EXIT_INPUT_ERROR
    assert words in capsys.readouterr().err
    with pytest.raises(InputError, match="nothing to compare"):
        compare(EventPair.open(a, b, msli=msli))


def test_zero_photon_arrays_are_an_input_error(tmp_path, capsys):
    a, b = random_pair(tmp_path, 1)
    for d in (a, b):
        write_event(d, np.zeros((0, 4, 4), np.float32), np.zeros((0, 10, 2, 4), np.int16),
                    np.zeros((0, 1, 2), np.uint64))
    assert main(["compare", str(a), str(b), "--no-progress"]) == EXIT_INPUT_ERROR
    assert "the events have no photons" in capsys.readouterr().err


def test_a_run_fails_when_one_event_fails_on_its_own(tmp_path):
    good = random_pair(tmp_path / "e1", 3000, seed=1, p_flip=0.0, p_aligned=1.0)
    bad = random_pair(tmp_path / "e2", 300, seed=2, p_flip=0.0, p_aligned=1.0)
    _set_seqhis(bad[0], 0)
    run = compare_run([good, bad], ox_cuts=(10, 20, 30))
    assert run.events[0].rc == 0 and run.events[1].rc == 16 and run.rc == 16
    assert "events failing on their own: 1" in run.render()


def test_skip_never_hides_why_an_event_failed(tmp_path, capsys):
    a, b = random_pair(tmp_path, 2000, spread=50, p_flip=0.5)
    r = compare(EventPair.open(a, b))
    labels = r["rpost"].labels()
    worst = r["rpost"].worst_rows("ERROR")
    token = seqhis.label(r["rpost"].codes[worst[0]]).split()[-1]
    rc = main(["compare", str(a), str(b), "--no-progress", "--skip", token, "--rows", "2"])
    out = capsys.readouterr().out
    hidden_by_skip = sum(r[t].hidden(2, token)["failing_skip"] for t in r.tables) + \
        r.history.hidden(20, token)["failing_skip"]
    hidden_by_rows = sum(r[t].hidden(2, token)["failing_limit"] for t in r.tables)
    assert hidden_by_skip > 0 and len(labels) > 2
    head, summary = out.splitlines()[3], [line for line in out.splitlines() if line.startswith("summary:")][0]
    for line in (head, summary):
        assert f"{hidden_by_skip + hidden_by_rows} ERROR/FATAL rows hidden" in line
        assert f"{hidden_by_skip} by --skip" in line
    assert "hidden by --skip" in out  # the table footers say which option hid their rows
    assert rc == r.rc


def test_footer_counts_rows_hidden_by_skip_as_such(tmp_path):
    a, b = random_pair(tmp_path, 2000, spread=50, p_flip=0.5)
    t = compare(EventPair.open(a, b))["rpost"]
    token = t.labels()[0].split()[-1]
    h = t.hidden(None, token)
    assert h["limit"] == 0 and h["skip"] == h["rows"] > 0
    footer = t.render(None, token).splitlines()[-1]
    assert f"{h['skip']} hidden by --skip" in footer and "--rows" not in footer.split(";")[0]


# ---------------------------------------------------------------- complete, strict JSON


def test_json_has_every_row_whatever_the_view_shows(tmp_path):
    a, b = random_pair(tmp_path, 3000, n_codes=30, nan=4, spread=50, p_flip=0.5)
    out = tmp_path / "r.json"
    assert main(["compare", str(a), str(b), "--no-progress", "--rows", "1", "--hist-rows", "1", "--skip", "BT",
                 "--json", str(out)]) < 64
    data = strict(out.read_text())
    r = compare(EventPair.open(a, b))
    assert data["schema"] == "photonab/2" and data["kind"] == "comparison"
    assert len(data["history"]["rows"]) == len(r.history)
    for t, table in r.tables.items():
        assert len(data["deviations"][t]["rows"]) == len(table)
    assert data["rc"] == r.rc and data["rc_bits"]["history"] == 16
    assert data["levels"]["history"] == r.history.level


def test_json_writes_nan_as_null_beside_the_nan_count(tmp_path):
    a, b = random_pair(tmp_path, 60, n_codes=1, nan=60, p_aligned=1.0)  # every ox deviation NaN
    r = compare(EventPair.open(a, b))
    assert np.isnan(r["ox"].mx).all()
    assert r.to_json(tmp_path / "n.json") is None
    text = (tmp_path / "n.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = strict(text)
    row = data["deviations"]["ox"]["rows"][0]
    assert row["mx"] is None and row["avg"] is None and row["nnan"] == row["nitem"] == 60
    assert data["deviations"]["ox"]["mx"] is None
    assert strict((tmp_path / "n.json").read_text()) == data
    run = compare_run([(a, b)])
    strict(run.to_json())
    strict(r.chase("ox", level=None).to_json())


def test_json_schema_doc_names_every_top_level_key(tmp_path):
    doc = (REPO / "docs" / "json.md").read_text()
    a, b = random_pair(tmp_path, 500)
    data = compare(EventPair.open(a, b)).to_dict()
    for key in list(data) + list(data["history"]) + list(data["deviations"]["rpost"]) + \
            list(data["deviations"]["rpost"]["rows"][0]) + list(data["history"]["rows"][0]):
        assert f"`{key}`" in doc, key
    assert "photonab/2" in doc


# ---------------------------------------------------------------- failures bounded and clear


def test_plot_format_is_checked_before_any_work(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    a, b = random_pair(tmp_path, 100)
    import photonab.comparison
    monkeypatch.setattr(photonab.comparison, "compare", lambda *a, **k: pytest.fail("computed before the check"))
    assert main(["compare", str(a), str(b), "--no-progress", "--plot", str(tmp_path / "out.txt")]) == 64
    err = capsys.readouterr().err
    assert "cannot draw a plot as .txt" in err and ".png" in err
    assert main(["compare", str(a), str(b), "--no-progress", "--plot", str(tmp_path / "no" / "p.png")]) == 64
    assert "does not exist" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--no-progress", "--json", str(tmp_path)]) == 64
    assert "is a directory" in capsys.readouterr().err


def test_plot_without_suffix_writes_and_names_the_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    a, b = random_pair(tmp_path, 300)
    main(["compare", str(a), str(b), "--no-progress", "--plot", str(tmp_path / "noext")])
    assert (tmp_path / "noext.png").stat().st_size > 1000 and not (tmp_path / "noext").exists()
    assert f"wrote {tmp_path / 'noext.png'}" in capsys.readouterr().err
    main(["compare", str(a), str(b), "--no-progress", "--plot", str(tmp_path / "p.svg")])
    assert (tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")


def test_the_library_leaves_the_matplotlib_backend_alone(tmp_path):
    code = ("import matplotlib; matplotlib.use('svg'); import sys; sys.path.insert(0, 'tests');"
            "from conftest import random_pair; from pathlib import Path; import photonab;"
            "from photonab.render.plots import plot_comparison;"
            f"p = photonab.EventPair.open(*random_pair(Path({str(tmp_path)!r}), 200));"
            f"plot_comparison(photonab.compare(p), Path({str(tmp_path)!r}) / 'x.png');"
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg" and (tmp_path / "x.png").exists()


@pytest.mark.parametrize("kind, words", [("dir", "is a directory, not a plain file"),
                                         ("fifo", "is a named pipe (FIFO), not a plain file"),
                                         ("loop", "is a symlink loop"),
                                         ("broken", "is a broken symlink")])
def test_paths_that_are_not_plain_files_are_named(tmp_path, capsys, kind, words):
    a, b = random_pair(tmp_path, 50)
    rx = b / "rx.npy"
    rx.unlink()
    if kind == "dir":
        rx.mkdir()
    elif kind == "fifo":
        os.mkfifo(rx)
    elif kind == "loop":
        os.symlink(rx, rx)
    else:
        os.symlink(b / "gone.npy", rx)
    assert main(["compare", str(a), str(b), "--no-progress"]) == 64
    err = capsys.readouterr().err
    assert f"{rx}: {words}" in err and "missing" not in err


def test_an_event_path_that_is_a_file_is_named(tmp_path, capsys):
    a, b = random_pair(tmp_path, 50)
    assert main(["compare", str(a / "ox.npy"), str(b), "--no-progress"]) == 64
    assert "ox.npy: is a file, not an event folder" in capsys.readouterr().err


def test_chase_on_a_history_that_does_not_occur(tmp_path, capsys):
    a, b = random_pair(tmp_path, 500)
    absent = "TO SC SC SC SC SC SC SC SC SC SC SC SC SC SC SA"
    assert main(["chase", str(a), str(b), "--history", absent]) == 64
    assert "does not occur in A or B" in capsys.readouterr().err
    pair = EventPair.open(a, b)
    _set_seqhis(b, 0x4d)  # in B only
    pair = EventPair.open(a, b)
    na = int((np.asarray(pair.a.seqhis) == seqhis.code(seqhis.label(pair.a.seqhis[0]))).sum())
    with pytest.raises(InputError, match=f"has {na} photons in A and 0 in B but none aligned"):
        compare(pair).chase("rpost", seqhis.label(pair.a.seqhis[0]))


def test_chase_with_nothing_beyond_the_cut_says_so(tmp_path, capsys):
    a, b = random_pair(tmp_path, 500, p_flip=0.0)
    label = seqhis.label(EventPair.open(a, b).a.seqhis[0])
    assert main(["chase", str(a), str(b), "--history", label, "--table", "rpost"]) == 0
    assert "no aligned photon at or beyond WARNING" in capsys.readouterr().out


@pytest.mark.parametrize("call, words", [
    (lambda p: EventPair.open(*p, msli=5), "msli must be a slice text"),
    (lambda p: compare(EventPair.open(*p), tables="rpost"), "not the string 'rpost'"),
    (lambda p: compare(EventPair.open(*p), engine="gpu"), "cython, numpy, select, dask"),
    (lambda p: compare(EventPair.open(*p), engine=3), "engine must be a name"),
    (lambda p: compare(p), "compare wants an EventPair"),
    (lambda p: compare(EventPair.open(*p), c2max=2.0), "c2max must be three numbers"),
    (lambda p: compare(EventPair.open(*p)).chase("rpost", row=10**6), "rpost has rows 0.."),
    (lambda p: compare(EventPair.open(*p), tables=("ox",)).chase("rpost"), "was not computed"),
])
def test_python_api_misuse_gets_a_clear_error(tmp_path, call, words):
    pair = random_pair(tmp_path, 200)
    with pytest.raises(InputError, match=words):
        call(pair)


def test_chase_has_a_useful_repr(tmp_path):
    a, b = random_pair(tmp_path, 2000, spread=50, p_flip=0.5)
    found = compare(EventPair.open(a, b)).chase("rpost", limit=3)
    assert isinstance(found, Chase)
    text = repr(found)
    assert text.startswith("<Chase rpost all histories >= WARNING: 3 of ")
    assert f"at photon {found.index[0]} (file row {found.file_index[0]})" in text and " mm " in text


def test_module_cli_exits_64_with_one_line_for_a_bad_scheduler(tmp_path):
    pytest.importorskip("distributed")
    a, b = random_pair(tmp_path, 50)
    for address, words in (("bogus", "missing port number"), ("tcp://nohost.invalid:8786", "unknown host"),
                           ("tcp://127.0.0.1:99999", "outside 1..65535")):
        out = subprocess.run([sys.executable, "-m", "photonab", "compare", str(a), str(b), "--engine", "dask",
                              "--scheduler", address, "--no-progress"], capture_output=True, text=True, cwd=REPO,
                             timeout=15)
        assert out.returncode == 64, out.stderr
        assert out.stderr.count("\n") == 1 and words in out.stderr and "Traceback" not in out.stderr


def test_timeout_and_scheduler_need_the_dask_engine(tmp_path, capsys):
    a, b = random_pair(tmp_path, 50)
    assert main(["compare", str(a), str(b), "--timeout", "5"]) == 64
    assert "--timeout goes with --engine dask" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(a), str(b), "--engine", "dask", "--timeout", "0"])
    assert exc.value.code == 64
