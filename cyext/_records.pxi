# ------------------------------------------------------------------ record deviations
# One pass over both events' step records (rx) and histories (ph) for the rpost, rtime
# and rpol tables together. Arithmetic is on the stored integers (docs/event-format.md, section 5,
# "Exactness"): the per-photon deviation of a table is max |sA - sB| over every record
# slot and component, an exact int32, compared with integer cut thresholds.

#: the record tables, in the order of the kernels' per-photon deviations d[0..2], of the
#: rows of DeviationAccumulator's ``thresholds`` and of chase()'s table numbers 0..2
RECORD_TABLES = ("rpost", "rtime", "rpol")
#: larger than any |difference| of two stored values (int16: at most 65535), so the
#: first photon of a group sets its min
RECORD_MIN_START = 65536

# One group's row of a record partial table, as C sees it (the C kernels below write
# it); RECORD_DTYPE is the same row for numpy (checked when the module is imported, see
# _check_layouts).
cdef extern from *:
    """
    /* 128 bytes a row (two cache lines: with a million histories the rows are visited
       at random), a field per aggregate with the three tables side by side, so that one
       photon updates each aggregate of its three tables with one vector instruction
       (cyext_record_update_avx2): nitem and the sums are one 4 x int64 vector, the
       others 4 x int32, their lane 3 unused (kept at its empty value, no byte of a row
       is undefined). A deviation is at most 65535 counts and a history has fewer
       photons than its event (at most 2**31 - 1, checked), so 32 bits hold the max,
       min, photon index and level counts; the sums need 64. */
    enum { CYEXT_RECORD_MIN_START = 65536 };  /* RECORD_MIN_START */
    typedef struct {
        int64_t nitem;        /* aligned photons of the group (the same for the three tables) */
        int64_t sum[3];       /* per table (RECORD_TABLES order): sum of the per-photon deviations */
        int32_t max[4];       /* largest, stored counts (-1: no photon yet) */
        int32_t min[4];       /* smallest (RECORD_MIN_START: no photon yet) */
        int32_t argmax[4];    /* photon of the max, the lowest index on ties (-1: none) */
        int32_t ndisc[3][4];  /* ndisc[k][j]: photons beyond cut level j (warning, error, fatal) */
    } cyext_record_row;
    """
    enum: _RECORD_MIN_START "CYEXT_RECORD_MIN_START"
    ctypedef struct _RecordRow "cyext_record_row":
        int64_t nitem
        int64_t sum[3]
        int32_t max[4]
        int32_t min[4]
        int32_t argmax[4]
        int32_t ndisc[3][4]

#: photons an event may have: a history's photon indices and level counts are 32-bit
#: (cyext_record_row)
MAX_PHOTONS = (1 << 31) - 1
#: one group's row of the record aggregates, the tables of RECORD_TABLES side by side:
#: ``nitem`` (int64), ``sum`` (3,) int64, ``max``, ``min``, ``argmax`` (4,) int32 and
#: ``ndisc`` (3, 4) int32 (table k's counts beyond each cut: ``ndisc[k, :3]``), in stored
#: counts (see docs/event-format.md, section 5); lane 3 is unused (its empty value).
#: record_table(rows, k) gives table k's columns.
RECORD_DTYPE = np.dtype([("nitem", np.int64), ("sum", np.int64, (3,)), ("max", np.int32, (4,)),
                         ("min", np.int32, (4,)), ("argmax", np.int32, (4,)), ("ndisc", np.int32, (3, 4))])


# ------------------------------------------------------------------ SIMD paths
# The per-photon kernels (record slots here, the ox deviation in _finals.pxi) have a
# scalar, an SSE2, an AVX2 and (record slots) an AVX-512 form that give the same bits
# (docs/kernels.md, "SIMD paths"). Which ones a build has is fixed at compile time;
# which one runs is chosen once, when the module is imported, from what the CPU running
# it has (never from the build machine), and can be capped with CYEXT_ISA=avx2 or sse2
# (for tests and comparisons).

cdef extern from *:
    """
    /* CYEXT_SSE2: every x86-64 and SSE2 x86. MSVC never defines __SSE2__: it says x86-64
       with _M_X64/_M_AMD64 and SSE2 on 32-bit x86 with _M_IX86_FP >= 2. CYEXT_AVX2 (and
       its AVX-512 forms): GCC and Clang on x86, which compile single functions for AVX2 or
       AVX-512BW (target attribute) and ask the CPU at run time; MSVC and other machines
       keep SSE2/scalar. CYEXT_NO_SIMD (setup.py: CYEXT_SIMD=0) forces the scalar loops,
       for tests. */
    #if !defined(CYEXT_NO_SIMD) && (defined(__SSE2__) || defined(_M_X64) || defined(_M_AMD64) \\
                                    || (defined(_M_IX86_FP) && _M_IX86_FP >= 2))
    #define CYEXT_SSE2 1
    #include <emmintrin.h>
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    #define CYEXT_AVX2 1
    #include <immintrin.h>
    #define CYEXT_AVX2_FN __attribute__((target("avx2")))
    #define CYEXT_AVX2_INLINE static inline __attribute__((always_inline, target("avx2")))
    #define CYEXT_AVX512_FN __attribute__((target("avx2,avx512f,avx512bw")))
    #define CYEXT_AVX512_INLINE static inline __attribute__((always_inline, target("avx2,avx512f,avx512bw")))
    #endif
    #endif
    #if defined(__GNUC__) || defined(__clang__)
    #define CYEXT_INLINE static inline __attribute__((always_inline))
    #elif defined(_MSC_VER)
    #define CYEXT_INLINE static __forceinline
    #else
    #define CYEXT_INLINE static inline
    #endif
    /* the path in use: 3 AVX-512, 2 AVX2, 1 SSE2, 0 scalar; set once by cyext_simd_init
       at import, before any kernel runs, then only read; at most ``cap`` */
    static int cyext_isa = 0;
    static int cyext_simd_init(int cap) {
    #if defined(CYEXT_AVX2)
        __builtin_cpu_init();  /* also checks the OS saves the YMM (ZMM) registers */
        cyext_isa = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") ? 3
                    : __builtin_cpu_supports("avx2") ? 2 : 1;
    #elif defined(CYEXT_SSE2)
        cyext_isa = 1;
    #else
        cyext_isa = 0;
    #endif
        if (cyext_isa > cap) cyext_isa = cap;
        return cyext_isa;
    }
    """
    int cyext_simd_init(int cap) noexcept nogil
    int cyext_isa


