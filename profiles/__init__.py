"""The profiling harness of photonab: ``python -m profiles.run`` from the repository root.

It times the three engines (``select``, the 2019 per-selection algorithm; ``numpy``,
the 2019 fix; ``cython``, the compiled kernels) against a read floor measured in the
same run, profiles them with cProfile and line_profiler, measures their memory
honestly (heap, anonymous and file-backed pages apart), checks the time/floor ratios
against a baseline, and draws the results. Every measurement runs in a fresh process.

Modules, one role each:

- ``run``: the command line, runs the cases and writes the reports
- ``case``: one measurement in a fresh process (``python -m profiles.case``), prints JSON
- ``pairs``: synthetic A/B pairs, generated once into a cache folder
- ``peers``: numba, polars, pandas implementations of the rpost table (``--peers``)
- ``streaming``, ``scaling``: also ``python -m profiles.run streaming|scaling``
- ``sevt``: the SEvt history comparison (QCF) against the old way qcf.py
  (``python -m profiles.run sevt``)
- ``timing``: repeats of a comparison beside the read floor
- ``memory``: heap (tracemalloc), anonymous and file-backed RSS, memory_profiler's RSS
- ``callprofile``: cProfile reports sorted by internal time
- ``lineprofile``: line_profiler reports of the Python-level hot functions
- ``regression``: time/floor ratios against a baseline (also ``python -m profiles.regression``)
- ``targets``: the performance targets of the compiled engine
- ``summary``: the text summary; ``figures``: the PNG pictures; ``machine``: machine info
"""
