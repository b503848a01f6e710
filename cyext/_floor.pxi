# ------------------------------------------------------------------ read floor
# The benchmark's floor: read the same bytes a comparison reads, once, in a compiled
# nogil loop on all threads, and do nothing else with them (docs/kernels.md, "The read
# floor"). It reads them as fast as we know how to: photon by photon across every array
# (as the deviation pass does, every array's stream in flight at once), the rows of the
# photon 16 ahead prefetched, with the vector loads of the SIMD path in use. A floor
# that reads slower than a pass doing more with the same bytes is no floor.

cdef extern from *:
    """
    #define CYEXT_FLOOR_MAX 8    /* arrays read together */
    #define CYEXT_FLOOR_AHEAD 16 /* photons ahead whose rows are asked for */
    typedef struct {
        const char *base[CYEXT_FLOOR_MAX];
        ptrdiff_t row[CYEXT_FLOOR_MAX];  /* bytes a photon, a multiple of 8 */
        int n;
        ptrdiff_t unit;  /* photons a step, a power of two */
    } cyext_floor_rows;

    /* every line of the rows of photons [I, I + U) into the cache (the caller stops
       AHEAD short of the block end: no hint past an array's end) */
    #define CYEXT_FLOOR_PREFETCH(R, I, U)                                                  \\
        for (int k_ = 0; k_ < (R)->n; k_++) {                                              \\
            const char *p_ = (R)->base[k_] + (I) * (R)->row[k_];                           \\
            const char *q_ = p_ + (U) * (R)->row[k_];                                      \\
            for (p_ -= (uintptr_t)p_ & 63; p_ < q_; p_ += 64) CYEXT_PREFETCH(p_);          \\
        }

    /* the wrapping sum of the 64-bit words of photons [s, e) of every array; one body,
       compiled once per path with its vector type and load. Each array is read in whole
       vectors as the photons reach them (``at[k]``: its first byte not read yet), so a
       row narrower than a vector (ph: 16 bytes) costs a load every few photons, not one
       loop a photon; the bytes left at the block's end are read after it. */
    #define CYEXT_FLOOR_FN(NAME, ATTR, VEC, WIDTH, LOAD, ADD, ZERO, REDUCE)                \\
    static ATTR uint64_t NAME(const cyext_floor_rows *r, ptrdiff_t s, ptrdiff_t e) {       \\
        VEC v0 = ZERO, v1 = ZERO;                                                          \\
        uint64_t w = 0;                                                                    \\
        const char *at[CYEXT_FLOOR_MAX];                                                   \\
        for (int k = 0; k < r->n; k++) at[k] = r->base[k] + s * r->row[k];                 \\
        const ptrdiff_t u = r->unit;                                                       \\
        for (ptrdiff_t i = s; i < e; i += u) {                                             \\
            ptrdiff_t next = i + u < e ? i + u : e;                                        \\
            if (next + CYEXT_FLOOR_AHEAD <= e) CYEXT_FLOOR_PREFETCH(r, i + CYEXT_FLOOR_AHEAD, next - i) \\
            for (int k = 0; k < r->n; k++) {                                               \\
                const char *p = at[k], *upto = r->base[k] + next * r->row[k];              \\
                for (; p + 2 * (WIDTH) <= upto; p += 2 * (WIDTH)) {                        \\
                    v0 = ADD(v0, LOAD(p)); v1 = ADD(v1, LOAD(p + (WIDTH)));                \\
                }                                                                          \\
                for (; p + (WIDTH) <= upto; p += (WIDTH)) v0 = ADD(v0, LOAD(p));           \\
                at[k] = p;                                                                 \\
            }                                                                              \\
        }                                                                                  \\
        for (int k = 0; k < r->n; k++) {  /* less than a vector of each row left */        \\
            const char *p = at[k], *upto = r->base[k] + e * r->row[k];                     \\
            for (; p < upto; p += 8) { uint64_t x; memcpy(&x, p, 8); w += x; }             \\
        }                                                                                  \\
        return w + REDUCE(ADD(v0, v1));                                                    \\
    }

    /* the portable form: two 64-bit words at a time */
    typedef struct { uint64_t a, b; } cyext_floor_u2;
    CYEXT_INLINE cyext_floor_u2 cyext_floor_load2(const char *p) {
        cyext_floor_u2 x; memcpy(&x.a, p, 8); memcpy(&x.b, p + 8, 8); return x; }
    CYEXT_INLINE cyext_floor_u2 cyext_floor_add2(cyext_floor_u2 x, cyext_floor_u2 y) {
        x.a += y.a; x.b += y.b; return x; }
    CYEXT_INLINE uint64_t cyext_floor_reduce2(cyext_floor_u2 x) { return x.a + x.b; }
    static const cyext_floor_u2 cyext_floor_zero2 = {0, 0};
    CYEXT_FLOOR_FN(cyext_floor_block_scalar, , cyext_floor_u2, 16, cyext_floor_load2, cyext_floor_add2,
                   cyext_floor_zero2, cyext_floor_reduce2)

    #if defined(CYEXT_AVX2)
    CYEXT_AVX2_INLINE __m256i cyext_floor_load256(const char *p) { return _mm256_loadu_si256((const __m256i *)p); }
    CYEXT_AVX2_INLINE uint64_t cyext_floor_reduce256(__m256i v) {
        __m128i x = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        return (uint64_t)_mm_cvtsi128_si64(x) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(x, x)); }
    CYEXT_FLOOR_FN(cyext_floor_block_avx2, CYEXT_AVX2_FN, __m256i, 32, cyext_floor_load256, _mm256_add_epi64,
                   _mm256_setzero_si256(), cyext_floor_reduce256)
    CYEXT_AVX512_INLINE __m512i cyext_floor_load512(const char *p) { return _mm512_loadu_si512((const void *)p); }
    CYEXT_FLOOR_FN(cyext_floor_block_avx512, CYEXT_AVX512_FN, __m512i, 64, cyext_floor_load512, _mm512_add_epi64,
                   _mm512_setzero_si512(), _mm512_reduce_add_epi64)
    #endif

    /* the path in use (cyext_isa: the widest the CPU has unless CYEXT_ISA capped it) */
    static uint64_t cyext_floor_block(const cyext_floor_rows *r, ptrdiff_t s, ptrdiff_t e) {
    #if defined(CYEXT_AVX2)
        if (cyext_isa == 3) return cyext_floor_block_avx512(r, s, e);
        if (cyext_isa == 2) return cyext_floor_block_avx2(r, s, e);
    #endif
        return cyext_floor_block_scalar(r, s, e);
    }
    """
    enum:
        CYEXT_FLOOR_MAX
    ctypedef struct cyext_floor_rows:
        const char* base[CYEXT_FLOOR_MAX]
        Py_ssize_t row[CYEXT_FLOOR_MAX]
        int n
        Py_ssize_t unit
    uint64_t _floor_block "cyext_floor_block"(const cyext_floor_rows* r, Py_ssize_t s, Py_ssize_t e) noexcept nogil


