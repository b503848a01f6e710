# ------------------------------------------------------------------ final-photon deviations
# The ox table: per aligned photon, d = max |float64(a) - float64(b)| over ox[:, :3, :]
# (position, time, direction, weight, polarization, wavelength). A NaN anywhere makes
# the photon count as NaN: beyond every cut, kept out of max/min/sum, never dropped.
# (docs/event-format.md, section 5.)

# One group's row of a final partial table, as C sees it (the C kernels below write
# it); FINAL_DTYPE is the same row for numpy (checked when the module is imported, see
# _check_layouts).
cdef extern from *:
    """
    typedef struct {
        int64_t nitem;     /* aligned photons of the group */
        int64_t nnan;      /* of them with a NaN deviation */
        int64_t ndisc[3];  /* beyond cut level 0, 1, 2 (NaN photons included) */
        int64_t argmax;    /* photon of the max, the lowest index on ties (-1: none) */
        double max;        /* largest non-NaN deviation (-inf: none) */
        double min;        /* smallest (+inf: none) */
    } cyext_final_row;
    """
    ctypedef struct _FinalRow "cyext_final_row":
        int64_t nitem
        int64_t nnan
        int64_t ndisc[3]
        int64_t argmax
        double max
        double min

#: one group's row of the ox aggregates: ``nitem``, ``nnan``, ``ndisc`` (3,), ``argmax``
#: (int64) and ``max``, ``min`` (float64, physical); the sums come apart, in block order
FINAL_DTYPE = np.dtype([("nitem", np.int64), ("nnan", np.int64), ("ndisc", np.int64, (3,)),
                        ("argmax", np.int64), ("max", np.float64), ("min", np.float64)])


