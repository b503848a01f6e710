"""Engines: three ways to compute the same comparison, selectable by name.

- ``cython``: the compiled one-pass kernels of :mod:`cyext` (default)
- ``numpy``: the 2019 fix, deviate everything with full-array temporaries, then
  ``np.where`` per history row
- ``select``: the original per-selection algorithm, a boolean mask over all photons and
  a re-selection of every per-photon array per history row

Every engine returns the same :class:`HistoryCounts` and :class:`DeviationAggregate`
for the same input (docs/event-format.md, section 5, "Exactness").
"""
from __future__ import annotations

from .base import DeviationAggregate, HistoryCounts

ENGINES = ("cython", "numpy", "select")


def get_engine(name: str, **options):
    """Engine instance by name; options (e.g. ``n_threads``) go to its constructor."""
    from ..errors import InputError
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
    raise InputError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "get_engine", "HistoryCounts", "DeviationAggregate"]
