"""Build the compiled kernels of ``cyext``.

``cyext`` is one extension module (``cyext/cyext.pyx`` plus the kernel families it
includes). It is built with ``-O3`` and with OpenMP when the compiler accepts
``-fopenmp``; without OpenMP it still builds and runs serially, and
``cyext.openmp_enabled()`` says which build it is.

Environment:
  CYEXT_DEBUG=1    bounds checks and assertions on (slow; for chasing kernel bugs)
  CYEXT_OPENMP=0   build without OpenMP even when the compiler has it
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("CYEXT_DEBUG", "0") == "1"
OPENMP_PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"


def compiler_has_openmp(compiler) -> bool:
    """True when this compiler compiles and links a tiny OpenMP program."""
    if os.environ.get("CYEXT_OPENMP", "1") == "0":
        return False
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(OPENMP_PROBE)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
        compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=["-fopenmp"])
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExtWithOptionalOpenMP(build_ext):
    def build_extensions(self):
        openmp = compiler_has_openmp(self.compiler)
        print(f"cyext: building {'with' if openmp else 'WITHOUT'} OpenMP", file=sys.stderr)
        for ext in self.extensions:
            if openmp:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args.append("-fopenmp")
        super().build_extensions()


directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

extensions = [
    Extension(
        "cyext",
        ["cyext/cyext.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
        extra_link_args=[],
    )
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives, annotate=False),
    cmdclass={"build_ext": BuildExtWithOptionalOpenMP},
)
