"""The command line on SEvt folders (issue 10): compare, run, chase, synth --layout sevt,
the history verdict, strict JSON, engines, bad inputs and exit codes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from photonab import qcf, seqhis, sevt
from photonab.aligned import NOT_ALIGNED_MESSAGE
from photonab.cli import main
from photonab.sevt_compare import combine_counts, compare_sevt, compare_sevt_run
from photonab.synth.sevt import synthesize_sevt

from conftest import random_pair
from sevt_folders import seq_words, write_sevt

N = 3000


def _raise(const):
    raise ValueError(f"non-strict JSON constant {const}")


def strict(path):
    return json.loads(path.read_text(), parse_constant=_raise)


@pytest.fixture(scope="module")
def aligned_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("aligned")
    folders = synthesize_sevt(out, N, seed=3, aligned=True, maxrec=24, events=2, progress=False)
    return folders[0][0].parent, folders


@pytest.fixture(scope="module")
def unaligned(tmp_path_factory):
    out = tmp_path_factory.mktemp("unaligned")
    (a, b), = synthesize_sevt(out, N, seed=4, aligned=False, maxrec=24, progress=False)
    return a, b


@pytest.fixture
def clean_pair(tmp_path):
    """A pair with the same histories in A and B, no dropouts: history INFO, rc 0."""
    rng = np.random.default_rng(0)
    labels = ["TO BT BT SA"] * 400 + ["TO BT SA"] * 200 + ["TO " + "BR " * 20 + "SA"] * 100
    words = seq_words(labels)[rng.permutation(len(labels))]
    a = write_sevt(tmp_path / "A000", words, hits=10)
    b = write_sevt(tmp_path / "B000", words[rng.permutation(len(words))], hits=12)
    return a, b


# ---------------------------------------------------------------- compare


def test_compare_sevt_pair_prints_layout_flags_qcf_and_verdict(aligned_run, capsys):
    _, [(a, b), _] = aligned_run
    rc = main(["compare", str(a), str(b), "--no-progress", "--hist-rows", "5"])
    out = capsys.readouterr().out
    assert out.startswith("layout sevt")
    assert "flags 2025-06 (detected" in out
    assert "c2sum/c2n:c2per(C2CUT)" in out and "[bzero]" in out and "[azero]" in out
    assert "TO BT BT EX" in out and "TO BT BT NA" in out  # the injected dropouts
    assert "hits  a :" in out
    assert "simulator" in out  # NPFold_meta.txt differences
    assert "history level ERROR  rc 16" in out  # a dropout is at least ERROR
    assert out.count(NOT_ALIGNED_MESSAGE) == 1
    assert rc == 16


def test_compare_clean_pair_passes(clean_pair, capsys):
    a, b = clean_pair
    assert main(["compare", str(a), str(b), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "history level INFO  rc 0" in out
    assert "summary: history:INFO  rc 0" in out


def test_c2max_levels_on_c2per(tmp_path, capsys):
    labels_a = ["TO BT SA"] * 300 + ["TO SA"] * 300
    labels_b = ["TO BT SA"] * 400 + ["TO SA"] * 200  # c2 = 2 x 10000/700 = 28.6 over c2n 2
    a = write_sevt(tmp_path / "A000", seq_words(labels_a))
    b = write_sevt(tmp_path / "B000", seq_words(labels_b))
    assert main(["compare", str(a), str(b), "--no-progress"]) == 16
    assert "c2per" in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--no-progress", "--c2max", "20,30,40"]) == 0  # 14.3 < 20
    assert main(["compare", str(a), str(b), "--no-progress", "--c2max", "5,10,20", "--json",
                 str(tmp_path / "r.json")]) == 16
    d = strict(tmp_path / "r.json")
    assert d["history"]["level"] == "ERROR" and d["history"]["c2_level"] == "ERROR"
    # --c2cut above every row: c2n 0, ndf < 1 never fails on chi-square alone
    assert main(["compare", str(a), str(b), "--no-progress", "--c2cut", "1000"]) == 0


def test_few_photons_cannot_fail_on_chi_square(tmp_path):
    a = write_sevt(tmp_path / "A000", seq_words(["TO SA"] * 5 + ["TO BT SA"] * 5))
    b = write_sevt(tmp_path / "B000", seq_words(["TO SA"] * 1 + ["TO BT SA"] * 9))
    assert main(["compare", str(a), str(b), "--no-progress"]) == 0


def test_run_folder_and_index(aligned_run, capsys):
    run, folders = aligned_run
    rc = main(["compare", str(run), "--index", "1", "--no-progress", "--hist-rows", "2"])
    out = capsys.readouterr().out
    assert f"A: {folders[1][0]}" in out and rc == 16


def test_index_out_of_range(aligned_run, capsys):
    run, _ = aligned_run
    assert main(["compare", str(run), "--index", "5", "--no-progress"]) == 64
    err = capsys.readouterr().err
    assert "--index 5" in err and "0, 1" in err


def test_run_folder_without_index(aligned_run, capsys):
    run, _ = aligned_run
    assert main(["compare", str(run), "--no-progress"]) == 64
    assert "--index" in capsys.readouterr().err


def test_a_2019_and_b_sevt(tmp_path, unaligned, capsys):
    a19, _ = random_pair(tmp_path / "old", 100)
    _, b = unaligned
    assert main(["compare", str(a19), str(b), "--no-progress"]) == 64
    err = capsys.readouterr().err
    assert "different layouts" in err and "2019" in err


def test_missing_seq_names_the_event_modes(tmp_path, capsys):
    a = write_sevt(tmp_path / "A000", None, n=10)
    b = write_sevt(tmp_path / "B000", None, n=10)
    assert main(["compare", str(a), str(b), "--no-progress"]) == 64
    err = capsys.readouterr().err
    assert "seq.npy" in err and "HitPhotonSeq" in err and "DebugLite" in err


def test_bad_flags(unaligned, capsys):
    a, b = unaligned
    with pytest.raises(SystemExit) as exc:  # argparse's error: exit 64, not 2 (rtime)
        main(["compare", str(a), str(b), "--flags", "2031-01"])
    assert exc.value.code == 64
    assert "--flags" in capsys.readouterr().err


def test_flags_override_is_printed(unaligned, capsys):
    a, b = unaligned
    main(["compare", str(a), str(b), "--flags", "2020-12", "--no-progress", "--hist-rows", "1"])
    assert "flags 2020-12 (given" in capsys.readouterr().out


def test_zero_photons_is_exit_64(unaligned, capsys):
    a, b = unaligned
    assert main(["compare", str(a), str(b), "--msli", "5:2", "--no-progress"]) == 64
    assert "leaves 0" in capsys.readouterr().err


def test_sevt_only_options_on_the_2019_layout(tmp_path, capsys):
    a, b = random_pair(tmp_path, 100)
    assert main(["compare", str(a), str(b), "--aligned", "--no-progress"]) == 64
    assert "--aligned is for SEvt" in capsys.readouterr().err


def test_aligned_tables_need_aligned(unaligned, capsys):
    a, b = unaligned
    assert main(["compare", str(a), str(b), "--tables", "pos", "--no-progress"]) == 64
    assert "--aligned" in capsys.readouterr().err


def test_dask_engine_with_aligned_is_a_clear_error(unaligned, capsys):
    a, b = unaligned
    assert main(["compare", str(a), str(b), "--engine", "dask", "--aligned", "--no-progress"]) == 64
    assert "--aligned with --engine dask" in capsys.readouterr().err


def test_rule_sseq_index(unaligned, tmp_path):
    a, b = unaligned
    main(["compare", str(a), str(b), "--rule", "sseq_index", "--no-progress", "--json", str(tmp_path / "r.json")])
    assert strict(tmp_path / "r.json")["history"]["rule"] == "sseq_index"


# ---------------------------------------------------------------- --aligned


def test_aligned_tables_and_json(aligned_run, tmp_path, capsys):
    _, [(a, b), _] = aligned_run
    rc = main(["compare", str(a), str(b), "--aligned", "--no-progress", "--rows", "3", "--json",
               str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert NOT_ALIGNED_MESSAGE not in out
    assert "alignment:" in out and "pos deviations [mm]" in out and "photon deviations" in out
    d = strict(tmp_path / "r.json")
    assert d["kind"] == "sevt_comparison" and d["layout"] == "sevt"
    assert set(d["deviations"]) == {"pos", "time", "mom", "pol", "wl", "photon"}
    pos = d["deviations"]["pos"]
    assert pos["unit"] == "mm" and pos["cuts"] == [0.01, 0.05, 0.1] and pos["level"] in ("INFO", "WARNING")
    row = pos["rows"][0]
    assert set(row) >= {"label", "code", "nitem", "ndisc", "fdisc", "nnan", "mx", "mn", "avg", "level",
                        "worst_photon"}
    assert d["alignment"]["warn"] is False and d["alignment"]["score"] > 0.9
    assert rc == d["rc"] == 16 | sum(t["rc"] for t in d["deviations"].values())


def test_aligned_on_an_unaligned_pair_warns(unaligned, capsys):
    a, b = unaligned
    rc = main(["compare", str(a), str(b), "--aligned", "--tables", "pos", "--no-progress"])
    captured = capsys.readouterr()
    assert "do not look aligned" in captured.out and "do not look aligned" in captured.err
    assert rc & 1  # chance-aligned photons differ wildly: pos fails


def test_aligned_cut_option(aligned_run, tmp_path):
    _, [(a, b), _] = aligned_run
    main(["compare", str(a), str(b), "--aligned", "--tables", "pos", "--aligned-cut", "pos=1e-6,2e-6,3e-6",
          "--no-progress", "--json", str(tmp_path / "r.json")])
    d = strict(tmp_path / "r.json")
    assert d["deviations"]["pos"]["cuts"] == [1e-6, 2e-6, 3e-6]
    assert d["deviations"]["pos"]["level"] == "FATAL" and d["rc"] & 1


def test_chase_aligned(aligned_run, capsys):
    _, [(a, b), _] = aligned_run
    assert main(["chase", str(a), str(b), "--aligned", "--table", "pos", "--level", "any", "--limit", "3",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "chase pos: the 3 most deviant aligned photons" in out and "A x,y,z,t" in out


def test_chase_needs_aligned_and_a_history_that_occurs(aligned_run, capsys):
    _, [(a, b), _] = aligned_run
    assert main(["chase", str(a), str(b), "--table", "pos", "--no-progress"]) == 64
    assert "--aligned" in capsys.readouterr().err
    assert main(["chase", str(a), str(b), "--aligned", "--history", "TO TO TO", "--no-progress"]) == 64
    assert "no photon" in capsys.readouterr().err


# ---------------------------------------------------------------- JSON, engines, run, synth, plot


def test_json_is_strict_and_complete(unaligned, tmp_path):
    a, b = unaligned
    rc = main(["compare", str(a), str(b), "--no-progress", "--hist-rows", "2", "--json", str(tmp_path / "r.json")])
    d = strict(tmp_path / "r.json")
    h = d["history"]
    assert d["schema"] == "photonab/2" and d["rc"] == rc and d["levels"]["history"] == h["level"]
    assert len(h["rows"]) == h["histories"] > 2  # every row, whatever --hist-rows shows
    assert set(h["rows"][0]) >= {"label", "a", "b", "c2", "first_a", "first_b", "code"}
    assert {"c2sum", "c2n", "c2per", "pvalue", "bzero", "azero"} <= set(h)
    assert h["bzero"] == ["TO BT BT EX"] and h["azero"] == ["TO BT BT NA"]
    assert set(d["hits"]) >= {"a", "b"} and d["layout"] == "sevt" and d["flags"]["era"] == "2025-06"
    assert d["alignment"] is None and d["deviations"] == {}


def test_engines_agree(aligned_run, tmp_path, capsys):
    _, [(a, b), _] = aligned_run
    docs = {}
    for engine in ("cython", "numpy"):
        main(["compare", str(a), str(b), "--engine", engine, "--aligned", "--no-progress",
              "--json", str(tmp_path / f"{engine}.json")])
        docs[engine] = strict(tmp_path / f"{engine}.json")
    assert docs["cython"]["history"] == docs["numpy"]["history"]
    assert docs["cython"]["deviations"] == docs["numpy"]["deviations"]


def test_count_numpy_matches_kernel_on_adversarial_words():
    rng = np.random.default_rng(5)
    words = rng.integers(0, 2 ** 63, (5000, 2), dtype=np.uint64)
    words[::3, 1] = 0
    words[1::7] = words[0]
    other = words[rng.permutation(len(words))]
    other[:100] = rng.integers(0, 2 ** 63, (100, 2), dtype=np.uint64)
    assert qcf.count_numpy(words, other).equals(qcf.count_cython(words, other, n_threads=2))
    assert qcf.count_numpy(words[:0], other[:0]).equals(qcf.count_cython(words[:0], other[:0]))


def test_run_over_a_run_folder(aligned_run, tmp_path, capsys):
    run, folders = aligned_run
    rc = main(["run", str(run), "--no-progress", "--hist-rows", "3", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "2 events" in out and "combined QCF" in out and "event starts 0@0, 1@3000" in out
    d = strict(tmp_path / "r.json")
    assert d["kind"] == "sevt_run" and len(d["events"]) == 2 and rc == d["rc"] == 16
    pairs = [sevt.SEvtPair.open(a, b) for a, b in folders]
    events = [compare_sevt(p) for p in pairs]
    total = {r["label"]: (r["a"], r["b"]) for r in d["history"]["rows"]}
    for lab in ("TO BT BT SA", "TO BT BT EX"):
        assert total[lab] == tuple(sum(int(getattr(e.qcf, s)[e.qcf.labels.index(lab)]) for e in events)
                                   for s in ("a", "b"))


def test_combine_counts_first_index_over_events():
    c1 = qcf.count_numpy(seq_words(["TO SA", "TO BT SA"]), seq_words(["TO SA", "TO SA"]))
    c2 = qcf.count_numpy(seq_words(["TO BT SA", "TO AB"]), seq_words(["TO AB", "TO BT SA"]))
    c = combine_counts([c1, c2], [0, 2])
    label = {seqhis.label2(int(l), int(h), "2025-06"): k for k, (l, h) in enumerate(zip(c.lo, c.hi))}
    k = label["TO BT SA"]
    assert (c.a[k], c.b[k], c.first_a[k], c.first_b[k]) == (2, 1, 1, 3)
    k = label["TO AB"]
    assert (c.a[k], c.b[k], c.first_a[k], c.first_b[k]) == (1, 1, 3, 2)


def test_run_of_pairs_and_aligned_refused(aligned_run, capsys):
    run, folders = aligned_run
    args = [str(p) for pair in folders for p in pair]
    assert main(["run", *args, "--no-progress", "--hist-rows", "1"]) == 16
    assert main(["run", str(run), "--aligned", "--no-progress"]) == 64
    assert "--index N --aligned" in capsys.readouterr().err


def test_synth_sevt_cli(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--layout", "sevt", "--unaligned", "--photons", "2k", "--events", "2",
                 "--maxrec", "20", "--no-records", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("A: ") == 2 and "A001" in out
    a = tmp_path / "ALL0_synth" / "A001"
    assert (a / "seq.npy").is_file() and not (a / "record.npy").exists()
    assert main(["synth", str(tmp_path / "x"), "--layout", "sevt", "--nan", "3", "--no-progress"]) == 64
    assert main(["synth", str(tmp_path / "y"), "--unaligned", "--no-progress"]) == 64  # 2019 layout


def test_plot_sevt(unaligned, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    a, b = unaligned
    main(["compare", str(a), str(b), "--no-progress", "--plot", str(tmp_path / "h")])
    assert (tmp_path / "h.png").stat().st_size > 1000
    assert main(["compare", str(a), str(b), "--no-progress", "--plot", str(tmp_path / "h.txt")]) == 64


def test_library_entry_points(unaligned):
    a, b = unaligned
    pair = sevt.open_pair(a, b, need=("seq",))
    cmp = compare_sevt(pair, "numpy")
    assert cmp.history_level == "ERROR" and cmp.rc == 16 and "dropout" in cmp.reasons[0]
    run = compare_sevt_run([pair, pair], [0, 1])
    assert int(run.qcf.a.sum()) == 2 * pair.n and run.rc == 16
    json.loads(cmp.to_json(), parse_constant=_raise)


def test_sevt_row_text_is_what_json_writes(unaligned):
    """The QCF rows are written as text (photonab.render.json, "Large reports"): byte for
    byte what json.dumps writes for their dicts, with and without --msli moving them."""
    from photonab import seqhis
    from photonab.qcf import qcf_to_dict
    a, b = unaligned
    for start_at, pair in ((0, sevt.open_pair(a, b, need=("seq",))),
                           (7, sevt.open_pair(a, b, need=("seq",), msli=slice(7, None)))):
        table = compare_sevt(pair).qcf
        moved = any(r is not None and r != range(len(r)) for r in (table.rows_a, table.rows_b))
        rows = qcf_to_dict(table, stream=True)["history"]["rows"]
        for start, stop in ((0, len(table)), (2, 9), (len(table), len(table))):
            want = []
            for i in range(start, stop):
                lo, hi = int(table.lo[i]), int(table.hi[i])
                row = {"label": seqhis.labels([lo], table.era, hi=[hi])[0], "code": seqhis.hex128(lo, hi),
                       "a": int(table.a[i]), "b": int(table.b[i]), "c2": float(table.c2[i]),
                       "first_a": int(table.first_a[i]), "first_b": int(table.first_b[i])}
                if moved:
                    row["first_a_row"], row["first_b_row"] = table.file_row("a", i), table.file_row("b", i)
                want.append(row)
            assert rows.text(start, stop) == json.dumps(want)[1:-1]
        assert moved == (start_at == 7)


def test_sevt_json_streamed_in_chunks_is_to_dict(unaligned, tmp_path, monkeypatch):
    """The SEvt report's history rows are written ROW_CHUNK at a time: the file parses to
    to_dict(), also with --msli moving the first photons to other file rows, and for a run."""
    from photonab.render import json as report
    monkeypatch.setattr(report, "ROW_CHUNK", 5)
    a, b = unaligned
    for pair in (sevt.open_pair(a, b, need=("seq",)), sevt.open_pair(a, b, need=("seq",), msli=slice(7, None))):
        for result in (compare_sevt(pair), compare_sevt_run([pair, pair], [0, 1])):
            path = tmp_path / "s.json"
            assert result.to_json(path) is None
            written = json.loads(path.read_text(), parse_constant=_raise)
            assert written == json.loads(json.dumps(result.to_dict()))
            assert len(written["history"]["rows"]) > 10
        moved = json.loads(compare_sevt(pair).to_json())["history"]["rows"][0]
        assert ("first_a_row" in moved) == (pair.a.msli is not None and pair.a.msli.start == 7)
