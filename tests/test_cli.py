"""The command line: compare, chase, synth, demo, exit codes and errors."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, random_pair
from photonab.cli import EXIT_INPUT_ERROR, main
from photonab.demo import demo_folder


def test_compare_exit_code_is_the_return_code(tmp_path, capsys):
    a, b = random_pair(tmp_path, 2000, spread=50, p_flip=0.5)
    rc = main(["compare", str(a), str(b), "--no-progress", "--json", str(tmp_path / "r.json"), "--rows", "3"])
    out = capsys.readouterr().out
    assert "history table" in out and "summary:" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert rc == data["rc"] and rc & 1


def test_compare_by_tag_with_msli_and_engine(tmp_path, capsys):
    random_pair(tmp_path, 500, root=tmp_path / "base" / "pfx" / "evt" / "box" / "torch")
    rc = main(["compare", "--base", str(tmp_path / "base"), "--pfx", "pfx", "--tag", "1", "--msli", "::2",
               "--engine", "numpy", "--no-progress", "--skip", "SC AB RE"])
    out = capsys.readouterr().out
    assert "photons 250 (msli ::2 of 500)" in out and "engine numpy" in out
    assert rc in range(32)


def test_compare_with_plot_and_chase(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    a, b = random_pair(tmp_path, 2000, spread=50, p_flip=0.5)
    main(["compare", str(a), str(b), "--no-progress", "--plot", str(tmp_path / "p.png"), "--chase", "3"])
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert "chase rpost" in capsys.readouterr().out


def test_chase_command(tmp_path, capsys):
    a, b = random_pair(tmp_path, 2000, spread=50, p_flip=0.5)
    assert main(["chase", str(a), str(b), "--table", "rtime", "--level", "ERROR", "--limit", "4"]) == 0
    assert "chase rtime all histories" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["compare", "/nonexistent/a", "/nonexistent/b"], "event folder does not exist"),
    (["compare", "/nonexistent/a"], "give both A_DIR and B_DIR"),
    (["chase", "A", "B", "--history", "TO XX"], None),
])
def test_input_errors_exit_64_with_a_message(tmp_path, capsys, argv, words):
    a, b = random_pair(tmp_path, 10)
    argv = [str(a) if x == "A" else str(b) if x == "B" else x for x in argv]
    assert main(argv) == EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "photonab: error:" in err and (words is None or words in err)


def test_bad_msli_in_cli(tmp_path, capsys):
    a, b = random_pair(tmp_path, 10)
    assert main(["compare", str(a), str(b), "--msli", "1:x"]) == EXIT_INPUT_ERROR
    assert "--msli '1:x'" in capsys.readouterr().err


def test_bad_option_value_exits_64(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--ox-cuts", "1,2"])
    assert exc.value.code == EXIT_INPUT_ERROR


def test_module_help():
    out = subprocess.run([sys.executable, "-m", "photonab", "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "compare" in out.stdout and "synth" in out.stdout


def test_synth_then_demo_cli(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), "--photons", "20k", "--no-progress", "--nan", "2"]) == 0
    assert (tmp_path / "s" / "evt" / "box" / "torch" / "-1" / "ox.npy").exists()
    rc = main(["demo", "--photons", "30k", "--cache", str(tmp_path / "cache"), "--no-progress", "--rows", "5"])
    out = capsys.readouterr().out
    assert "TO BT BT SA" in out and "summary:" in out
    assert rc == 0 and "exits with rc" in out  # faults injected on purpose; the demo worked
    assert "FATAL" in out
    # the second run reuses the cache
    mtime = (tmp_path / "cache" / demo_folder("", 30000).name / "evt" / "box" / "torch" / "1" / "rx.npy").stat().st_mtime
    main(["demo", "--photons", "30k", "--cache", str(tmp_path / "cache"), "--no-progress"])
    assert (tmp_path / "cache" / demo_folder("", 30000).name / "evt" / "box" / "torch" / "1" / "rx.npy").stat().st_mtime == mtime


def test_unwritable_reports_exit_64(tmp_path, capsys):
    a, b = random_pair(tmp_path, 100)
    assert main(["compare", str(a), str(b), "--no-progress", "--json", str(tmp_path / "no" / "r.json")]) == 64
    assert "cannot write the JSON report" in capsys.readouterr().err


def test_every_option_has_help_and_the_columns_are_explained():
    import argparse

    from photonab.cli import build_parser
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"compare", "demo", "synth", "run", "chase", "hist"} <= set(subs)
    for name, sub in subs.items():
        for action in sub._actions:
            assert action.help, (name, action.dest)
    for name in ("compare", "run", "chase"):
        for column in ("nitem", "ndisc", "fdisc", "nnan", "worst", "c2", "nstep"):
            assert column in subs[name].format_help(), (name, column)
    text = subs["compare"].format_help()
    assert "history 16" in text and "rpol 0x2" in text and "70 " in text
    # the shared options come from one parent parser each
    for option in ("--base", "--pfx", "--det", "--src", "--threads"):
        assert all(option in subs[n].format_help() for n in ("compare", "run", "chase")), option
    assert all("--no-progress" in subs[n].format_help() for n in ("compare", "run", "demo", "synth"))


def test_one_count_parser_for_msli_photons_and_limit():
    from photonab.cli import build_parser, count
    from photonab.counts import parse_count
    from photonab.events import parse_msli
    assert parse_count("100k") == 100_000 and parse_count("2.5M") == 2_500_000 and parse_count("1G") == 10**9
    assert parse_msli("1.5k:2M") == slice(1500, 2_000_000, None)
    for bad in ("1.5", "x", "-3", "1kk"):
        with pytest.raises(ValueError):
            parse_count(bad)
    assert count("20k") == 20_000
    args = build_parser().parse_args(["chase", "A", "B", "--limit", "2k"])
    assert args.limit == 2000 and args.func.__name__ == "cmd_chase"
    assert build_parser().parse_args(["synth", "out", "--photons", "1.5M"]).photons == 1_500_000


@pytest.mark.parametrize("argv", [["compare", "--threads", "0"], ["compare", "--c2max", "2,1,3"],
                                  ["synth", "x", "--photons", "0"], ["chase", "--limit", "x"]])
def test_bad_shared_option_values_exit_64(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_INPUT_ERROR


def test_c2max_option_sets_the_history_levels(tmp_path, capsys):
    a, b = random_pair(tmp_path, 3000)
    import numpy as np
    ph = np.load(a / "ph.npy")
    ph[:1500, 0, 0] = 0x4d  # half of A in one history B does not have
    np.save(a / "ph.npy", ph)
    assert main(["compare", str(a), str(b), "--no-progress", "--tables", "ox", "--ox-cuts", "10,20,30"]) == 16
    assert main(["compare", str(a), str(b), "--no-progress", "--tables", "ox", "--ox-cuts", "10,20,30",
                 "--c2max", "1e9,1e9,1e9"]) == 16  # still a dropout
    out = capsys.readouterr().out
    assert "dropout" in out and "level ERROR" in out


# ---------------------------------------------------------------- start-up (issue 12)
# Behaviour, not timing: what building the parser loads. `python -m profiles.run process`
# times the start-up (docs/kernels.md, "Start-up and the whole process").


def test_parser_constants_equal_their_originals():
    from photonab import aligned, analysis, cli, cli_sevt, cuts, distributions, engines, qcf
    assert cli.TABLES == cuts.TABLES and cli.LEVELS == cuts.LEVELS and cli.OX_CUTS == cuts.OX_CUTS
    assert cli.ENGINES == engines.ENGINES and cli.ALL_ENGINES == engines.ALL_ENGINES
    assert cli.ALIGNED_TABLES == aligned.TABLES and cli.ORDER_CHOICES == analysis.ORDERS
    assert cli.QUANTITIES == tuple(distributions.QUANTITIES)
    assert cli_sevt.C2CUT == qcf.C2CUT and cli_sevt.RULES == qcf.RULES


#: what --help must not load: the optional heavy packages, numpy, the kernels, and the
#: photonab modules whose constants the parser once imported
HELP_UNLOADED = ("scipy", "matplotlib", "tqdm", "dask", "distributed", "numpy", "cyext", "photonab.aligned",
                 "photonab.qcf", "photonab.distributions", "photonab.events", "photonab.cuts",
                 "photonab.engines", "photonab.comparison")


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"], ["chase", "--help"], ["hist", "--help"],
                                  ["run", "--help"], ["synth", "--help"]])
def test_help_loads_only_the_parser(argv):
    # the console entry's main in a fresh interpreter, then what it left in sys.modules
    code = ("import sys\nfrom photonab.__main__ import main\nsys.argv = ['photonab', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
            f"print('LOADED', sorted(m for m in {HELP_UNLOADED!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage: photonab" in out.stdout
    assert out.stdout.splitlines()[-1] == "LOADED []"


def _console(argv, prelude=""):
    """``python -m photonab ARGV`` through the console entry, stdout a block-buffered pipe."""
    code = (f"import sys\n{prelude}\nfrom photonab.__main__ import main\n"
            "sys.argv = ['photonab', *sys.argv[1:]]\nsys.exit(main())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)


def test_console_exit_keeps_all_output(tmp_path, capsys):
    # the console entry ends with os._exit after a finished command: nothing written may be lost
    a, b = random_pair(tmp_path, 3000, spread=50, p_flip=0.5)
    argv = ["compare", str(a), str(b), "--no-progress", "--rows", "-1", "--hist-rows", "-1"]
    rc = main(argv + ["--json", str(tmp_path / "in.json")])
    want = capsys.readouterr().out
    out = _console(argv + ["--json", str(tmp_path / "out.json")], "import atexit; atexit.register(print, 'ATEXIT')")
    assert out.returncode == rc and rc & 1
    assert out.stdout == want and f"wrote {tmp_path / 'out.json'}" in out.stderr
    mine, theirs = (json.loads((tmp_path / n).read_text()) for n in ("in.json", "out.json"))
    assert {k: v for k, v in mine.items() if k != "seconds"} == {k: v for k, v in theirs.items() if k != "seconds"}
    assert "ATEXIT" not in out.stdout  # the teardown was skipped


def test_console_exit_is_the_normal_one_under_a_tracer(tmp_path):
    # coverage and profilers write their data at the normal exit
    a, b = random_pair(tmp_path, 500)
    out = _console(["compare", str(a), str(b), "--no-progress"],
                   "import atexit; atexit.register(print, 'ATEXIT'); sys.settrace(lambda *args: None)")
    assert out.returncode in range(32) and "summary:" in out.stdout
    assert out.stdout.rstrip().endswith("ATEXIT")