cdef int _init_simd() except -1:
    import os
    want = os.environ.get("CYEXT_ISA", "").strip().lower()
    caps = {"": 3, "auto": 3, "avx512": 3, "avx2": 2, "sse2": 1}
    if want not in caps:
        import warnings
        warnings.warn(f"cyext: CYEXT_ISA={want!r} is not one of auto, avx512, avx2, sse2; using the best path",
                      RuntimeWarning, stacklevel=2)
    cyext_simd_init(caps.get(want, 3))
    return 0


_init_simd()


def simd_path():
    """The vector code the per-photon kernels run: ``"avx512"`` (the record slots in
    AVX-512BW, the rest AVX2), ``"avx2"``, ``"sse2"`` or ``"scalar"`` (a build without
    SIMD: CYEXT_SIMD=0 or not x86). The best this build and CPU have, unless CYEXT_ISA
    capped it when cyext was imported. Every path gives the same bits."""
    return ("scalar", "sse2", "avx2", "avx512")[cyext_isa]


cdef extern from *:
    """
    /* Per-photon record deviations: d[0] position, d[1] time, d[2] polarization,
       in stored counts, max over every slot. |a - b| of two int16 always fits a
       uint16, of two bytes a uint8. SSE2 does a whole slot per instruction; other
       machines take the scalar loop. Used by chase() only (not hot: one pass over the
       photons a listing asks for), so it has no AVX2 form. */
    #if defined(CYEXT_SSE2)
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


#: uint16 lanes of a slot-maxima row per record slot: |A - B| of x, y, z, t (q0 words),
#: then of the polarization x, y, z and wavelength bytes (q1 bytes 0..3, widened)
cdef enum:
    _SLOT_LANES = 8


cdef extern from *:
    """
    /* Per-photon record deviations AND per-slot maxima in one pass over the slots, for
       the record tables in ``mask`` (bit 0 rpost, 1 rtime, 2 rpol; the others are not
       computed). d[k] = max over slots of table k (as cyext_record_deviation).
       ``slots`` is the photon's group's row, maxrec x 8 uint16 lanes (x, y, z, t, pol x,
       y, z, wavelength): each becomes max(itself, this photon's |A - B| there); the
       tables' per-slot maxima are taken over the lanes when the partials are merged
       (merge_slot_partials). ``mask`` is a compile-time constant in each loop of
       cyext_deviation_block (_deviations.pxi), which inlines the path's form. Lanes of
       tables not in ``mask`` may hold anything. */
    #if defined(CYEXT_SSE2)
    /* One slot's 8 lanes of |a - b|: lanes 0..3 of the q0 words (max - min of int16
       fits a uint16), lanes 4..7 of the q1 bytes 0..3 (pol x, y, z, wavelength), widened.
       Without rpol the q1 lanes are left as they come; rpol alone skips the words. */
    #define CYEXT_SLOT_DIFF(V, VA, VB, ZERO, MASK, MAXI16, MINI16, SUB16, MAXU8, MINU8, SUB8, \\
                            UNPACKHI8, UNPACKLO64, SHIFT8)                                    \\
        do {                                                                                  \\
            if ((MASK) == 4) {                                                                \\
                V = SHIFT8(UNPACKHI8(SUB8(MAXU8(VA, VB), MINU8(VA, VB)), ZERO), 8);           \\
            } else {                                                                          \\
                V = SUB16(MAXI16(VA, VB), MINI16(VA, VB));                                    \\
                if ((MASK) & 4)                                                               \\
                    V = UNPACKLO64(V, UNPACKHI8(SUB8(MAXU8(VA, VB), MINU8(VA, VB)), ZERO));   \\
            }                                                                                 \\
        } while (0)
    #define CYEXT_SLOT_DIFF128(V, VA, VB, ZERO, MASK) \\
        CYEXT_SLOT_DIFF(V, VA, VB, ZERO, MASK, _mm_max_epi16, _mm_min_epi16, _mm_sub_epi16, \\
                        _mm_max_epu8, _mm_min_epu8, _mm_sub_epi8, _mm_unpackhi_epi8, _mm_unpacklo_epi64, \\
                        _mm_slli_si128)
    /* unsigned 16-bit max in SSE2: a + (b -sat a) */
    #define CYEXT_MAXU16(x, y) _mm_adds_epu16((x), _mm_subs_epu16((y), (x)))
    /* d[] from a register of lane maxima: lane 0 = max(x, y, z), lane 4 = max(pol x, y,
       z), lane 3 = t; MAXU16 is the unsigned max the path has */
    #define CYEXT_SLOT_RESULT(ACC, MAXU16, D, MASK)                                           \\
        do {                                                                                  \\
            __m128i m_ = MAXU16(MAXU16(ACC, _mm_srli_si128(ACC, 2)), _mm_srli_si128(ACC, 4)); \\
            if ((MASK) & 1) (D)[0] = _mm_extract_epi16(m_, 0);                                \\
            if ((MASK) & 2) (D)[1] = _mm_extract_epi16(ACC, 3);                               \\
            if ((MASK) & 4) (D)[2] = _mm_extract_epi16(m_, 4);                                \\
        } while (0)
    CYEXT_INLINE void cyext_record_slots_t(const int16_t *a, const int16_t *b, int maxrec,
                                           uint16_t *slots, int32_t *d, const int mask) {
        const __m128i zero = _mm_setzero_si128();
        __m128i acc = zero;
        for (int r = 0; r < maxrec; r++) {
            __m128i va = _mm_loadu_si128((const __m128i *)(a + 8 * r));
            __m128i vb = _mm_loadu_si128((const __m128i *)(b + 8 * r));
            __m128i v;
            CYEXT_SLOT_DIFF128(v, va, vb, zero, mask);
            __m128i *row = (__m128i *)(slots + 8 * r);
            _mm_storeu_si128(row, CYEXT_MAXU16(_mm_loadu_si128(row), v));
            acc = CYEXT_MAXU16(acc, v);
        }
        CYEXT_SLOT_RESULT(acc, CYEXT_MAXU16, d, mask);
    }
    /* Narrow slot rows, for many groups (DeviationAccumulator.slot_lanes 4): a slot's
       row is 4 uint16 lanes, max(x, y, z), t, max(pol x, y, z) and one that may hold
       anything, so that a million histories' rows take half the memory and lines.
       m = max over a word and the next two (lane 0 of a slot: x, y, z; lane 4: pol x,
       y, z), t from the difference itself; d[] as the wide forms give it. */
    #define CYEXT_NARROW_RESULT(P, D, MASK)                                                   \\
        do {                                                                                  \\
            if ((MASK) & 1) (D)[0] = _mm_extract_epi16(P, 0);                                 \\
            if ((MASK) & 2) (D)[1] = _mm_extract_epi16(P, 1);                                 \\
            if ((MASK) & 4) (D)[2] = _mm_extract_epi16(P, 2);                                 \\
        } while (0)
    CYEXT_INLINE void cyext_record_slots4_t(const int16_t *a, const int16_t *b, int maxrec,
                                            uint16_t *slots, int32_t *d, const int mask) {
        const __m128i zero = _mm_setzero_si128();
        __m128i acc = zero;
        for (int r = 0; r < maxrec; r++) {
            __m128i va = _mm_loadu_si128((const __m128i *)(a + 8 * r));
            __m128i vb = _mm_loadu_si128((const __m128i *)(b + 8 * r));
            __m128i v;
            CYEXT_SLOT_DIFF128(v, va, vb, zero, mask);
            __m128i m = CYEXT_MAXU16(CYEXT_MAXU16(v, _mm_srli_si128(v, 2)), _mm_srli_si128(v, 4));
            __m128i p = _mm_unpacklo_epi32(m, _mm_srli_si128(m, 8));  /* words m0 m1 m4 m5 */
            p = _mm_insert_epi16(p, _mm_extract_epi16(v, 3), 1);     /* m0 t m4 m5 */
            __m128i *row = (__m128i *)(slots + 4 * r);
            _mm_storel_epi64(row, CYEXT_MAXU16(_mm_loadl_epi64(row), p));
            acc = CYEXT_MAXU16(acc, p);
        }
        CYEXT_NARROW_RESULT(acc, d, mask);
    }
    #if defined(CYEXT_AVX2)
    /* AVX2: two slots per 256-bit register (the 128-bit halves are independent, as the
       unpacks and byte shifts work per half), a last odd slot in 128 bits; AVX2 has an
       unsigned 16-bit max (SSE4.1's in 128 bits). A step takes the slots at a, b, updates
       their row and returns the accumulator with their differences. */
    CYEXT_AVX2_INLINE __m256i cyext_slot_pair_avx2(const int16_t *a, const int16_t *b, uint16_t *slots,
                                                   __m256i acc2, const int mask) {
        const __m256i zero = _mm256_setzero_si256();
        __m256i va = _mm256_loadu_si256((const __m256i *)a);
        __m256i vb = _mm256_loadu_si256((const __m256i *)b);
        __m256i v;
        CYEXT_SLOT_DIFF(v, va, vb, zero, mask, _mm256_max_epi16, _mm256_min_epi16, _mm256_sub_epi16,
                        _mm256_max_epu8, _mm256_min_epu8, _mm256_sub_epi8, _mm256_unpackhi_epi8,
                        _mm256_unpacklo_epi64, _mm256_bslli_epi128);
        __m256i *row = (__m256i *)slots;
        _mm256_storeu_si256(row, _mm256_max_epu16(_mm256_loadu_si256(row), v));
        return _mm256_max_epu16(acc2, v);
    }
    CYEXT_AVX2_INLINE __m128i cyext_slot_one_avx2(const int16_t *a, const int16_t *b, uint16_t *slots,
                                                  __m128i acc, const int mask) {
        __m128i va = _mm_loadu_si128((const __m128i *)a);
        __m128i vb = _mm_loadu_si128((const __m128i *)b);
        __m128i v;
        CYEXT_SLOT_DIFF128(v, va, vb, _mm_setzero_si128(), mask);
        __m128i *row = (__m128i *)slots;
        _mm_storeu_si128(row, _mm_max_epu16(_mm_loadu_si128(row), v));
        return _mm_max_epu16(acc, v);
    }
    CYEXT_AVX2_INLINE __m128i cyext_halves_max_avx2(__m256i acc2) {
        return _mm_max_epu16(_mm256_castsi256_si128(acc2), _mm256_extracti128_si256(acc2, 1));
    }
    CYEXT_AVX2_INLINE void cyext_record_slots_avx2_t(const int16_t *a, const int16_t *b, int maxrec,
                                                     uint16_t *slots, int32_t *d, const int mask) {
        __m256i acc2 = _mm256_setzero_si256();
        const ptrdiff_t pairs = 8 * (ptrdiff_t)(maxrec & ~1);  /* words in the whole slot pairs */
        for (ptrdiff_t k = 0; k < pairs; k += 16)
            acc2 = cyext_slot_pair_avx2(a + k, b + k, slots + k, acc2, mask);
        __m128i acc = cyext_halves_max_avx2(acc2);
        if (maxrec & 1)
            acc = cyext_slot_one_avx2(a + pairs, b + pairs, slots + pairs, acc, mask);
        CYEXT_SLOT_RESULT(acc, _mm_max_epu16, d, mask);
    }
    /* AVX-512BW: four slots per 512-bit register (the 128-bit lanes independent, as in
       AVX2), the last one to three slots in the AVX2 steps: a 512-bit register half
       empty would cost a whole one where the two halves of a 512-bit operation take
       turns (AMD Zen 4), and masked loads and stores cost more than plain ones. */
    CYEXT_AVX512_INLINE void cyext_record_slots_avx512_t(const int16_t *a, const int16_t *b, int maxrec,
                                                         uint16_t *slots, int32_t *d, const int mask) {
        const __m512i zero = _mm512_setzero_si512();
        __m512i acc4 = zero;
        const ptrdiff_t quads = 8 * (ptrdiff_t)(maxrec & ~3), pairs = 8 * (ptrdiff_t)(maxrec & ~1);
        for (ptrdiff_t k = 0; k < quads; k += 32) {
            __m512i va = _mm512_loadu_si512((const void *)(a + k));
            __m512i vb = _mm512_loadu_si512((const void *)(b + k));
            __m512i v;
            CYEXT_SLOT_DIFF(v, va, vb, zero, mask, _mm512_max_epi16, _mm512_min_epi16, _mm512_sub_epi16,
                            _mm512_max_epu8, _mm512_min_epu8, _mm512_sub_epi8, _mm512_unpackhi_epi8,
                            _mm512_unpacklo_epi64, _mm512_bslli_epi128);
            _mm512_storeu_si512((void *)(slots + k), _mm512_max_epu16(_mm512_loadu_si512((const void *)(slots + k)), v));
            acc4 = _mm512_max_epu16(acc4, v);
        }
        __m256i acc2 = _mm256_max_epu16(_mm512_castsi512_si256(acc4), _mm512_extracti64x4_epi64(acc4, 1));
        if (maxrec & 2)
            acc2 = cyext_slot_pair_avx2(a + quads, b + quads, slots + quads, acc2, mask);
        __m128i acc = cyext_halves_max_avx2(acc2);
        if (maxrec & 1)
            acc = cyext_slot_one_avx2(a + pairs, b + pairs, slots + pairs, acc, mask);
        CYEXT_SLOT_RESULT(acc, _mm_max_epu16, d, mask);
    }
    /* Narrow rows (see cyext_record_slots4_t) in AVX2: word 3 of each slot taken from
       the difference (blend), words 0, 3, 4, 5 of each slot gathered to its low 8 bytes
       (shuffle), the two slots' 8 bytes side by side (permute). The steps as above, with
       the row of the slots at a, b at ``row``. */
    CYEXT_AVX2_INLINE __m128i cyext_slot4_pair_avx2(const int16_t *a, const int16_t *b, uint16_t *row,
                                                    __m128i acc, const int mask) {
        const __m256i zero = _mm256_setzero_si256();
        const __m256i pick = _mm256_setr_epi8(0, 1, 6, 7, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1,
                                              0, 1, 6, 7, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1);
        __m256i va = _mm256_loadu_si256((const __m256i *)a);
        __m256i vb = _mm256_loadu_si256((const __m256i *)b);
        __m256i v;
        CYEXT_SLOT_DIFF(v, va, vb, zero, mask, _mm256_max_epi16, _mm256_min_epi16, _mm256_sub_epi16,
                        _mm256_max_epu8, _mm256_min_epu8, _mm256_sub_epi8, _mm256_unpackhi_epi8,
                        _mm256_unpacklo_epi64, _mm256_bslli_epi128);
        __m256i m = _mm256_max_epu16(_mm256_max_epu16(v, _mm256_bsrli_epi128(v, 2)), _mm256_bsrli_epi128(v, 4));
        __m256i u = _mm256_shuffle_epi8(_mm256_blend_epi16(m, v, 0x08), pick);
        __m128i p = _mm256_castsi256_si128(_mm256_permute4x64_epi64(u, 0x08));
        _mm_storeu_si128((__m128i *)row, _mm_max_epu16(_mm_loadu_si128((const __m128i *)row), p));
        return _mm_max_epu16(acc, p);
    }
    CYEXT_AVX2_INLINE __m128i cyext_slot4_one_avx2(const int16_t *a, const int16_t *b, uint16_t *row,
                                                   __m128i acc, const int mask) {
        const __m128i pick = _mm_setr_epi8(0, 1, 6, 7, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1);
        __m128i va = _mm_loadu_si128((const __m128i *)a);
        __m128i vb = _mm_loadu_si128((const __m128i *)b);
        __m128i v;
        CYEXT_SLOT_DIFF128(v, va, vb, _mm_setzero_si128(), mask);
        __m128i m = _mm_max_epu16(_mm_max_epu16(v, _mm_srli_si128(v, 2)), _mm_srli_si128(v, 4));
        __m128i p = _mm_shuffle_epi8(_mm_blend_epi16(m, v, 0x08), pick);
        _mm_storel_epi64((__m128i *)row, _mm_max_epu16(_mm_loadl_epi64((const __m128i *)row), p));
        return _mm_max_epu16(acc, p);
    }
    CYEXT_AVX2_INLINE void cyext_record_slots4_avx2_t(const int16_t *a, const int16_t *b, int maxrec,
                                                      uint16_t *slots, int32_t *d, const int mask) {
        __m128i acc = _mm_setzero_si128();
        const ptrdiff_t pairs = 8 * (ptrdiff_t)(maxrec & ~1);
        for (ptrdiff_t k = 0; k < pairs; k += 16)
            acc = cyext_slot4_pair_avx2(a + k, b + k, slots + k / 2, acc, mask);
        if (maxrec & 1)
            acc = cyext_slot4_one_avx2(a + pairs, b + pairs, slots + pairs / 2, acc, mask);
        acc = _mm_max_epu16(acc, _mm_srli_si128(acc, 8));
        CYEXT_NARROW_RESULT(acc, d, mask);
    }
    /* Narrow rows in AVX-512BW: four slots' words 0, 3, 4, 5 gathered (vpermw) to the low
       256 bits, the last one to three slots in the AVX2 steps (as the wide form). */
    CYEXT_AVX512_INLINE void cyext_record_slots4_avx512_t(const int16_t *a, const int16_t *b, int maxrec,
                                                          uint16_t *slots, int32_t *d, const int mask) {
        const __m512i zero = _mm512_setzero_si512();
        static const uint16_t words_kept[32] = {0, 3, 4, 5, 8, 11, 12, 13, 16, 19, 20, 21, 24, 27, 28, 29};
        const __m512i pick = _mm512_loadu_si512((const void *)words_kept);
        __m256i acc2 = _mm256_setzero_si256();
        const ptrdiff_t quads = 8 * (ptrdiff_t)(maxrec & ~3), pairs = 8 * (ptrdiff_t)(maxrec & ~1);
        for (ptrdiff_t k = 0; k < quads; k += 32) {
            __m512i va = _mm512_loadu_si512((const void *)(a + k));
            __m512i vb = _mm512_loadu_si512((const void *)(b + k));
            __m512i v;
            CYEXT_SLOT_DIFF(v, va, vb, zero, mask, _mm512_max_epi16, _mm512_min_epi16, _mm512_sub_epi16,
                            _mm512_max_epu8, _mm512_min_epu8, _mm512_sub_epi8, _mm512_unpackhi_epi8,
                            _mm512_unpacklo_epi64, _mm512_bslli_epi128);
            __m512i mx = _mm512_max_epu16(_mm512_max_epu16(v, _mm512_bsrli_epi128(v, 2)), _mm512_bsrli_epi128(v, 4));
            __m256i p = _mm512_castsi512_si256(
                _mm512_permutexvar_epi16(pick, _mm512_mask_blend_epi16(0x08080808, mx, v)));
            __m256i *row = (__m256i *)(slots + k / 2);
            _mm256_storeu_si256(row, _mm256_max_epu16(_mm256_loadu_si256(row), p));
            acc2 = _mm256_max_epu16(acc2, p);
        }
        __m128i acc = cyext_halves_max_avx2(acc2);
        if (maxrec & 2)
            acc = cyext_slot4_pair_avx2(a + quads, b + quads, slots + quads / 2, acc, mask);
        if (maxrec & 1)
            acc = cyext_slot4_one_avx2(a + pairs, b + pairs, slots + pairs / 2, acc, mask);
        acc = _mm_max_epu16(acc, _mm_srli_si128(acc, 8));
        CYEXT_NARROW_RESULT(acc, d, mask);
    }
    #endif
    #else
    CYEXT_INLINE void cyext_record_slots_t(const int16_t *a, const int16_t *b, int maxrec,
                                           uint16_t *slots, int32_t *d, const int mask) {
        const uint8_t *a8 = (const uint8_t *)a, *b8 = (const uint8_t *)b;
        uint16_t m0 = 0, m1 = 0, m2 = 0;
        for (int r = 0; r < maxrec; r++) {
            uint16_t *row = slots + 8 * r;
            for (int c = 0; c < 4; c++) {
                if (c < 3 ? !(mask & 1) : !(mask & 2)) continue;
                int32_t x = (int32_t)a[8 * r + c] - (int32_t)b[8 * r + c];
                uint16_t ax = (uint16_t)(x < 0 ? -x : x);
                if (ax > row[c]) row[c] = ax;
                if (c < 3) { if (ax > m0) m0 = ax; } else if (ax > m1) m1 = ax;
            }
            if (mask & 4) {
                for (int c = 0; c < 3; c++) {
                    uint8_t ua = a8[16 * r + 8 + c], ub = b8[16 * r + 8 + c];
                    uint16_t ax = (uint16_t)(ua > ub ? ua - ub : ub - ua);
                    if (ax > row[4 + c]) row[4 + c] = ax;
                    if (ax > m2) m2 = ax;
                }
            }
        }
        if (mask & 1) d[0] = m0;
        if (mask & 2) d[1] = m1;
        if (mask & 4) d[2] = m2;
    }
    /* Narrow slot rows (see the SSE2 form): lanes max(x, y, z), t, max(pol x, y, z). */
    CYEXT_INLINE void cyext_record_slots4_t(const int16_t *a, const int16_t *b, int maxrec,
                                            uint16_t *slots, int32_t *d, const int mask) {
        const uint8_t *a8 = (const uint8_t *)a, *b8 = (const uint8_t *)b;
        uint16_t m[3] = {0, 0, 0};
        for (int r = 0; r < maxrec; r++) {
            uint16_t *row = slots + 4 * r, s[3] = {0, 0, 0};
            for (int c = 0; c < 4; c++) {
                int32_t x = (int32_t)a[8 * r + c] - (int32_t)b[8 * r + c];
                uint16_t ax = (uint16_t)(x < 0 ? -x : x);
                int k = c < 3 ? 0 : 1;
                if (ax > s[k]) s[k] = ax;
            }
            for (int c = 0; c < 3; c++) {
                uint8_t ua = a8[16 * r + 8 + c], ub = b8[16 * r + 8 + c];
                uint16_t ax = (uint16_t)(ua > ub ? ua - ub : ub - ua);
                if (ax > s[2]) s[2] = ax;
            }
            for (int k = 0; k < 3; k++) {
                if (!((mask >> k) & 1)) continue;
                if (s[k] > row[k]) row[k] = s[k];
                if (s[k] > m[k]) m[k] = s[k];
            }
        }
        for (int k = 0; k < 3; k++)
            if ((mask >> k) & 1) d[k] = m[k];
    }
    #endif
    /* Add photon i with deviations d (RECORD_TABLES order) to its group's row, for
       the tables in mask (bit k = table k, a compile-time constant); lev (3 tables x 4
       lanes): beyond level j of table k when d[k] > lev[4k + j] (the threshold less
       one; lane 3 INT32_MAX). Free of branches: deviations tie often, and which photons
       pass which cut is not predictable. */
    CYEXT_INLINE void cyext_record_update(cyext_record_row *row, const int32_t *d, const int32_t *lev,
                                          ptrdiff_t i, const int mask) {
        row->nitem += 1;
        for (int k = 0; k < 3; k++) {
            if (!((mask >> k) & 1)) continue;
            const int32_t x = d[k];  /* at most 65535 */
            for (int j = 0; j < 3; j++)
                row->ndisc[k][j] += x > lev[4 * k + j];
            const int take = (x > row->max[k]) | ((x == row->max[k]) & (i < row->argmax[k]));  /* ties: lowest index */
            row->max[k] = take ? x : row->max[k];
            row->argmax[k] = take ? (int32_t)i : row->argmax[k];
            row->min[k] = x < row->min[k] ? x : row->min[k];
            row->sum[k] += x;
        }
    }
    #if defined(CYEXT_AVX2)
    /* The same, the three tables at once: lane k of each field is table k, the level
       counts one compare of d[k] with table k's 4 lanes of lev. Lanes of tables not in
       mask, and lane 3, keep their values. It takes about a third of the instructions
       and stores of the scalar form (docs/kernels.md, "Record rows"). */
    CYEXT_AVX2_INLINE void cyext_record_update_avx2(cyext_record_row *row, const int32_t *d, const int32_t *lev,
                                                    ptrdiff_t i, const int mask) {
        const __m128i on = _mm_setr_epi32(mask & 1 ? -1 : 0, mask & 2 ? -1 : 0, mask & 4 ? -1 : 0, 0);
        const __m128i x = _mm_setr_epi32(mask & 1 ? d[0] : 0, mask & 2 ? d[1] : 0, mask & 4 ? d[2] : 0, 0);
        /* nitem and the sums: + (1, d0, d1, d2) as 4 x int64 */
        __m256i *cs = (__m256i *)&row->nitem;
        const __m128i one_x = _mm_insert_epi32(_mm_slli_si128(x, 4), 1, 0);
        _mm256_storeu_si256(cs, _mm256_add_epi64(_mm256_loadu_si256(cs), _mm256_cvtepu32_epi64(one_x)));
        /* max and its photon, ties to the lowest index; min */
        __m128i *pm = (__m128i *)row->max, *pa = (__m128i *)row->argmax, *pn = (__m128i *)row->min;
        const __m128i mx = _mm_loadu_si128(pm), am = _mm_loadu_si128(pa);
        const __m128i iv = _mm_set1_epi32((int32_t)i);
        const __m128i take = _mm_and_si128(on, _mm_or_si128(_mm_cmpgt_epi32(x, mx),
                                                            _mm_and_si128(_mm_cmpeq_epi32(x, mx), _mm_cmpgt_epi32(am, iv))));
        _mm_storeu_si128(pm, _mm_blendv_epi8(mx, x, take));
        _mm_storeu_si128(pa, _mm_blendv_epi8(am, iv, take));
        const __m128i xmin = _mm_blendv_epi8(_mm_set1_epi32(CYEXT_RECORD_MIN_START), x, on);
        _mm_storeu_si128(pn, _mm_min_epi32(_mm_loadu_si128(pn), xmin));
        /* the level counts: - (-1) where d > lev */
        for (int k = 0; k < 3; k++) {
            if (!((mask >> k) & 1)) continue;
            __m128i *c = (__m128i *)row->ndisc[k];
            const __m128i beyond = _mm_cmpgt_epi32(_mm_set1_epi32(d[k]), _mm_loadu_si128((const __m128i *)(lev + 4 * k)));
            _mm_storeu_si128(c, _mm_sub_epi32(_mm_loadu_si128(c), beyond));
        }
    }
    #endif
    """


cdef _RecordRow* _record_rows(object partials, Py_ssize_t part) except NULL:
    """Row 0 of part ``part`` of a (P, G) RECORD_DTYPE table (G > 0, C-contiguous)."""
    cdef uint8_t[:, ::1] raw = partials.view(np.uint8)
    return <_RecordRow*>&raw[part, 0]


cdef void _clear_record_rows(_RecordRow* row, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef int k
    memset(row, 0, n * sizeof(_RecordRow))
    for j in range(n):
        for k in range(4):
            row[j].max[k] = -1
            row[j].min[k] = _RECORD_MIN_START
            row[j].argmax[k] = -1


def new_record_partials(Py_ssize_t n_groups, int n_parts, n_threads=None):
    """Empty partial tables (n_parts, n_groups) of RECORD_DTYPE: counts 0, max -1,
    min RECORD_MIN_START, argmax -1; many rows are first written by ``n_threads``
    threads (see _touch_threads)."""
    agg = _line_aligned_empty((n_parts, n_groups), RECORD_DTYPE)
    cdef Py_ssize_t n = n_parts * n_groups, c
    cdef int nt = _touch_threads(n, n_threads)
    cdef _RecordRow* row
    if n:
        row = _record_rows(agg.reshape(1, n), 0)
        with nogil:
            for c in prange(_n_blocks(0, n, _TOUCH_ROWS), schedule="static", num_threads=nt):
                _clear_record_rows(row + c * _TOUCH_ROWS, min(<Py_ssize_t>_TOUCH_ROWS, n - c * _TOUCH_ROWS))
    return agg


cdef inline void _merge_record_row(_RecordRow* o, const _RecordRow* x) noexcept nogil:
    """Row ``x`` into row ``o``: counts and sums add, max/min combine, the max keeps the
    lowest photon index among the rows that reach it."""
    cdef int k, j
    o.nitem += x.nitem
    for k in range(3):
        for j in range(3):
            o.ndisc[k][j] += x.ndisc[k][j]
        o.sum[k] += x.sum[k]
        if x.min[k] < o.min[k]:
            o.min[k] = x.min[k]
        if x.max[k] > o.max[k] or (x.max[k] == o.max[k] and x.argmax[k] < o.argmax[k]):
            o.max[k] = x.max[k]
            o.argmax[k] = x.argmax[k]


def merge_record_partials(partials):
    """(P, G) RECORD_DTYPE partials -> (G,) RECORD_DTYPE: counts and sums add, max/min
    combine, argmax is the lowest photon index among the parts that reach the max.
    One sequential pass in C, no temporaries beyond the output."""
    partials = np.ascontiguousarray(partials, dtype=RECORD_DTYPE)
    if partials.ndim != 2:
        raise ValueError(f"record partials must be (P, G), got {partials.shape}")
    cdef Py_ssize_t P = partials.shape[0], G = partials.shape[1], p, g
    out = new_record_partials(G, 1)
    cdef _RecordRow* o
    cdef _RecordRow* x
    if G and P:
        o = _record_rows(out, 0)
        x = _record_rows(partials, 0)
        with nogil:
            for p in range(P):  # part order; the result does not depend on it
                for g in range(G):
                    _merge_record_row(o + g, x + p * G + g)
    return out[0]


#: the lanes of a slot-maxima row that make each record table (RECORD_TABLES order)
SLOT_LANES = ((0, 1, 2), (3,), (4, 5, 6))
#: the same for narrow rows (4 lanes a slot: max(x, y, z), t, max(pol x, y, z), any)
NARROW_SLOT_LANES = ((0,), (1,), (2,))
cdef enum:
    _NARROW_LANES = 4
    # groups beyond which a thread's rows (a few hundred bytes a group) outgrow the
    # caches: the block loop then prefetches rows, threads may share one table
    _ROWS_CACHED = 4096
#: groups from which a DeviationAccumulator's slot rows are narrow: beyond the caches a
#: row's bytes cost more than the instructions that narrow it
NARROW_SLOTS_FROM = _ROWS_CACHED


cdef int _lanes_for(Py_ssize_t n_groups) except -1:
    """Slot lanes of the rows of a table of ``n_groups`` groups (NARROW_SLOTS_FROM)."""
    return _NARROW_LANES if n_groups >= NARROW_SLOTS_FROM else _SLOT_LANES


cdef inline void _take_slot_lanes(const uint16_t* x, int lanes, uint16_t* m) noexcept nogil:
    """m[k] = max(m[k], the lanes of table k (SLOT_LANES, or NARROW_SLOT_LANES when
    ``lanes`` is 4) of one slot's lanes ``x``)."""
    if lanes == _NARROW_LANES:
        m[0] = max(m[0], x[0])
        m[1] = max(m[1], x[1])
        m[2] = max(m[2], x[2])
        return
    m[0] = max(m[0], x[0], x[1], x[2])
    m[1] = max(m[1], x[3])
    m[2] = max(m[2], x[4], x[5], x[6])


def new_slot_partials(Py_ssize_t n_groups, int n_parts, int maxrec, n_threads=None, *, int lanes=_SLOT_LANES):
    """Empty per-slot maxima (n_parts, n_groups, maxrec, lanes) uint16: lane c of slot r of
    a group is the largest |A - B| of its photons there, in stored counts (8 lanes: x, y,
    z, t, pol x, y, z, wavelength, see SLOT_LANES; 4 narrow ones: NARROW_SLOT_LANES; 0: no
    photon yet). Many rows are first written by ``n_threads`` threads (_touch_threads)."""
    if lanes not in (_SLOT_LANES, _NARROW_LANES):
        raise ValueError(f"lanes must be {_SLOT_LANES} or {_NARROW_LANES}, got {lanes}")
    out = _line_aligned_empty((n_parts, n_groups, maxrec, lanes), np.uint16)
    cdef Py_ssize_t n = n_parts * n_groups, row = maxrec * lanes * sizeof(uint16_t), c
    cdef int nt = _touch_threads(n, n_threads)
    cdef uint8_t[::1] raw
    cdef uint8_t* base
    if n * row:
        raw = out.reshape(-1).view(np.uint8)
        base = &raw[0]
        with nogil:
            for c in prange(_n_blocks(0, n, _TOUCH_ROWS), schedule="static", num_threads=nt):
                memset(base + c * _TOUCH_ROWS * row, 0, min(<Py_ssize_t>_TOUCH_ROWS, n - c * _TOUCH_ROWS) * row)
    return out


def narrow_slot_partials(partials):
    """(P, G, maxrec, 8) slot lanes -> (P, G, maxrec, 4) narrow ones with the same table
    maxima (exact: a max of maxima)."""
    partials = np.asarray(partials, dtype=np.uint16)
    if partials.ndim != 4 or partials.shape[3] != _SLOT_LANES:
        raise ValueError(f"slot partials must be (P, G, maxrec, {_SLOT_LANES}), got {partials.shape}")
    out = np.zeros(partials.shape[:3] + (_NARROW_LANES,), dtype=np.uint16)
    for k, lanes in enumerate(SLOT_LANES):
        np.max(partials[..., list(lanes)], axis=-1, out=out[..., k])
    return out


def merge_slot_partials(partials, int mask=7):
    """(P, G, maxrec, 8 or 4) slot lanes -> (G, 3, maxrec) uint16 per-slot maxima of the
    record tables (RECORD_TABLES order): the max over the parts and over each table's
    lanes (exact, in any order); a table not in ``mask`` (bit k = table k) stays 0."""
    partials = np.ascontiguousarray(partials, dtype=np.uint16)
    if partials.ndim != 4 or partials.shape[3] not in (_SLOT_LANES, _NARROW_LANES):
        raise ValueError(f"slot partials must be (P, G, maxrec, {_SLOT_LANES} or {_NARROW_LANES}), "
                         f"got {partials.shape}")
    cdef Py_ssize_t P = partials.shape[0], G = partials.shape[1], R = partials.shape[2]
    cdef int L = partials.shape[3]
    out = np.zeros((G, 3, R), dtype=np.uint16)
    if not (P and G and R):
        return out
    cdef const uint16_t[:, :, :, ::1] x = partials
    cdef uint16_t[:, :, ::1] o = out
    cdef Py_ssize_t p, g, r
    cdef int k
    cdef uint16_t m[3]
    with nogil:
        for g in range(G):
            for r in range(R):
                m[0] = m[1] = m[2] = 0
                for p in range(P):
                    _take_slot_lanes(&x[p, g, r, 0], L, m)
                for k in range(3):
                    o[g, k, r] = m[k] if (mask >> k) & 1 else 0
    return out


def worst_slots(slots, records):
    """(G, 3) int16: per group and record table, the lowest slot whose maximum in
    ``slots`` (G, 3, maxrec) equals the table's max in ``records`` (G,) RECORD_DTYPE;
    -1 when none (a group without photons). 16 bits: with a million histories the
    column is 6 bytes a history instead of 24."""
    cdef const uint16_t[:, :, ::1] sl = np.ascontiguousarray(slots, dtype=np.uint16)
    rec = np.ascontiguousarray(records, dtype=RECORD_DTYPE)
    cdef Py_ssize_t G = sl.shape[0], R = sl.shape[2], g, r
    if sl.shape[1] != 3 or rec.shape[0] != G:
        raise ValueError(f"slots must be (G, 3, maxrec) and records (G,), got {tuple(slots.shape)}, {rec.shape}")
    if R > 32767:
        raise ValueError(f"slots: maxrec {R} does not fit the int16 slot numbers")
    out = np.full((G, 3), -1, dtype=np.int16)
    cdef int16_t[:, ::1] o = out
    cdef _RecordRow* row
    cdef const uint16_t* x
    cdef int k, m
    cdef int16_t w
    cdef int nt = _touch_threads(G, None)  # a million rows: every core
    if G and R:
        row = _record_rows(rec.reshape(1, G), 0)
        with nogil:
            for g in prange(G, schedule="static", num_threads=nt):
                # the max is one line of a 128-byte row: the hardware prefetcher, seeing
                # every other line asked for, left the loop waiting on each row
                _prefetch(&row[g + 16] if g + 16 < G else &row[g])
                for k in range(3):
                    # from the last slot down, a select and no branch: where the max is
                    # varies from row to row, and a loop that stops there mispredicts
                    x = &sl[g, k, 0]
                    m = row[g].max[k]
                    w = -1
                    for r in range(R - 1, -1, -1):
                        w = <int16_t>r if x[r] == m else w
                    o[g, k] = w
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
