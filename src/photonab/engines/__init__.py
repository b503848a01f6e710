"""Engines: ways to compute the same comparison, selectable by name.

- ``cython``: the compiled one-pass kernels of :mod:`cyext` (default)
- ``numpy``: the 2019 fix, deviate everything with full-array temporaries, then
  ``np.where`` per history row
- ``select``: the original per-selection algorithm, a boolean mask over all photons and
  a re-selection of every per-photon array per history row
- ``dask``: the compiled kernels as chunk tasks on a dask cluster (optional extra)

Every engine returns the same :class:`HistoryCounts` and :class:`DeviationAggregate`
for the same input (docs/event-format.md, section 5, "Exactness").
"""
from __future__ import annotations

from .base import DeviationAggregate, Engine, HistoryCounts

#: the engines that run in this process
ENGINES = ("cython", "numpy", "select")
#: every engine :func:`get_engine` knows
ALL_ENGINES = ENGINES + ("dask",)


def get_engine(name: str, **options):
    """Engine instance by name; options (e.g. ``n_threads``) go to its constructor."""
    from ..errors import InputError
    if not isinstance(name, str):
        raise InputError(f"engine must be a name ({', '.join(ALL_ENGINES)}) or an engine object, "
                         f"not {type(name).__name__} {name!r}")
    if name == "cython":
        from .compiled import CythonEngine
        return CythonEngine(**options)
    if name == "numpy":
        from .vectorised import NumpyEngine
        return NumpyEngine(**options)
    if name == "select":
        from .selection import SelectEngine
        return SelectEngine(**options)
    if name == "dask":
        from .distributed import DaskEngine
        return DaskEngine(**options)
    raise InputError(f"unknown engine {name!r}; choose one of {', '.join(ALL_ENGINES)}")


__all__ = ["ENGINES", "ALL_ENGINES", "get_engine", "Engine", "HistoryCounts", "DeviationAggregate"]
