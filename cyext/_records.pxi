# ------------------------------------------------------------------ record deviations
# One pass over both events' step records (rx) and histories (ph) for the rpost, rtime
# and rpol tables together. Arithmetic is on the stored integers (data contract,
# "Exactness"): the per-photon deviation of a table is max |sA - sB| over every record
# slot and component, an exact int32, compared with integer cut thresholds.

# Field layout of one group's row in a record partial table (int64):
#   [0] nitem, then for table k in (rpost, rtime, rpol) at 1 + 7k:
#   +0..+2 photons beyond cut level 0, 1, 2; +3 max; +4 min; +5 sum; +6 photon of max
cdef enum:
    REC_FIELDS = 22
    REC_STRIDE = 7
RECORD_TABLES = ("rpost", "rtime", "rpol")
RECORD_FIELDS = REC_FIELDS
#: larger than any |difference| of two stored values, so the first photon sets the min
RECORD_MIN_START = 65536


cdef extern from *:
    """
    /* Per-photon record deviations: d[0] position, d[1] time, d[2] polarization,
       in stored counts, max over every slot. |a - b| of two int16 always fits a
       uint16, of two bytes a uint8. SSE2 (every x86-64) does a whole slot per
       instruction; other machines take the scalar loop. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline void cyext_record_deviation(const int16_t *a, const int16_t *b, int maxrec,
                                              int32_t *d) {
        /* one 16-byte record slot per register: words 0..3 are q0 (x,y,z,t int16),
           bytes 8..15 are q1 (polarization in bytes 8..10). |a-b| of int16 is
           max - min as uint16; SSE2 has no unsigned 16-bit max, so flip the sign bit
           and take the signed max. */
        const __m128i flip = _mm_set1_epi16((short)0x8000);
        __m128i acc16 = flip, acc8 = _mm_setzero_si128();
        for (int r = 0; r < maxrec; r++) {
            __m128i va = _mm_loadu_si128((const __m128i *)(a + 8 * r));
            __m128i vb = _mm_loadu_si128((const __m128i *)(b + 8 * r));
            __m128i d16 = _mm_sub_epi16(_mm_max_epi16(va, vb), _mm_min_epi16(va, vb));
            acc16 = _mm_max_epi16(acc16, _mm_xor_si128(d16, flip));
            acc8 = _mm_max_epu8(acc8, _mm_or_si128(_mm_subs_epu8(va, vb), _mm_subs_epu8(vb, va)));
        }
        uint16_t w[8];
        uint8_t u[16];
        _mm_storeu_si128((__m128i *)w, _mm_xor_si128(acc16, flip));
        _mm_storeu_si128((__m128i *)u, acc8);
        uint16_t pos = w[0] > w[1] ? w[0] : w[1];
        d[0] = pos > w[2] ? pos : w[2];
        d[1] = w[3];
        uint8_t pol = u[8] > u[9] ? u[8] : u[9];
        d[2] = pol > u[10] ? pol : u[10];
    }
    #else
    static inline void cyext_record_deviation(const int16_t *a, const int16_t *b, int maxrec,
                                              int32_t *d) {
        uint16_t q0[4] = {0, 0, 0, 0};
        uint8_t q1[3] = {0, 0, 0};
        const uint8_t *a8 = (const uint8_t *)a, *b8 = (const uint8_t *)b;
        for (int r = 0; r < maxrec; r++) {
            for (int c = 0; c < 4; c++) {
                int32_t x = (int32_t)a[8 * r + c] - (int32_t)b[8 * r + c];
                uint16_t ax = (uint16_t)(x < 0 ? -x : x);
                q0[c] = q0[c] > ax ? q0[c] : ax;
            }
            for (int c = 0; c < 3; c++) {
                uint8_t ua = a8[16 * r + 8 + c], ub = b8[16 * r + 8 + c];
                uint8_t ax = (uint8_t)(ua > ub ? ua - ub : ub - ua);
                q1[c] = q1[c] > ax ? q1[c] : ax;
            }
        }
        uint16_t pos = q0[0] > q0[1] ? q0[0] : q0[1];
        d[0] = pos > q0[2] ? pos : q0[2];
        d[1] = q0[3];
        uint8_t pol = q1[0] > q1[1] ? q1[0] : q1[1];
        d[2] = pol > q1[2] ? pol : q1[2];
    }
    #endif
    """
    void _record_deviation "cyext_record_deviation"(const int16_t* a, const int16_t* b, int maxrec,
                                                    int32_t* d) noexcept nogil