cdef extern from *:
    """
    /* max over the 12 floats ox[0:3, :] of |float64(a) - float64(b)|, NaN (the first
       one's |.|) if any difference is NaN. The vector forms give the same doubles: the
       conversions and differences are the scalar ones lane by lane, every |.| is >= +0
       and max of those is exact in any order; maxpd drops a NaN operand, so NaN is a
       separate unordered-compare mask, and a photon with one takes the scalar loop. */
    static inline double cyext_final_deviation_scalar(const float *a, const float *b) {
        double d = 0.0;
        for (int c = 0; c < 12; c++) {
            double x = fabs((double)a[c] - (double)b[c]);
            if (x != x) return x;
            if (x > d) d = x;
        }
        return d;
    }
    #if defined(CYEXT_AVX2)
    /* AVX: 4 differences a register, 3 registers */
    CYEXT_AVX2_INLINE double cyext_final_deviation_avx2_t(const float *a, const float *b) {
        const __m256d sign = _mm256_set1_pd(-0.0);
        __m256d x0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a)), _mm256_cvtps_pd(_mm_loadu_ps(b)));
        __m256d x1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + 4)), _mm256_cvtps_pd(_mm_loadu_ps(b + 4)));
        __m256d x2 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + 8)), _mm256_cvtps_pd(_mm_loadu_ps(b + 8)));
        __m256d nan = _mm256_or_pd(_mm256_cmp_pd(x0, x1, _CMP_UNORD_Q), _mm256_cmp_pd(x2, x2, _CMP_UNORD_Q));
        if (_mm256_movemask_pd(nan)) return cyext_final_deviation_scalar(a, b);
        __m256d m = _mm256_max_pd(_mm256_max_pd(_mm256_andnot_pd(sign, x0), _mm256_andnot_pd(sign, x1)),
                                  _mm256_andnot_pd(sign, x2));
        __m128d h = _mm_max_pd(_mm256_castpd256_pd128(m), _mm256_extractf128_pd(m, 1));
        return _mm_cvtsd_f64(_mm_max_sd(h, _mm_unpackhi_pd(h, h)));
    }
    static CYEXT_AVX2_FN double cyext_final_deviation_avx2(const float *a, const float *b) {
        return cyext_final_deviation_avx2_t(a, b);
    }
    #endif
    #if defined(CYEXT_SSE2)
    /* SSE2: 2 differences a register, 6 registers */
    static inline double cyext_final_deviation_sse2(const float *a, const float *b) {
        const __m128d sign = _mm_set1_pd(-0.0);
        __m128d m = _mm_setzero_pd(), nan = _mm_setzero_pd();
        for (int k = 0; k < 12; k += 4) {
            __m128 fa = _mm_loadu_ps(a + k), fb = _mm_loadu_ps(b + k);
            __m128d lo = _mm_sub_pd(_mm_cvtps_pd(fa), _mm_cvtps_pd(fb));
            __m128d hi = _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(fa, fa)), _mm_cvtps_pd(_mm_movehl_ps(fb, fb)));
            nan = _mm_or_pd(nan, _mm_cmpunord_pd(lo, hi));
            m = _mm_max_pd(m, _mm_max_pd(_mm_andnot_pd(sign, lo), _mm_andnot_pd(sign, hi)));
        }
        if (_mm_movemask_pd(nan)) return cyext_final_deviation_scalar(a, b);
        return _mm_cvtsd_f64(_mm_max_sd(m, _mm_unpackhi_pd(m, m)));
    }
    #define CYEXT_FINAL_BASE cyext_final_deviation_sse2
    #else
    #define CYEXT_FINAL_BASE cyext_final_deviation_scalar
    #endif
    /* one photon (chase, the aligned tables): the best path */
    static inline double cyext_final_deviation(const float *a, const float *b) {
    #if defined(CYEXT_AVX2)
        if (cyext_isa >= 2) return cyext_final_deviation_avx2(a, b);
    #endif
        return CYEXT_FINAL_BASE(a, b);
    }
    /* Add photon i with deviation d to its group's row; 0 for NaN (counted beyond
       every cut, kept out of max/min/sum). The cuts increase with the level (the
       accumulators check): a photon within cut 0, most of them, is within all. */
    CYEXT_INLINE int cyext_final_update(cyext_final_row *row, double d, const double *cut, ptrdiff_t i) {
        row->nitem += 1;
        if (d != d) {
            row->nnan += 1;
            row->ndisc[0] += 1;
            row->ndisc[1] += 1;
            row->ndisc[2] += 1;
            return 0;
        }
        if (d > cut[0]) {
            row->ndisc[0] += 1;
            row->ndisc[1] += d > cut[1];
            row->ndisc[2] += d > cut[2];
        }
        const int take = (d > row->max) | ((d == row->max) & (i < row->argmax));  /* ties: lowest index */
        row->max = take ? d : row->max;
        row->argmax = take ? i : row->argmax;
        row->min = d < row->min ? d : row->min;
        return 1;
    }
    """
    double _final_deviation "cyext_final_deviation"(const float* a, const float* b) noexcept nogil
    bint _final_update "cyext_final_update"(_FinalRow* row, double d, const double* cut,
                                             Py_ssize_t i) noexcept nogil


cdef _FinalRow* _final_rows(object partials, Py_ssize_t part) except NULL:
    """Row 0 of part ``part`` of a (P, G) FINAL_DTYPE table (G > 0, C-contiguous)."""
    cdef uint8_t[:, ::1] raw = partials.view(np.uint8)
    return <_FinalRow*>&raw[part, 0]


