"""The compiled kernels module ``cyext``, found once for the whole package.

``cyext`` is a top-level extension module built with photonab. It also defines the
constants that Python and the kernels must agree on (``RECORD_TABLES``, ``SUM_BLOCK``,
``RECORD_MIN_START``, ``CHASE_TABLES``, the row dtypes): photonab imports them from
there instead of keeping copies.
"""
from __future__ import annotations

import os

from .errors import InputError

# OpenMP threads that wait at the end of a parallel region sleep instead of spinning:
# on a shared machine a spinning thread takes the core a descheduled worker needs, and
# two threads ran slower than one (docs/kernels.md, "Threads on a loaded machine").
# libgomp reads this once, when it is loaded with cyext, so it is set before the import;
# a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load():
    """The compiled extension, or a clear error when only its sources are reachable."""
    try:
        import cyext
    except ImportError:
        cyext = None
    if not hasattr(cyext, "effective_threads"):  # None, or the namespace of the source folder
        raise InputError("the compiled module 'cyext' is not installed (or the source folder "
                         "shadows it); install the project with `pip install .`")
    return cyext
