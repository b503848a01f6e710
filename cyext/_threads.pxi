# ------------------------------------------------------------------ threads
# The OpenMP calls sit behind #ifdef so that the module builds (serially) without it.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int cyext_openmp_enabled(void) { return 1; }
    static int cyext_max_threads(void) { return omp_get_max_threads(); }
    static int cyext_thread_id(void) { return omp_get_thread_num(); }
    #else
    static int cyext_openmp_enabled(void) { return 0; }
    static int cyext_max_threads(void) { return 1; }
    static int cyext_thread_id(void) { return 0; }
    #endif
    """
    int cyext_openmp_enabled() nogil
    int cyext_max_threads() nogil
    int cyext_thread_id() nogil


def openmp_enabled():
    """True when this build of cyext runs its kernels on OpenMP threads."""
    return bool(cyext_openmp_enabled())


def max_threads():
    """Threads a kernel uses by default: OpenMP's maximum (honours OMP_NUM_THREADS), 1 without OpenMP."""
    return cyext_max_threads()


def effective_threads(n_threads=None):
    """The number of threads a kernel will use for an ``n_threads`` argument.

    None  all of them: ``max_threads()``, i.e. OpenMP's maximum, which honours
          ``OMP_NUM_THREADS`` and a ``threadpoolctl`` limit
    -1    all of them as well; -2 all but one, -k all but k-1 (never fewer than 1),
          as in scikit-learn and joblib
    k > 0 exactly k threads (more than the cores is allowed, and slower)
    0     an error (ValueError), as in scikit-learn: "no threads" means nothing

    A build without OpenMP always gives 1 (after checking the argument).
    """
    if n_threads is None:
        n = None
    else:
        n = int(n_threads)
        if n == 0:
            raise ValueError("n_threads = 0 is invalid: use None or -1 for all threads, k > 0 for k")
    if not cyext_openmp_enabled():
        return 1
    top = cyext_max_threads()
    if n is None:
        return top
    if n < 0:
        return max(1, top + 1 + n)
    return n


# Kernels hand out photons in blocks of WORK_BLOCK to whichever thread is free
# (dynamic schedule), so a thread that the OS deschedules on a shared machine does not
# hold the others up. Each thread accumulates into its own partial table (indexed by
# its OpenMP thread number); partials merge by integer addition, max/min with the
# lowest photon index on ties, so the result does not depend on who did which block.
cdef Py_ssize_t WORK_BLOCK = 1 << 12


cdef inline Py_ssize_t _n_blocks(Py_ssize_t start, Py_ssize_t stop, Py_ssize_t block) noexcept nogil:
    return (stop - start + block - 1) // block


cdef enum:
    _TOUCH_ROWS = 1 << 14  # rows of a new table a thread writes first at a time


cdef int _touch_threads(Py_ssize_t rows, n_threads) except -1:
    """Threads that write a new table of ``rows`` rows first: the kernel zeroes each
    fresh page in the thread that first writes it, and with a million histories that
    zeroing costs as much as the rows' own work, so many rows are shared out."""
    return effective_threads(n_threads) if rows >= 4 * _TOUCH_ROWS else 1


cdef object _line_aligned_empty(tuple shape, dtype):
    """np.empty(shape, dtype) starting on a 64-byte cache line (malloc gives 16 bytes): a
    table's rows of 64 or 128 bytes then span 1 or 2 lines each, not 2 or 3, which counts
    when a million histories' rows are visited at random."""
    dtype = np.dtype(dtype)
    cdef Py_ssize_t n = dtype.itemsize
    for k in shape:
        n *= k
    raw = np.empty(n + 64, dtype=np.uint8)
    cdef Py_ssize_t off = (-raw.ctypes.data) % 64
    return raw[off:off + n].view(dtype).reshape(shape)