cdef void _clear_final_rows(_FinalRow* row, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    memset(row, 0, n * sizeof(_FinalRow))
    for j in range(n):
        row[j].argmax = -1
        row[j].max = -INFINITY
        row[j].min = INFINITY


def new_final_partials(Py_ssize_t n_groups, int n_parts, n_threads=None):
    """Empty partial tables (n_parts, n_groups) of FINAL_DTYPE: counts 0, argmax -1,
    max -inf, min +inf; many rows are first written by ``n_threads`` threads (see
    _touch_threads)."""
    agg = _line_aligned_empty((n_parts, n_groups), FINAL_DTYPE)
    cdef Py_ssize_t n = n_parts * n_groups, c
    cdef int nt = _touch_threads(n, n_threads)
    cdef _FinalRow* row
    if n:
        row = _final_rows(agg.reshape(1, n), 0)
        with nogil:
            for c in prange(_n_blocks(0, n, _TOUCH_ROWS), schedule="static", num_threads=nt):
                _clear_final_rows(row + c * _TOUCH_ROWS, min(<Py_ssize_t>_TOUCH_ROWS, n - c * _TOUCH_ROWS))
    return agg


cdef _check_cuts(cuts):
    """Ox cuts (..., 3) must not decrease with the level and not be NaN (_final_update
    tests the higher cuts only beyond the lowest)."""
    if np.isnan(cuts).any() or (np.diff(cuts, axis=-1) < 0).any():
        raise ValueError(f"cuts must not decrease with the level nor be NaN, got {np.asarray(cuts).tolist()}")


cdef _check_finals(const float[:, :, :] ox, str name, Py_ssize_t n):
    if ox.shape[0] != n or ox.shape[1] != 4 or ox.shape[2] != 4:
        raise ValueError(f"{name} must be ({n}, 4, 4), got ({ox.shape[0]}, {ox.shape[1]}, {ox.shape[2]})")
    if ox.strides[2] != 4 or ox.strides[1] != 16:
        raise ValueError(f"{name}: each photon's values must be C-contiguous")


def merge_final_partials(partials):
    """(P, G) FINAL_DTYPE partials -> (G,) FINAL_DTYPE: counts add, max/min combine,
    argmax is the lowest photon index among the parts that reach the max (-1 where no
    part saw a non-NaN deviation). One sequential pass in C."""
    p = np.ascontiguousarray(partials, dtype=FINAL_DTYPE)
    if p.ndim != 2:
        raise ValueError(f"final partials must be (P, G), got {p.shape}")
    cdef Py_ssize_t P = p.shape[0], G = p.shape[1], k, g
    cdef int j
    out = new_final_partials(G, 1)
    cdef _FinalRow* o
    cdef _FinalRow* x
    if G and P:
        o = _final_rows(out, 0)
        x = _final_rows(p, 0)
        with nogil:
            for k in range(P):
                for g in range(G):
                    o[g].nitem += x[k * G + g].nitem
                    o[g].nnan += x[k * G + g].nnan
                    for j in range(3):
                        o[g].ndisc[j] += x[k * G + g].ndisc[j]
                    if x[k * G + g].min < o[g].min:
                        o[g].min = x[k * G + g].min
                    if x[k * G + g].max > o[g].max or (x[k * G + g].max == o[g].max
                                                       and x[k * G + g].argmax < o[g].argmax):
                        o[g].max = x[k * G + g].max
                        o[g].argmax = x[k * G + g].argmax
    return out[0]


# ------------------------------------------------------------------ layouts
# The C structs and the numpy dtypes describe the same rows; a mismatch would scramble
# every table, so importing the module checks them field by field.

cdef _check_layouts():
    cdef _RecordRow r
    cdef _FinalRow f
    cdef char* r0 = <char*>&r
    cdef char* f0 = <char*>&f
    want = {"record row": (RECORD_DTYPE.itemsize, sizeof(_RecordRow)),
            "final row": (FINAL_DTYPE.itemsize, sizeof(_FinalRow)),
            "final max": (FINAL_DTYPE.fields["max"][1], <char*>&f.max - f0),
            "final argmax": (FINAL_DTYPE.fields["argmax"][1], <char*>&f.argmax - f0)}
    c_side = {"nitem": <char*>&r.nitem - r0, "sum": <char*>&r.sum[0] - r0, "max": <char*>&r.max[0] - r0,
              "min": <char*>&r.min[0] - r0, "argmax": <char*>&r.argmax[0] - r0, "ndisc": <char*>&r.ndisc[0][0] - r0}
    for name, offset in c_side.items():
        want[f"record {name}"] = (RECORD_DTYPE.fields[name][1], offset)
    bad = [name for name, (numpy_side, c_side) in want.items() if numpy_side != c_side]
    if bad:
        raise ImportError(f"cyext: numpy dtypes and C rows disagree on {', '.join(bad)}")


_check_layouts()
