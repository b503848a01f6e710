"""The installed project: a compiled cyext (not the source folder) and photonab."""
import importlib.machinery
import subprocess
import sys

import pytest

from conftest import REPO


def test_cyext_is_compiled(cyext):
    assert cyext.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), cyext.__file__
    assert isinstance(cyext.openmp_enabled(), bool)
    assert cyext.max_threads() >= 1
    assert cyext.effective_threads(1) == 1


def test_cyext_from_repository_root_is_the_compiled_module():
    # Python started in the repository root sees the source folder cyext/ first; it has
    # no __init__.py, so the installed extension module must still win.
    out = subprocess.run([sys.executable, "-c", "import cyext, photonab; print(cyext.__file__); "
                          "print(cyext.openmp_enabled())"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    path = out.stdout.splitlines()[0]
    assert path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), path


def test_harness_package_imports_compiled_cyext():
    out = subprocess.run([sys.executable, "-c", "import profiles, cyext; print(cyext.__file__)"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_openmp_build_says_which(cyext):
    if cyext.openmp_enabled():
        assert cyext.effective_threads(None) == cyext.max_threads()
    else:
        assert cyext.effective_threads(8) == 1


@pytest.mark.slow
def test_builds_and_runs_without_openmp(tmp_path):
    """CYEXT_OPENMP=0 builds a serial cyext that says so and gives the same counts; with
    CYEXT_SIMD=0 too, so that the portable scalar loops meet the hand-made deviations and
    the SIMD tests' references."""
    import os
    import shutil
    src = tmp_path / "src"
    shutil.copytree(REPO / "cyext", src / "cyext", ignore=shutil.ignore_patterns("*.c", "*.so"))
    shutil.copy(REPO / "setup.py", src / "setup.py")
    (src / "README.md").write_text("")
    env = dict(os.environ, CYEXT_OPENMP="0", CYEXT_SIMD="0")
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
                            "--build-temp", str(tmp_path / "tmp")], cwd=src, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    assert "building WITHOUT OpenMP" in build.stderr
    script = ("import cyext, numpy as np; assert not cyext.openmp_enabled(); assert cyext.effective_threads(4) == 1; "
              "assert cyext.simd_path() == 'scalar'; "
              "c = cyext.HistoryCounter(); s = np.arange(1000, dtype=np.uint64) % 7; c.add(s, s, 0, 1000, 4); "
              "print(sorted(c.result()[1][:, 0].tolist())); "
              f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); "
              "from conftest import hand_records, kernel_record_deviations; a, b, want = hand_records(); "
              "assert (kernel_record_deviations(cyext, a, b, 2) == want).all()")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path / "lib")))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(sorted([143] * 6 + [142]))
    # the scalar loops meet the same references as the SIMD paths (test_kernels, "SIMD paths")
    simd = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(REPO / "tests" / "test_kernels.py"), "-k", "simd and not simd_paths_agree"],
                          cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(tmp_path / "lib")))
    assert simd.returncode == 0, simd.stdout[-3000:] + simd.stderr[-2000:]


def test_missing_compiled_module_is_a_clear_error(monkeypatch):
    from photonab import InputError
    from photonab.engines.compiled import import_cyext
    monkeypatch.setitem(sys.modules, "cyext", None)  # import cyext now raises ImportError
    with pytest.raises(InputError, match="pip install ."):
        import_cyext()


# Start-up (issue 12): the heavy modules load only when used. A behaviour test (what is in
# sys.modules), not a timing test; `python -m profiles.run process` times the start-up.
HEAVY_MODULES = ("scipy", "matplotlib", "tqdm", "dask", "distributed")
_LOADED = ("import sys; print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & set(%r)))"
           % (HEAVY_MODULES,))


def _heavy_loaded(code):
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY ")][-1]
    return line[len("HEAVY "):]


def test_import_loads_no_heavy_module():
    assert _heavy_loaded("import photonab, cyext; " + _LOADED) == "[]"


def test_help_loads_no_heavy_module():
    # python -m photonab --help, run in this interpreter so that sys.modules can be read after it
    code = ("import runpy, sys; sys.argv = ['photonab', '--help']\n"
            "try:\n    runpy.run_module('photonab', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n" + _LOADED)
    assert _heavy_loaded(code) == "[]"


#: what `from photonab import compare` leaves to the comparison itself (issue 12): the
#: engines, the events (pathlib, mmap, signal handlers), the chase and the analysis tables
#: load when compare() runs; only the cuts and tables of compare's defaults load with it
COMPARE_UNLOADED = ("photonab.engines", "photonab.events", "photonab.interrupt", "photonab.chase",
                    "photonab.analysis", "photonab.patterns", "photonab.materials", "photonab.migration",
                    "photonab.render", "photonab.runs")


@pytest.mark.parametrize("statement", ["from photonab import compare", "from photonab.comparison import compare",
                                       "import photonab, cyext; photonab.compare"])
def test_compare_import_leaves_the_run_to_the_call(statement):
    code = (f"import sys; {statement}\n"
            f"print('LOADED', sorted(m for m in sys.modules if m.startswith({COMPARE_UNLOADED!r})))\n" + _LOADED)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[-2] == "LOADED []" and lines[-1] == "HEAVY []", out.stdout


def test_compare_loads_what_it_left_out(tmp_path):
    # the names imported where used resolve when a comparison runs, in a fresh interpreter
    from photonab.synth import synthesize
    a, b = synthesize(tmp_path, photons=2000, seed=3, progress=False)
    code = ("import sys; from photonab import compare\n"
            "from photonab import EventPair\n"
            "r = compare(EventPair.open(sys.argv[1], sys.argv[2]))\n"
            "print(r.engine, type(r.runner).__name__, len(r.chase('rpost', limit=2)) <= 2)\n")
    out = subprocess.run([sys.executable, "-c", code, str(a), str(b)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["cython", "CythonEngine", "True"]
