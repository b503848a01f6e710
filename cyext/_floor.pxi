# ------------------------------------------------------------------ read floor
# The benchmark's floor: read the same bytes a comparison reads, once, in a compiled
# nogil loop on all threads, and do nothing else with them. It reads as the deviation
# pass does (software prefetch ahead of the hardware's, docs/kernels.md "Prefetch"): a
# floor that reads slower than a pass doing more with the same bytes is no floor.

cdef extern from *:
    """
    /* wrapping sum of w[0:n], four lanes (vectorisable), prefetching 1 KiB ahead */
    static uint64_t cyext_floor_sum(const uint64_t *w, ptrdiff_t n) {
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        ptrdiff_t i = 0;
        for (; i + 8 <= n; i += 8) {
            CYEXT_PREFETCH(w + i + 128);
            s0 += w[i] + w[i + 4];
            s1 += w[i + 1] + w[i + 5];
            s2 += w[i + 2] + w[i + 6];
            s3 += w[i + 3] + w[i + 7];
        }
        for (; i < n; i++) s0 += w[i];
        return s0 + s1 + s2 + s3;
    }
    """
    uint64_t _floor_sum "cyext_floor_sum"(const uint64_t* w, Py_ssize_t n) noexcept nogil


cdef enum:
    _FLOOR_CHUNK = 1 << 15  # words a thread takes at a time (256 KiB)


def read_floor(const uint64_t[::1] words, n_threads=None):
    """Sum of the 64-bit words (wrapping): forces every byte to be read. Pass a flat
    ``uint64`` view of a C-contiguous array (``arr.reshape(-1).view(np.uint64)``)."""
    cdef Py_ssize_t k, n = words.shape[0], nchunks = (n + _FLOOR_CHUNK - 1) // _FLOOR_CHUNK
    cdef uint64_t total = 0
    cdef int nthreads = effective_threads(n_threads)
    if n == 0:
        return 0
    with nogil:
        # dynamic like the kernels, so a thread that loses its core does not hold the floor up
        for k in prange(nchunks, schedule="dynamic", num_threads=nthreads):
            total += _floor_sum(&words[k * _FLOOR_CHUNK], min(<Py_ssize_t>_FLOOR_CHUNK, n - k * _FLOOR_CHUNK))
    return total
