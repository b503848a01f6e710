# ------------------------------------------------------------------ read floor
# The benchmark's floor: read the same bytes a comparison reads, once, in a compiled
# nogil loop on all threads, and do nothing else with them.

def read_floor(const uint64_t[::1] words, n_threads=None):
    """Sum of the 64-bit words (wrapping): forces every byte to be read. Pass a flat
    ``uint64`` view of a C-contiguous array (``arr.reshape(-1).view(np.uint64)``)."""
    cdef Py_ssize_t i, n = words.shape[0]
    cdef uint64_t total = 0
    cdef int nthreads = effective_threads(n_threads)
    with nogil:
        # dynamic like the kernels, so a thread that loses its core does not hold the floor up
        for i in prange(n, schedule="dynamic", chunksize=1 << 15, num_threads=nthreads):
            total += words[i]
    return total
