# cython: language_level=3
"""cyext: compiled one-pass kernels for photon A/B comparison.

Kernels read the raw event arrays (seqhis codes, int16 step records, float32 final
photons) through ``const`` typed memoryviews, so read-only memory maps are used in
place, never copied. Each kernel works on a photon range ``[start, stop)``, runs
without the GIL over OpenMP threads, and writes per-part partial tables that merge
exactly (integer counts, integer deviations, max/min with the lowest photon index on
ties, float sums in a fixed block order), so the result never depends on the thread
count or on how callers chunk the photons.

No I/O, no printing, no policy here: the ``photonab`` package decides what to
compute and how to show it.
"""
cimport cython
from cpython.ref cimport PyObject
from cython.parallel cimport prange
from libc.stdint cimport INT32_MAX, INT32_MIN, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint64_t, uintptr_t
from libc.math cimport fabs, isnan, INFINITY
from libc.string cimport memcpy, memset

import numpy as np

include "_threads.pxi"
include "_grouping.pxi"
include "_sorting.pxi"
include "_histories.pxi"
include "_records.pxi"
include "_finals.pxi"
include "_deviations.pxi"
include "_chase.pxi"
include "_floor.pxi"
include "_migration.pxi"
include "_onepass.pxi"
include "_history128.pxi"
include "_guard.pxi"
include "_aligned.pxi"
