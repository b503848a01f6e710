"""Build the compiled kernels of ``cyext``.

``cyext`` is one top-level extension module (``cyext/cyext.pyx`` plus the kernel
families it includes). It is built optimised (``-O3``, MSVC ``/O2``) and with OpenMP when
the compiler has it; the probe tries, in order, GCC/Clang ``-fopenmp``, Apple Clang with
Homebrew's libomp (``-Xpreprocessor -fopenmp -lomp``) and MSVC ``/openmp``. Without
OpenMP the build still succeeds, says so, and the kernels run serially
(``cyext.openmp_enabled()`` tells which build is installed).

The type stub ``cyext/cyext.pyi`` is installed twice from the one source: as
``cyext.pyi`` beside the extension (IDEs, pyright) and as the PEP 561 stub-only package
``cyext-stubs/__init__.pyi`` (mypy finds stubs of a top-level module only that way).

Environment:
  CYEXT_DEBUG=1    bounds checks and assertions on (slow; for chasing kernel bugs)
  CYEXT_OPENMP=0   build without OpenMP even when the compiler has it
  CYEXT_SIMD=0     take the portable scalar record loop instead of SSE2 (for tests)
"""
import os
import shutil
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

DEBUG = os.environ.get("CYEXT_DEBUG", "0") == "1"
OPENMP_PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
STUB = os.path.join("cyext", "cyext.pyi")


def _homebrew_libomp() -> list[str]:
    """Prefixes of Homebrew's libomp (keg-only, so not on the default search paths)."""
    found = [os.environ["LIBOMP_PREFIX"]] if os.environ.get("LIBOMP_PREFIX") else []
    found += [p for p in ("/opt/homebrew/opt/libomp", "/usr/local/opt/libomp") if os.path.isdir(p)]
    return found


def openmp_candidates(compiler_type: str) -> list[tuple[str, list[str], list[str]]]:
    """(name, compile args, link args) to try, most common first."""
    if compiler_type == "msvc":
        return [("/openmp", ["/openmp"], [])]
    out = [("-fopenmp", ["-fopenmp"], ["-fopenmp"])]
    for prefix in _homebrew_libomp() or [None]:
        inc = [f"-I{prefix}/include"] if prefix else []
        lib = [f"-L{prefix}/lib"] if prefix else []
        out.append((f"-Xpreprocessor -fopenmp -lomp{' (' + prefix + ')' if prefix else ''}",
                    ["-Xpreprocessor", "-fopenmp", *inc], [*lib, "-lomp"]))
    return out


def _compiles_and_links(compiler, compile_args: list[str], link_args: list[str]) -> bool:
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(OPENMP_PROBE)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=compile_args)
        compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=link_args)
        return True
    except Exception:  # CompileError, LinkError, or a compiler that is not there
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find_openmp(compiler):
    """The first (name, compile args, link args) this compiler builds an OpenMP program
    with, or None (also when CYEXT_OPENMP=0)."""
    if os.environ.get("CYEXT_OPENMP", "1") == "0":
        return None
    for candidate in openmp_candidates(compiler.compiler_type):
        if _compiles_and_links(compiler, candidate[1], candidate[2]):
            return candidate
    return None


def optimisation_args(compiler_type: str) -> list[str]:
    if compiler_type == "msvc":
        return ["/Od", "/Zi"] if DEBUG else ["/O2"]
    return ["-O0", "-g"] if DEBUG else ["-O3"]


class BuildExtWithOptionalOpenMP(build_ext):
    def build_extensions(self):
        kind = self.compiler.compiler_type
        openmp = find_openmp(self.compiler)
        if openmp:
            print(f"cyext: building with OpenMP ({openmp[0]})", file=sys.stderr)
        else:
            tried = "; ".join(c[0] for c in openmp_candidates(kind))
            why = "CYEXT_OPENMP=0" if os.environ.get("CYEXT_OPENMP", "1") == "0" else f"the compiler has none (tried {tried})"
            print(f"cyext: building WITHOUT OpenMP: {why}; the kernels run on one thread "
                  "and cyext.openmp_enabled() is False", file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args += optimisation_args(kind) + (openmp[1] if openmp else [])
            ext.extra_link_args += openmp[2] if openmp else []
        super().build_extensions()


class BuildPyWithStub(build_py):
    """Also put the cyext stub into the built tree: ``cyext.pyi`` and ``cyext-stubs/__init__.pyi``."""

    def stub_targets(self) -> list[str]:
        return [os.path.join(self.build_lib, "cyext.pyi"), os.path.join(self.build_lib, "cyext-stubs", "__init__.pyi")]

    def run(self):
        super().run()
        for target in self.stub_targets():
            self.mkpath(os.path.dirname(target))
            self.copy_file(STUB, target, preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + self.stub_targets()

    def get_source_files(self):
        return super().get_source_files() + [STUB]


directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
    # the kernels' classes hold memoryviews and raw tables: nothing to pickle, so no
    # generated pickling methods (and no doctest dict) for the stub to mirror
    "auto_pickle": False,
    "autotestdict": False,
}

macros = [("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")]
if os.environ.get("CYEXT_SIMD", "1") == "0":
    macros.append(("CYEXT_NO_SIMD", "1"))

extensions = [
    Extension(
        "cyext",
        ["cyext/cyext.pyx"],
        include_dirs=[np.get_include()],
        define_macros=macros,
    )
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives, annotate=False),
    cmdclass={"build_ext": BuildExtWithOptionalOpenMP, "build_py": BuildPyWithStub},
)
