# ------------------------------------------------------------------ sorting history codes
# With a million distinct histories the sorts of their codes cost more than counting
# them: numpy's sort of 1M uint64 takes about 60 ms, and np.lexsort of 1M (hi, lo)
# pairs about 230 ms (docs/kernels.md, "Sorting codes"). An LSD radix sort reads and
# writes every key once a digit, a digit that is the same in every key is skipped
# (short histories leave the high nibbles empty), so it takes a few ms a pass. Both
# sorts are stable, so the orders are numpy's to the element.

cdef extern from *:
    """
    /* byte digits: 8 passes at most, but 256 destinations a pass keep the scatter's
       lines and pages cached (11-bit digits, 6 passes, took twice as long for 1M keys) */
    enum { CYEXT_RADIX_BITS = 8, CYEXT_RADIX = 1 << 8, CYEXT_RADIX_DIGITS = 8 };
    #define CYEXT_DIGIT(v, d) ((size_t)(((v) >> (CYEXT_RADIX_BITS * (d))) & (CYEXT_RADIX - 1)))

    /* counts[d][x]: keys whose digit d is x, for every digit of every key, in one read;
       returns a mask of the digits that differ between keys (the passes to make) */
    static int cyext_radix_counts(const uint64_t* keys, int64_t n, int64_t (*counts)[CYEXT_RADIX]) {
        int64_t i;
        int d, todo = 0;
        memset(counts, 0, sizeof(int64_t) * CYEXT_RADIX * CYEXT_RADIX_DIGITS);
        for (i = 0; i < n; i++) {
            uint64_t v = keys[i];
            for (d = 0; d < CYEXT_RADIX_DIGITS; d++)
                counts[d][CYEXT_DIGIT(v, d)]++;
        }
        for (d = 0; d < CYEXT_RADIX_DIGITS; d++)
            if (n && counts[d][CYEXT_DIGIT(keys[0], d)] != n)
                todo |= 1 << d;
        return todo;
    }

    /* counts of one digit -> where each digit's keys start */
    static void cyext_radix_starts(int64_t* c) {
        int64_t s = 0, k;
        int x;
        for (x = 0; x < CYEXT_RADIX; x++) { k = c[x]; c[x] = s; s += k; }
    }

    /* keys[0:n] sorted ascending in place; tmp: room for n keys */
    static void cyext_sort_u64(uint64_t* keys, uint64_t* tmp, int64_t n, int64_t (*counts)[CYEXT_RADIX]) {
        int todo = cyext_radix_counts(keys, n, counts), d;
        uint64_t *src = keys, *dst = tmp, *t;
        int64_t i;
        for (d = 0; d < CYEXT_RADIX_DIGITS; d++) {
            if (!(todo >> d & 1)) continue;
            int64_t* at = counts[d];
            cyext_radix_starts(at);
            for (i = 0; i < n; i++) {
                uint64_t v = src[i];
                dst[at[CYEXT_DIGIT(v, d)]++] = v;
            }
            t = src; src = dst; dst = t;
        }
        if (src != keys) memcpy(keys, src, (size_t)n * sizeof(uint64_t));
    }

    /* order[0:n] of the rows of K key words (word w of row i at keys[w][i], not
       changed), by word K-1, then K-2, ..., then 0, equal rows in input order: numpy's
       lexsort(keys). Word by word from the least significant, byte digits first: only
       the word being sorted travels with the row index (a later word is gathered
       through the order so far, one read a row), so a pass moves 16 bytes a row
       whatever K (32-bit indices saved 4% more at 2M rows: not worth a second copy).
       cur, t_cur: n words of scratch; order, t_order: n indices */
    static void cyext_lexorder(const uint64_t* const* keys, uint64_t* cur, uint64_t* t_cur, int64_t* order,
                               int64_t* t_order, int K, int64_t n, int64_t (*counts)[CYEXT_RADIX]) {
        int w, d, todo;
        int64_t i, j;
        uint64_t *k = cur, *tk = t_cur, *sw;
        int64_t *o = order, *to = t_order, *so;
        for (i = 0; i < n; i++) order[i] = i;
        for (w = 0; w < K; w++) {
            const uint64_t* word = keys[w];
            for (i = 0; i < n; i++) k[i] = word[o[i]];
            todo = cyext_radix_counts(k, n, counts);
            for (d = 0; d < CYEXT_RADIX_DIGITS; d++) {
                if (!(todo >> d & 1)) continue;
                int64_t* at = counts[d];
                cyext_radix_starts(at);
                for (i = 0; i < n; i++) {
                    j = at[CYEXT_DIGIT(k[i], d)]++;
                    tk[j] = k[i];
                    to[j] = o[i];
                }
                sw = k; k = tk; tk = sw;
                so = o; o = to; to = so;
            }
        }
        if (o != order) memcpy(order, o, (size_t)n * sizeof(int64_t));
    }
    """
    enum: _RADIX "CYEXT_RADIX"
    enum: _RADIX_DIGITS "CYEXT_RADIX_DIGITS"
    void _sort_u64 "cyext_sort_u64"(uint64_t* keys, uint64_t* tmp, int64_t n, int64_t (*counts)[_RADIX]) noexcept nogil
    void _lexorder "cyext_lexorder"(const uint64_t* const* keys, uint64_t* cur, uint64_t* t_cur, int64_t* order,
                                    int64_t* t_order, int K, int64_t n, int64_t (*counts)[_RADIX]) noexcept nogil