cdef inline void _record_update(int64_t* row, const int32_t* d, const int64_t* thr,
                                Py_ssize_t i) noexcept nogil:
    """Add photon ``i`` with deviations ``d`` to its group's row."""
    cdef int k
    cdef int64_t* f
    cdef int64_t x
    row[0] += 1
    for k in range(3):
        f = row + 1 + REC_STRIDE * k
        x = d[k]
        f[0] += x >= thr[3 * k]
        f[1] += x >= thr[3 * k + 1]
        f[2] += x >= thr[3 * k + 2]
        if x > f[3] or (x == f[3] and i < f[6]):  # ties keep the lowest photon index
            f[3] = x
            f[6] = i
        if x < f[4]:
            f[4] = x
        f[5] += x


def new_record_partials(Py_ssize_t n_groups, int n_parts):
    """Empty partial tables (n_parts, n_groups, RECORD_FIELDS) int64: counts 0, max -1,
    min RECORD_MIN_START, photon of max -1."""
    agg = np.zeros((n_parts, n_groups, RECORD_FIELDS), dtype=np.int64)
    for k in range(3):
        agg[:, :, 1 + REC_STRIDE * k + 3] = -1
        agg[:, :, 1 + REC_STRIDE * k + 4] = RECORD_MIN_START
        agg[:, :, 1 + REC_STRIDE * k + 6] = -1
    return agg


def merge_record_partials(partials):
    """(P, G, RECORD_FIELDS) -> (G, RECORD_FIELDS): counts and sums add, max/min combine,
    the photon of the max is the lowest index among the parts that reach it."""
    partials = np.asarray(partials)
    out = partials.sum(axis=0)
    for k in range(3):
        base = 1 + REC_STRIDE * k
        mx = partials[:, :, base + 3]
        out[:, base + 3] = mx.max(axis=0)
        out[:, base + 4] = partials[:, :, base + 4].min(axis=0)
        at_max = np.where(mx == out[None, :, base + 3], partials[:, :, base + 6], np.iinfo(np.int64).max)
        out[:, base + 6] = at_max.min(axis=0)
    return out


cdef _check_rx(const int16_t[:, :, :, :] rx, str name, Py_ssize_t n):
    if rx.shape[0] != n:
        raise ValueError(f"{name} has {rx.shape[0]} photons, seqhis has {n}")
    if rx.shape[2] != 2 or rx.shape[3] != 4:
        raise ValueError(f"{name} must be (N, maxrec, 2, 4), got (N, {rx.shape[1]}, {rx.shape[2]}, {rx.shape[3]})")
    if rx.strides[3] != 2 or rx.strides[2] != 8 or rx.strides[1] != 16:
        raise ValueError(f"{name}: each photon's records must be C-contiguous")


cdef _check_records(const int16_t[:, :, :, :] rx_a, const int16_t[:, :, :, :] rx_b,
                    const uint64_t[:] seq_a, const uint64_t[:] seq_b):
    """Same photon count everywhere, same maxrec, each photon's records contiguous."""
    cdef Py_ssize_t n = seq_a.shape[0]
    _check_rx(rx_a, "rx_a", n)
    _check_rx(rx_b, "rx_b", n)
    if seq_b.shape[0] != n:
        raise ValueError(f"seq_b has {seq_b.shape[0]} photons, seq_a has {n}")
    if rx_a.shape[1] != rx_b.shape[1]:
        raise ValueError(f"maxrec differs: A {rx_a.shape[1]}, B {rx_b.shape[1]}")