cdef enum:
    _FLOOR_BLOCK = 1 << 12  # photons a thread takes at a time


#: arrays one read_floor call reads together
FLOOR_MAX_ARRAYS = CYEXT_FLOOR_MAX


def read_floor(arrays, n_threads=None):
    """The wrapping sum of the 64-bit words of ``arrays`` (C-contiguous arrays of the same
    length, e.g. ph, rx and ox of A and B; at most FLOOR_MAX_ARRAYS, each row a multiple
    of 8 bytes): forces every byte to be read, photon by photon across the arrays."""
    cdef cyext_floor_rows r
    arrays = list(arrays)
    if not 1 <= len(arrays) <= CYEXT_FLOOR_MAX:
        raise ValueError(f"read_floor: 1 to {CYEXT_FLOOR_MAX} arrays, not {len(arrays)}")
    cdef Py_ssize_t n = len(arrays[0]) if np.ndim(arrays[0]) else 0
    cdef const uint8_t[::1] raw
    keep = []  # the byte views, alive while the loop reads them
    r.n = 0
    for k, a in enumerate(arrays):
        if not isinstance(a, np.ndarray) or a.ndim == 0 or len(a) != n or not a.flags.c_contiguous:
            raise ValueError(f"read_floor: array {k} is not a C-contiguous array of {n} rows")
        row = a.nbytes // n if n else 0  # a C-contiguous array of n rows: nbytes = n x row
        if row % 8:
            raise ValueError(f"read_floor: array {k}'s rows are not a multiple of 8 bytes")
        if row == 0:
            continue  # no photons, or rows of no bytes: nothing to read
        flat = a.reshape(-1).view(np.uint8)
        keep.append(flat)
        raw = flat
        r.base[r.n] = <const char*>&raw[0]
        r.row[r.n] = row
        r.n += 1
    if r.n == 0:
        return 0
    # photons a step: 256 bytes at least (a step a photon of the 32-byte SEvt seq rows
    # costs more loop than reading; the 2019 arrays, 480 bytes a photon, read fastest
    # photon by photon)
    r.unit = 1
    while r.unit < 16 and r.unit * sum(r.row[k] for k in range(r.n)) < 256:
        r.unit *= 2
    cdef Py_ssize_t b, nblocks = (n + _FLOOR_BLOCK - 1) // _FLOOR_BLOCK
    cdef uint64_t total = 0
    cdef int nthreads = effective_threads(n_threads)
    with nogil:
        # dynamic like the kernels, so a thread that loses its core does not hold the floor up
        for b in prange(nblocks, schedule="dynamic", num_threads=nthreads):
            total += _floor_block(&r, b * _FLOOR_BLOCK, min(b * _FLOOR_BLOCK + _FLOOR_BLOCK, n))
    return total