#: below this many keys numpy's sorts are used (as fast, or the difference is too small to matter)
RADIX_MIN = 1 << 12


def sort_codes(uint64_t[::1] codes):
    """Sort uint64 ``codes`` ascending in place (a radix sort: the same array as
    ``np.sort``; for a million codes several times faster)."""
    cdef Py_ssize_t n = codes.shape[0]
    if n < RADIX_MIN:
        np.asarray(codes).sort()
        return
    tmp_ = np.empty(n, dtype=np.uint64)
    counts_ = np.empty((_RADIX_DIGITS, _RADIX), dtype=np.int64)
    cdef uint64_t[::1] tmp = tmp_
    cdef int64_t[:, ::1] counts = counts_
    with nogil:
        _sort_u64(&codes[0], &tmp[0], n, <int64_t (*)[_RADIX]>&counts[0, 0])


def lexorder(keys):
    """int64 row order of uint64 key columns ``keys`` (a sequence of K equal-length
    columns, or a (K, n) array), sorted by the last, then the one before, ...: exactly
    ``np.lexsort(keys)`` (stable), by a radix sort; the keys are not changed."""
    if not isinstance(keys, (np.ndarray, list, tuple)) or (isinstance(keys, np.ndarray) and keys.ndim != 2):
        raise ValueError("lexorder: give a list or tuple of key columns or a (K, n) array, "
                         f"not {type(keys).__name__} of shape {np.shape(keys)}")
    cols = [np.asarray(k) for k in keys]
    if not cols:
        raise ValueError("lexorder: no keys")
    cdef Py_ssize_t n = len(cols[0])
    cdef int K = len(cols)
    for k in cols:
        if k.ndim != 1 or k.dtype != np.uint64 or len(k) != n:
            raise ValueError(f"lexorder: keys must be 1-d uint64 columns of one length ({n}), "
                             f"got {k.dtype} {k.shape}")
    if n < RADIX_MIN:
        return np.lexsort(cols)
    cols = [np.ascontiguousarray(k) for k in cols]  # kept alive (and unchanged) while they are read
    words_ = np.array([k.ctypes.data for k in cols], dtype=np.uintp)
    cur_ = np.empty((2, n), dtype=np.uint64)  # the word being sorted, and as much scratch
    order_ = np.empty(n, dtype=np.int64)
    t_order_ = np.empty(n, dtype=np.int64)
    counts_ = np.empty((_RADIX_DIGITS, _RADIX), dtype=np.int64)
    cdef uintptr_t[::1] words = words_
    cdef uint64_t[:, ::1] cur = cur_
    cdef int64_t[::1] order = order_
    cdef int64_t[::1] t_order = t_order_
    cdef int64_t[:, ::1] counts = counts_
    with nogil:
        _lexorder(<const uint64_t* const*>&words[0], &cur[0, 0], &cur[1, 0], &order[0], &t_order[0], K, n,
                  <int64_t (*)[_RADIX]>&counts[0, 0])
    return order_
