# ------------------------------------------------------------------ the deviation pass
# ONE pass over the aligned photons of both events for all four deviation tables:
# each photon's history is looked up once, its step records give the rpost, rtime and
# rpol deviations, its final values the ox deviation.
#
# Threads take whole blocks of SUM_BLOCK photons (dynamic schedule) and accumulate
# into their own partial tables. The ox float sums are made reproducible by fixing
# their association: photons are summed in index order within a block (absolute
# index of the sliced event), and the block partials are added in block order. So the
# tables are identical for every thread count and every chunking on block boundaries.

cdef enum:
    _SUM_BLOCK = 1 << 16
#: photons per summation block of the ox sums (the association every engine uses);
#: ``add`` ranges must start on a multiple of it
SUM_BLOCK = _SUM_BLOCK


cdef struct _Inputs:
    const char* sa
    Py_ssize_t sas
    const char* sb
    Py_ssize_t sbs
    const char* ra
    Py_ssize_t ras
    const char* rb
    Py_ssize_t rbs
    int maxrec
    const char* oa
    Py_ssize_t oas
    const char* ob
    Py_ssize_t obs
    const uint64_t* slot_code
    const int32_t* slot_entry
    uint64_t mask
    const int64_t* thr
    const double* cut
    int rmask         # record tables to compute: bit k = RECORD_TABLES[k] (0: none)
    bint finals


cdef extern from *:
    """
    /* a photon's group in a block's group list: A and B histories differ (-1: a history
       the index lacks) */
    enum { CYEXT_NOT_ALIGNED = -2 };
    """
    enum: _NOT_ALIGNED "CYEXT_NOT_ALIGNED"


cdef struct _Partials:  # each thread's partial rows: thread t's start at t * G (t * slot_stride)
    _RecordRow* rec
    uint16_t* slot
    _FinalRow* fin
    int32_t* pos
    Py_ssize_t G
    Py_ssize_t slot_stride
    Py_ssize_t pos_stride
    int lanes  # slot lanes of a group's slot row (DeviationAccumulator.slot_lanes)


cdef int64_t _count_unknown(const _Inputs* x, Py_ssize_t s, Py_ssize_t e) noexcept nogil:
    """Aligned photons of [s, e) whose history is not in the index (looked up before any
    table is touched when the tables are too big to keep a copy of)."""
    cdef Py_ssize_t i
    cdef uint64_t ca, last = 0
    cdef bint have_last = False
    cdef int64_t missing = 0
    for i in range(s, e):
        ca = _seq_at(x.sa, x.sas, i)
        if ca != _seq_at(x.sb, x.sbs, i):
            continue
        if have_last and ca == last:  # histories repeat a lot: the last code was found
            continue
        if _lookup(x.slot_code, x.slot_entry, x.mask, ca) < 0:
            missing += 1
        else:
            last, have_last = ca, True
    return missing


cdef struct _BlockSum:  # one block's ox partial sums: groups blk_group[:n], sums blk_sum[:n]
    int32_t* blk_group
    double* blk_sum
    int64_t* n


cdef struct _BlockScratch:  # the arrays of a _BlockSums, for use without the GIL
    int32_t* groups
    double* sums
    int64_t* count
    Py_ssize_t cap


cdef inline _BlockSum _block_at(const _BlockScratch* b, Py_ssize_t k) noexcept nogil:
    cdef _BlockSum out
    out.blk_group, out.blk_sum, out.n = b.groups + k * b.cap, b.sums + k * b.cap, b.count + k
    return out


cdef class _BlockSums:
    """Scratch of one parallel region's ox block partials, one row per block it may do."""
    cdef object groups, sums, count
    cdef bint finals

    def __init__(self, Py_ssize_t nblocks, Py_ssize_t n_groups, bint finals):
        # a block touches at most min(SUM_BLOCK, G) groups
        cdef Py_ssize_t cap = max(1, min(_SUM_BLOCK, n_groups)) if finals else 1
        self.finals = finals
        self.groups = np.empty((nblocks, cap), dtype=np.int32)
        self.sums = np.empty((nblocks, cap), dtype=np.float64)
        self.count = np.zeros(nblocks, dtype=np.int64)

    cdef _BlockScratch view(self):
        cdef int32_t[:, ::1] g = self.groups
        cdef double[:, ::1] v = self.sums
        cdef int64_t[::1] n = self.count
        cdef _BlockScratch out
        out.groups, out.sums, out.count, out.cap = &g[0, 0], &v[0, 0], &n[0], g.shape[1]
        return out

    cdef list taken(self, Py_ssize_t first, blocks, done):
        """``(absolute block, groups, sums)`` of the blocks done (copies): for
        DeviationAccumulator._take_block_sums."""
        if not self.finals:
            return []
        return [(first + int(blocks[k]), self.groups[k, :n].copy(), self.sums[k, :n].copy())
                for k, n in enumerate(self.count) if done[k] and n]


cdef extern from *:
    """
    /* One block of the deviation pass, in C so that each SIMD path is one loop with its
       per-photon kernels inlined (docs/kernels.md, "The block loop"): photons i0 .. i0+n-1,
       photon i's group groups[i - i0] (< 0: skipped; -1, a history the index lacks,
       counted in *unknown). Its record deviations and slot maxima go to its group's
       rows, its ox deviation to its group's row and, in photon order, to the block's
       sums: blk_sum[q] of group blk_group[q], q = pos[g] (-1: none yet); returns the
       block's groups with sums, nq on entry included. */
    typedef struct {
        const char *ra, *rb, *oa, *ob;  /* photon 0 of the events (rx, ox) */
        ptrdiff_t ras, rbs, oas, obs;
        int maxrec;
        int32_t lev[12];                /* record thresholds less one, 4 lanes a table (cyext_record_update) */
        double cut[3];                  /* ox cuts */
        cyext_record_row *rec;          /* this thread's rows (NULL: no record table) */
        uint16_t *slot;                 /* its slot lanes, maxrec x 8 a group */
        cyext_final_row *fin;           /* its ox rows (NULL: no ox table) */
        int32_t *pos, *blk_group;
        double *blk_sum;
        int rows_ahead;                 /* prefetch the rows of the photon CYEXT_AHEAD on */
        int lanes;                      /* slot lanes a group's slot row has: 8, or 4 (narrow) */
    } cyext_block;
    /* Software prefetch CYEXT_AHEAD photons ahead of the hardware's: the pass reads six
       streams at once (rx, ox and ph of A and B) and, on 2 threads, keeps more lines in
       flight this way than the hardware prefetcher alone does (docs/kernels.md,
       "Prefetch"). One hint per 64-byte line of a photon's records (16 maxrec bytes);
       hints past the event's end are harmless (they never fault). */
    #define CYEXT_AHEAD 16
    #define CYEXT_PREFETCH_RECORDS(P, MAXREC)                                                 \\
        for (ptrdiff_t o_ = 0; o_ < 16 * (ptrdiff_t)(MAXREC); o_ += 64) CYEXT_PREFETCH((P) + o_)
    /* With many groups the rows are far bigger than the caches and a photon's rows are
       random lines: their hints go out CYEXT_AHEAD photons early too (rows_ahead) */
    #define CYEXT_PREFETCH_ROWS(G, MASK, FINALS, LANES)                                       \\
        do {                                                                                  \\
            if (MASK) {                                                                       \\
                const char *r_ = (const char *)(b.rec + (G));                                 \\
                CYEXT_PREFETCH(r_); CYEXT_PREFETCH(r_ + 64);                                  \\
                const char *s_ = (const char *)(b.slot + (ptrdiff_t)(G) * (LANES) * b.maxrec); \\
                for (ptrdiff_t o_ = 0; o_ < 2 * (LANES) * (ptrdiff_t)b.maxrec; o_ += 64) CYEXT_PREFETCH(s_ + o_); \\
                CYEXT_PREFETCH(s_ + 2 * (LANES) * (ptrdiff_t)b.maxrec - 1);                  \\
            }                                                                                 \\
            if (FINALS) {                                                                     \\
                CYEXT_PREFETCH(b.fin + (G));                                                  \\
                CYEXT_PREFETCH((const char *)(b.fin + (G) + 1) - 1);                          \\
                CYEXT_PREFETCH(b.pos + (G));                                                  \\
            }                                                                                 \\
        } while (0)
    #define CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, MASK, FINALS, LANES)                       \\
        for (ptrdiff_t i = i0; i < i0 + n; i++) {                                             \\
            const int32_t g = groups[i - i0];                                                 \\
            if (b.rows_ahead && i + CYEXT_AHEAD < i0 + n) {                                   \\
                const int32_t ga_ = groups[i - i0 + CYEXT_AHEAD];                             \\
                if (ga_ >= 0) CYEXT_PREFETCH_ROWS(ga_, MASK, FINALS, LANES);                  \\
            }                                                                                 \\
            if (g < 0) {                                                                      \\
                unknown += g != CYEXT_NOT_ALIGNED;                                            \\
                continue;                                                                     \\
            }                                                                                 \\
            if (MASK) {                                                                       \\
                CYEXT_PREFETCH_RECORDS(b.ra + (i + CYEXT_AHEAD) * b.ras, b.maxrec);           \\
                CYEXT_PREFETCH_RECORDS(b.rb + (i + CYEXT_AHEAD) * b.rbs, b.maxrec);           \\
                int32_t d3[3];                                                                \\
                SLOTS((const int16_t *)(b.ra + i * b.ras), (const int16_t *)(b.rb + i * b.rbs), \\
                      b.maxrec, b.slot + (ptrdiff_t)g * (LANES) * b.maxrec, d3, MASK);        \\
                UPDATE(b.rec + g, d3, b.lev, i, MASK);                                        \\
            }                                                                                 \\
            if (FINALS) {                                                                     \\
                CYEXT_PREFETCH(b.oa + (i + CYEXT_AHEAD) * b.oas);                             \\
                CYEXT_PREFETCH(b.ob + (i + CYEXT_AHEAD) * b.obs);                             \\
                const double d = FINAL((const float *)(b.oa + i * b.oas), (const float *)(b.ob + i * b.obs)); \\
                if (cyext_final_update(b.fin + g, d, b.cut, i)) {                             \\
                    int32_t q = b.pos[g];                                                     \\
                    if (q < 0) {  /* the group's first photon in the block */                 \\
                        q = (int32_t)nq++;                                                    \\
                        b.pos[g] = q;                                                         \\
                        b.blk_group[q] = g;                                                   \\
                        b.blk_sum[q] = 0.0;                                                   \\
                    }                                                                         \\
                    b.blk_sum[q] += d;                                                        \\
                }                                                                             \\
            }                                                                                 \\
        }
    /* one loop per record mask (0..7) and ox table (0, 1): only the asked work compiled in */
    #define CYEXT_BLOCK_CASES(SLOTS, UPDATE, FINAL, LANES)                                    \\
        switch (2 * mask + (finals != 0)) {                                                   \\
        case 1: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 0, 1, LANES) break;                    \\
        case 2: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 1, 0, LANES) break;                    \\
        case 3: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 1, 1, LANES) break;                    \\
        case 4: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 2, 0, LANES) break;                    \\
        case 5: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 2, 1, LANES) break;                    \\
        case 6: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 3, 0, LANES) break;                    \\
        case 7: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 3, 1, LANES) break;                    \\
        case 8: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 4, 0, LANES) break;                    \\
        case 9: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 4, 1, LANES) break;                    \\
        case 10: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 5, 0, LANES) break;                   \\
        case 11: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 5, 1, LANES) break;                   \\
        case 12: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 6, 0, LANES) break;                   \\
        case 13: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 6, 1, LANES) break;                   \\
        case 14: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 7, 0, LANES) break;                   \\
        case 15: CYEXT_BLOCK_LOOP(SLOTS, UPDATE, FINAL, 7, 1, LANES) break;                   \\
        default: break;                                                                       \\
        }
    /* the arguments copied to a local: the row stores cannot alias them for the compiler */
    #define CYEXT_BLOCK_FN(NAME, ATTR, SLOTS, SLOTS4, UPDATE, FINAL)                          \\
        static ATTR ptrdiff_t NAME(const cyext_block *args, ptrdiff_t i0, ptrdiff_t n,        \\
                                   const int32_t *groups, int mask, int finals, ptrdiff_t nq, \\
                                   int64_t *unknown_out) {                                    \\
            const cyext_block b = *args;                                                      \\
            int64_t unknown = 0;                                                              \\
            if (b.lanes == 4) {                                                               \\
                CYEXT_BLOCK_CASES(SLOTS4, UPDATE, FINAL, 4)                                   \\
            } else {                                                                          \\
                CYEXT_BLOCK_CASES(SLOTS, UPDATE, FINAL, 8)                                    \\
            }                                                                                 \\
            *unknown_out += unknown;                                                          \\
            return nq;                                                                        \\
        }
    #define CYEXT_NO_ATTR
    CYEXT_BLOCK_FN(cyext_deviation_block_base, CYEXT_NO_ATTR, cyext_record_slots_t, cyext_record_slots4_t,
                   cyext_record_update, CYEXT_FINAL_BASE)
    #if defined(CYEXT_AVX2)
    CYEXT_BLOCK_FN(cyext_deviation_block_avx2, CYEXT_AVX2_FN, cyext_record_slots_avx2_t, cyext_record_slots4_avx2_t,
                   cyext_record_update_avx2, cyext_final_deviation_avx2_t)
    CYEXT_BLOCK_FN(cyext_deviation_block_avx512, CYEXT_AVX512_FN, cyext_record_slots_avx512_t, cyext_record_slots4_avx512_t,
                   cyext_record_update_avx2, cyext_final_deviation_avx2_t)
    #endif
    static ptrdiff_t cyext_deviation_block(const cyext_block *args, ptrdiff_t i0, ptrdiff_t n,
                                           const int32_t *groups, int mask, int finals, ptrdiff_t nq,
                                           int64_t *unknown) {
    #if defined(CYEXT_AVX2)
        if (cyext_isa == 3) return cyext_deviation_block_avx512(args, i0, n, groups, mask, finals, nq, unknown);
        if (cyext_isa == 2) return cyext_deviation_block_avx2(args, i0, n, groups, mask, finals, nq, unknown);
    #endif
        return cyext_deviation_block_base(args, i0, n, groups, mask, finals, nq, unknown);
    }
    """
    ctypedef struct _Block "cyext_block":
        const char* ra
        const char* rb
        const char* oa
        const char* ob
        Py_ssize_t ras, rbs, oas, obs
        int maxrec
        int32_t lev[12]
        double cut[3]
        _RecordRow* rec
        uint16_t* slot
        _FinalRow* fin
        int32_t* pos
        int32_t* blk_group
        double* blk_sum
        int rows_ahead
        int lanes
    Py_ssize_t _deviation_loop "cyext_deviation_block"(
        const _Block* b, Py_ssize_t i0, Py_ssize_t n, const int32_t* groups, int mask, int finals,
        Py_ssize_t nq, int64_t* unknown) noexcept nogil


cdef enum:
    _LOOKUP_BATCH = 512  # photons whose groups _deviation_block looks up at a time (on the stack)


cdef inline int _owner_of(uint64_t code, int owners) noexcept nogil:
    """The thread that owns a history's rows when the threads share one table (the high
    bits of the hash: the low ones pick the slot)."""
    return <int>((_mix(code) >> 32) % <uint64_t>owners)


cdef void _deviation_block(const _Inputs* x, Py_ssize_t s, Py_ssize_t e, const _Partials* p, int t,
                           _BlockSum blk, const int32_t* groups, int64_t* unknown,
                           int owner=0, int owners=1) noexcept nogil:
    """The deviations of the aligned photons [s, e) into thread ``t``'s partial rows;
    their ox sums into ``blk``, in photon order (the fixed association). ``groups``
    (NULL: look them up here) holds each photon's group, _NOT_ALIGNED for the others.
    With ``owners`` > 1 (and groups NULL) only the photons whose history ``owner``
    owns (_owner_of) are taken: threads that share one table each take their own."""
    cdef _Block b
    cdef int32_t found[_LOOKUP_BATCH]
    cdef Py_ssize_t i, j0, n, nq = 0
    cdef uint64_t ca, last = 0
    cdef int32_t last_g = -1
    cdef int k
    b.ra, b.ras, b.rb, b.rbs, b.maxrec = x.ra, x.ras, x.rb, x.rbs, x.maxrec
    b.oa, b.oas, b.ob, b.obs = x.oa, x.oas, x.ob, x.obs
    for k in range(9):  # d >= thr is d > thr - 1 (a deviation is at most 65535: clamped to int32)
        b.lev[4 * (k // 3) + k % 3] = <int32_t>min(max(x.thr[k] - 1, <int64_t>INT32_MIN), <int64_t>INT32_MAX) \
            if x.rmask else -1
    for k in range(3):
        b.lev[4 * k + 3] = INT32_MAX
    for k in range(3):
        b.cut[k] = x.cut[k] if x.finals else 0.0
    b.rec = p.rec + t * p.G if p.rec else NULL
    b.slot = p.slot + t * p.slot_stride if p.slot else NULL
    b.fin = p.fin + t * p.G if p.fin else NULL
    b.pos = p.pos + t * p.pos_stride
    b.blk_group, b.blk_sum = blk.blk_group, blk.blk_sum
    b.rows_ahead = p.G > _ROWS_CACHED
    b.lanes = p.lanes
    if groups != NULL:  # found while counting the block: ph is not read again
        nq = _deviation_loop(&b, s, e - s, groups, x.rmask, x.finals, nq, unknown)
    else:
        j0 = s
        while j0 < e:
            n = min(<Py_ssize_t>_LOOKUP_BATCH, e - j0)
            for i in range(j0, j0 + n):
                if b.rows_ahead and i + _AHEAD < e:  # many groups: the index is far bigger than the caches
                    _prefetch_slot(x.slot_code, x.slot_entry, x.mask, _seq_at(x.sa, x.sas, i + _AHEAD))
                ca = _seq_at(x.sa, x.sas, i)
                if ca != _seq_at(x.sb, x.sbs, i) or (owners > 1 and _owner_of(ca, owners) != owner):
                    found[i - j0] = _NOT_ALIGNED
                    continue
                if last_g < 0 or ca != last:  # histories repeat a lot: remember the last lookup
                    last, last_g = ca, _lookup(x.slot_code, x.slot_entry, x.mask, ca)
                found[i - j0] = last_g
            nq = _deviation_loop(&b, j0, n, found, x.rmask, x.finals, nq, unknown)
            j0 += n
    for k in range(nq):
        b.pos[blk.blk_group[k]] = -1
    blk.n[0] = nq


cdef class DeviationAccumulator:
    """Per-history aggregates of the rpost, rtime, rpol (``records``) and ox (``finals``)
    tables over the aligned photons of photon ranges given to :meth:`add`.

    index       GroupIndex of the histories to aggregate (group g = row g)
    n_threads   threads asked (effective_threads); ``n_threads`` then holds the threads
                used: fewer when their partial tables would pass PARTIALS_BUDGET
    thresholds  (3, 3) int64: photon beyond cut j of record table k when d >= thresholds[k, j]
    cuts        (3,) float64: photon beyond ox cut j when d > cuts[j]
    records     True (all three record tables), False (none) or the names of the record
                tables to compute (e.g. ``("rpost",)``): the others are not computed and
                keep their empty rows (max -1, slot maxima 0); rx is not read without any
    maxrec      record slots per photon; None: taken from the first ``add``. The result's
                ``slots`` has this many slots per table
    keep_blocks False: add ox block sums to the totals at once, so ``add`` must be called
                in increasing photon order. True: keep them (``blocks``) for a later
                :func:`merge_block_sums`, so ranges may come in any order or from
                several accumulators (distributed runs).
    """
    cdef readonly GroupIndex index
    cdef readonly int n_threads, n_threads_asked, record_mask, maxrec
    cdef readonly int slot_lanes  # of a group's slot row per slot: 8, or 4 past NARROW_SLOTS_FROM groups
    cdef readonly bint records, finals, keep_blocks
    cdef readonly object record_partials, slot_partials, final_partials, sums
    cdef readonly Py_ssize_t rows  # group rows the tables have room for (>= len(index))
    cdef readonly list blocks
    cdef object thresholds, cuts, pos
    cdef Py_ssize_t next_start
    cdef object slots_made  # result(copy=False)'s slot maxima, written over the one part's lanes
    cdef bint views_taken  # result(copy=False) gave the one part's rows: nothing more is added

    def __init__(self, GroupIndex index, thresholds, cuts, n_threads=None, *, records=True,
                 bint finals=True, bint keep_blocks=False, maxrec=None):
        cdef Py_ssize_t G = len(index)
        self.index, self.rows = index, G
        self.n_threads_asked = effective_threads(n_threads)
        self.record_mask = _record_mask(records)
        self.records, self.finals, self.keep_blocks = self.record_mask != 0, finals, keep_blocks
        self.slot_lanes = _lanes_for(G)
        # Each thread fills its own partial table of G rows. With very many histories
        # those tables (and their page faults and merge) cost more than a thread saves:
        # only as many threads as have partials within PARTIALS_BUDGET bytes beyond the
        # first (docs/kernels.md, "Memory"). The result is the same for any count.
        self.n_threads = self._threads_for(G, 16 if maxrec is None else int(maxrec))
        self.thresholds = np.ascontiguousarray(thresholds, dtype=np.int64)
        self.cuts = np.ascontiguousarray(cuts, dtype=np.float64)
        if self.thresholds.shape != (3, 3) or self.cuts.shape != (3,):
            raise ValueError("thresholds must be (3, 3) int64 and cuts (3,) float64")
        if (np.diff(self.thresholds, axis=1) < 0).any():  # warning <= error <= fatal
            raise ValueError(f"thresholds must not decrease with the level, got {self.thresholds.tolist()}")
        _check_cuts(self.cuts)
        self.record_partials = new_record_partials(G if self.records else 0, self.n_threads, self.n_threads_asked)
        self.maxrec = -1
        self.slot_partials = None
        if maxrec is not None:
            self._set_maxrec(int(maxrec))
        self.final_partials = new_final_partials(G if finals else 0, self.n_threads, self.n_threads_asked)
        self.sums = np.zeros(G if finals else 0)
        self.blocks = []
        self.pos = np.full((self.n_threads, max(G, 1)), -1, dtype=np.int32)
        self.next_start = 0

    cdef _set_maxrec(self, int maxrec):
        if maxrec < 0:
            raise ValueError(f"maxrec must be >= 0, got {maxrec}")
        if self.maxrec >= 0:
            if maxrec != self.maxrec:
                raise ValueError(f"maxrec differs: the accumulator has {self.maxrec}, the records {maxrec}")
            return
        self.maxrec = maxrec
        self.slot_partials = new_slot_partials(self.rows if self.records else 0, self.n_threads, maxrec,
                                               self.n_threads_asked, lanes=self.slot_lanes)

    cdef _fill_inputs(self, _Inputs* x, rx_a, rx_b, ox_a, ox_b, const uint64_t[:] seq_a,
                      const uint64_t[:] seq_b, Py_ssize_t start, Py_ssize_t stop):
        """Check one ``add`` range's arrays and point ``x`` at them (all but the index)."""
        cdef Py_ssize_t n = seq_a.shape[0]
        cdef const int16_t[:, :, :, :] rxa
        cdef const int16_t[:, :, :, :] rxb
        cdef const float[:, :, :] oxa
        cdef const float[:, :, :] oxb
        if seq_b.shape[0] != n:
            raise ValueError(f"seq_b has {seq_b.shape[0]} photons, seq_a has {n}")
        if n > MAX_PHOTONS:
            raise ValueError(f"{n} photons: a history's level counts are 32-bit, so an event may have at most "
                             f"{MAX_PHOTONS}; compare it in slices (--msli)")
        if not 0 <= start <= stop <= n:
            raise ValueError(f"photon range [{start}, {stop}) outside 0..{n}")
        if start % _SUM_BLOCK:
            raise ValueError(f"start {start} is not a multiple of SUM_BLOCK ({_SUM_BLOCK})")
        if self.views_taken:
            raise ValueError("result(copy=False) was taken: nothing more can be added")
        if not self.keep_blocks and start < self.next_start:
            raise ValueError(f"ranges must come in increasing order (start {start} < {self.next_start}); "
                             "use keep_blocks=True for any order")
        memset(x, 0, sizeof(_Inputs))
        if stop == start:
            return
        x.rmask, x.finals = self.record_mask, self.finals
        x.sa, x.sas = <const char*>&seq_a[0], seq_a.strides[0]
        x.sb, x.sbs = <const char*>&seq_b[0], seq_b.strides[0]
        if self.records:
            rxa, rxb = rx_a, rx_b
            _check_records(rxa, rxb, seq_a, seq_b)
            x.ra, x.ras, x.rb, x.rbs = <const char*>&rxa[0, 0, 0, 0], rxa.strides[0], \
                <const char*>&rxb[0, 0, 0, 0], rxb.strides[0]
            self._set_maxrec(rxa.shape[1])
            x.maxrec = rxa.shape[1]
        if self.finals:
            oxa, oxb = ox_a, ox_b
            _check_finals(oxa, "ox_a", n)
            _check_finals(oxb, "ox_b", n)
            x.oa, x.oas, x.ob, x.obs = <const char*>&oxa[0, 0, 0], oxa.strides[0], \
                <const char*>&oxb[0, 0, 0], oxb.strides[0]
        cdef const int64_t[:, ::1] thr = self.thresholds
        cdef const double[::1] cut = self.cuts
        x.thr, x.cut = &thr[0, 0], &cut[0]
        self._point_index(x)

    cdef _point_index(self, _Inputs* x):
        cdef GroupIndex index = self.index  # never without slots, even with no codes
        index._check()
        x.slot_code, x.slot_entry, x.mask = &index.slot_code[0], &index.slot_entry[0], index.mask

    cdef _Partials _partials(self):
        """Where each thread's partial rows are, for the current index (NULL: no such table)."""
        cdef _Partials p
        cdef Py_ssize_t G = self.rows  # a thread's rows start at t * rows
        cdef uint16_t[:, :, :, ::1] slot_view
        cdef int32_t[:, ::1] pos = self.pos
        memset(&p, 0, sizeof(p))
        p.G, p.slot_stride, p.lanes = G, G * max(self.maxrec, 0) * self.slot_lanes, self.slot_lanes
        p.rec = _record_rows(self.record_partials, 0) if self.records and G else NULL
        if self.records and G and self.maxrec > 0:
            slot_view = self.slot_partials
            p.slot = &slot_view[0, 0, 0, 0]
        p.fin = _final_rows(self.final_partials, 0) if self.finals and G else NULL
        p.pos, p.pos_stride = &pos[0, 0], pos.shape[1]
        return p

    cdef _regroup(self, GroupIndex index, bint exact=False):
        """Take ``index``, which extends the current one (same codes first, new ones after).
        New groups take empty rows; when the rows run out the tables double, or with
        ``exact`` grow to the new groups only (so a pass that keeps finding histories
        copies each row a few times, not once per growth); see _grow_rows."""
        cdef Py_ssize_t G = len(self.index), G2 = len(index)
        if G2 < G or not np.array_equal(index.codes[:G], self.index.codes):
            raise ValueError("regroup: the new index must extend the current one")
        self.index = index
        if G2 > self.rows:
            if exact:
                self._grow_rows(G2)
            else:
                self._reserve_rows(G2)
        elif self._threads_for(self.rows, 16 if self.maxrec < 0 else self.maxrec) < self.n_threads:
            self._grow_rows(self.rows)

    cdef _grow_rows(self, Py_ssize_t R2):
        """Tables of R2 rows (>= rows), the rows kept; threads capped again by PARTIALS_BUDGET
        (parts beyond the new count are merged into part 0, exactly)."""
        cdef Py_ssize_t R = self.rows
        cdef int P = self.n_threads
        cdef int P2 = self._threads_for(R2, 16 if self.maxrec < 0 else self.maxrec)
        rec, fin, slots = self.record_partials, self.final_partials, self.slot_partials
        if slots is not None and _lanes_for(R2) < self.slot_lanes:  # many groups now: narrow rows
            slots = narrow_slot_partials(slots)
        self.slot_lanes = min(self.slot_lanes, _lanes_for(R2))
        if P2 < P:  # fold the parts: the merged row is the same whichever part held what
            rec = merge_record_partials(rec)[None] if self.records else rec[:P2]
            fin = merge_final_partials(fin)[None] if self.finals else fin[:P2]
            if slots is not None:
                slots = slots.max(axis=0, keepdims=True)
        self.n_threads, self.rows = P2, R2
        self.record_partials = _grown(rec, new_record_partials(R2 if self.records else 0, P2, self.n_threads_asked))
        self.final_partials = _grown(fin, new_final_partials(R2 if self.finals else 0, P2, self.n_threads_asked))
        if slots is not None:
            self.slot_partials = _grown(slots, new_slot_partials(R2 if self.records else 0, P2, self.maxrec,
                                                                        self.n_threads_asked, lanes=self.slot_lanes))
        self.pos = np.full((P2, max(R2, 1)), -1, dtype=np.int32)
        if self.finals:
            self.sums = np.concatenate([self.sums, np.zeros(R2 - R)])

    cdef _reserve_rows(self, Py_ssize_t rows):
        """Rows for at least ``rows`` groups (empty beyond the index), growing as _regroup."""
        if rows > self.rows:
            self._grow_rows(max(rows, 2 * self.rows, 64))

    cdef int _threads_for(self, Py_ssize_t G, int maxrec):
        """Threads whose partial tables of G groups fit PARTIALS_BUDGET beyond the first."""
        cdef Py_ssize_t per_part = G * _row_bytes(self.records, self.finals, maxrec, _lanes_for(G))
        return max(1, min(self.n_threads_asked, 1 + PARTIALS_BUDGET // max(1, per_part)))

    cdef _take_block_sums(self, list blocks):
        """Block partials ``(block, groups, sums)`` of one range: kept (keep_blocks) or added
        to the totals in block order, the fixed association."""
        if self.keep_blocks:
            self.blocks.extend(blocks)
            return
        cdef double[::1] sums = self.sums
        cdef const int32_t[::1] g
        cdef const double[::1] v
        cdef Py_ssize_t q
        for _, groups, values in sorted(blocks, key=lambda item: item[0]):
            g, v = groups, values
            for q in range(g.shape[0]):
                sums[g[q]] += v[q]

    def add(self, rx_a, rx_b, ox_a, ox_b, const uint64_t[:] seq_a, const uint64_t[:] seq_b,
            Py_ssize_t start, Py_ssize_t stop):
        """Aggregate the aligned photons of ``[start, stop)``; ``start`` a multiple of
        SUM_BLOCK. rx_a/rx_b (N, maxrec, 2, 4) int16 and ox_a/ox_b (N, 4, 4) float32,
        each photon's values contiguous; the ones a disabled table needs may be None.

        Everything is checked before the tables are touched (shapes, the range, and that
        every aligned photon's history is in the index): a ValueError leaves the
        accumulator as it was, so the caller may go on with other ranges.
        """
        cdef _Inputs x
        self._fill_inputs(&x, rx_a, rx_b, ox_a, ox_b, seq_a, seq_b, start, stop)
        if stop == start:
            return
        # Nothing may be added when an aligned photon's history is not in the index.
        # When the partial tables are small next to the range, keep a copy and put it
        # back on failure; otherwise look every history up before the pass.
        cdef Py_ssize_t G = len(self.index)
        cdef Py_ssize_t b, bs
        cdef int64_t missing = 0
        saved = None
        if self.n_threads * G * (RECORD_DTYPE.itemsize + FINAL_DTYPE.itemsize) <= 16 * (stop - start):
            saved = (self.record_partials.copy(), self.final_partials.copy(),
                     None if self.slot_partials is None else self.slot_partials.copy())
        else:
            with nogil:
                for b in prange(_n_blocks(start, stop, WORK_BLOCK), schedule="dynamic",
                                num_threads=self.n_threads_asked):
                    bs = start + b * WORK_BLOCK
                    missing += _count_unknown(&x, bs, min(bs + WORK_BLOCK, stop))
            if missing:
                raise ValueError(f"{missing} aligned photons of [{start}, {stop}) have a history that is "
                                 "not in the index; nothing was added")
        cdef Py_ssize_t nblocks = _n_blocks(start, stop, _SUM_BLOCK)
        blocks = np.arange(nblocks, dtype=np.int64)
        unknown = np.zeros(self.n_threads_asked, dtype=np.int64)
        sums = self._deviation_round(&x, start, stop, blocks, np.ones(nblocks, dtype=np.uint8), unknown)
        if unknown.any():
            if saved is not None:
                np.copyto(self.record_partials, saved[0])
                np.copyto(self.final_partials, saved[1])
                if saved[2] is not None:
                    np.copyto(self.slot_partials, saved[2])
            raise ValueError(f"{int(unknown.sum())} aligned photons of [{start}, {stop}) have a history that "
                             "is not in the index; nothing was added")
        self._take_block_sums(sums)
        self.next_start = stop

    cdef list _deviation_round(self, const _Inputs* x, Py_ssize_t start, Py_ssize_t stop, blocks, todo, unknown):
        """One parallel region: the deviations of the SUM_BLOCK blocks ``blocks`` (block
        numbers of the range) whose ``todo`` flag is set; returns their ox block partials
        (see _BlockSums.taken); photons of unknown histories are counted into ``unknown``
        (per thread) and skipped."""
        cdef Py_ssize_t nb = len(blocks), k, bs
        cdef int t
        # rows for one part only (PARTIALS_BUDGET) but more threads asked: the threads
        # share the one table, each taking the histories it owns in every block
        cdef int owners = self.n_threads_asked if self.n_threads == 1 and len(self.index) > _ROWS_CACHED else 1
        cdef _BlockSums scratch = _BlockSums(max(nb * owners, 1), len(self.index), self.finals)
        cdef _BlockScratch sv = scratch.view()
        cdef const int64_t[::1] bl = blocks
        cdef const uint8_t[::1] td = todo
        cdef int64_t[::1] unk = unknown
        cdef _Partials p = self._partials()
        with nogil:
            if owners > 1:
                for t in prange(owners, schedule="static", num_threads=owners):
                    for k in range(nb):
                        if td[k]:
                            bs = start + bl[k] * _SUM_BLOCK
                            _deviation_block(x, bs, min(bs + _SUM_BLOCK, stop), &p, 0, _block_at(&sv, k * owners + t),
                                             NULL, &unk[t], t, owners)
            else:
                for k in prange(nb, schedule="dynamic", num_threads=self.n_threads):
                    if td[k]:
                        t = cyext_thread_id()
                        bs = start + bl[k] * _SUM_BLOCK
                        _deviation_block(x, bs, min(bs + _SUM_BLOCK, stop), &p, t, _block_at(&sv, k), NULL, &unk[t])
        if owners > 1:  # each block's partials, its owners' joined (their groups are disjoint)
            return _joined_by_block(scratch.taken(start // _SUM_BLOCK, np.repeat(blocks, owners),
                                                  np.repeat(todo, owners)))
        return scratch.taken(start // _SUM_BLOCK, blocks, todo)

    def result(self, bint copy=True):
        """Merged aggregates, row g = group g (with ``copy`` False and one thread's partials,
        ``records`` and ``finals`` are views of the accumulator's own tables, no copy: for
        callers that add nothing more). ``records`` (G,) RECORD_DTYPE and ``slots``
        (G, 3, maxrec) uint16, the per-slot maxima of each record table (with ``records``;
        maxrec 0 when no records were seen and none was given), ``finals`` (G,)
        FINAL_DTYPE and ``sums`` (G,) float64 (with
        ``finals``; with keep_blocks ``blocks`` instead of ``sums``: the (block, groups,
        partial sums) for merge_block_sums). Partial results of several accumulators
        merge with merge_record_partials / merge_final_partials on their stacked rows."""
        out = {}
        cdef Py_ssize_t G = len(self.index)
        if self.records:
            if not copy and self.record_partials.shape[0] == 1:
                out["records"] = self.record_partials[0, :G]
                self.views_taken = True
            else:
                out["records"] = merge_record_partials(self.record_partials[:, :G])
        return out | self._rest(copy, G)

    cdef dict _rest(self, bint copy, Py_ssize_t G):
        """result()'s slot maxima and ox rows. With ``copy`` False and one part, the
        accumulator's own rows, no new table: the slot maxima are written over the lanes
        they come from and the pages beyond every table's G rows are given back
        (docs/tables.md, "Many histories")."""
        out = {}
        if self.records:
            if self.slot_partials is None:
                out["slots"] = np.zeros((G, 3, 0), dtype=np.uint16)
            elif self.slots_made is not None:
                out["slots"] = self.slots_made
            elif not copy and self.slot_partials.shape[0] == 1:
                self.slots_made = out["slots"] = _slot_maxima_in_place(self.slot_partials, G, self.record_mask)
            else:
                out["slots"] = merge_slot_partials(self.slot_partials[:, :G], self.record_mask)
            if not copy and self.record_partials.shape[0] == 1:
                _drop_rows_beyond(self.record_partials, G)
        if self.finals:
            if not copy and self.final_partials.shape[0] == 1:
                out["finals"] = self.final_partials[0, :G]
                _drop_rows_beyond(self.final_partials, G)
            else:
                out["finals"] = merge_final_partials(self.final_partials[:, :G])
            if self.keep_blocks:
                out["blocks"] = list(self.blocks)
            else:
                out["sums"] = self.sums[:G] if not copy else self.sums[:G].copy()
        return out


cdef extern from *:
    """
    /* Give the whole pages of [start, end) back to the system (they read as zeros if
       touched again); where there is no madvise, nothing happens. */
    #if defined(__linux__)
    #include <sys/mman.h>
    #include <unistd.h>
    static void cyext_drop_pages(char* start, char* end) {
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t s = ((uintptr_t)start + page - 1) & ~(page - 1);
        uintptr_t e = (uintptr_t)end & ~(page - 1);
        if (e > s)
            madvise((void*)s, e - s, MADV_DONTNEED);
    }
    #else
    static void cyext_drop_pages(char* start, char* end) { (void)start; (void)end; }
    #endif
    """
    void _drop_pages "cyext_drop_pages"(char* start, char* end) noexcept nogil


cdef _drop_rows_beyond(table, Py_ssize_t G):
    """The pages of a one-part (1, rows, ...) table beyond its first G rows back to the
    system: rows reserved for groups that never came cost no memory once the pass ends."""
    cdef uint8_t[::1] raw = table.reshape(-1).view(np.uint8)
    cdef Py_ssize_t row = raw.shape[0] // max(table.shape[1], 1)
    if raw.shape[0] > G * row:
        _drop_pages(<char*>&raw[0] + G * row, <char*>&raw[0] + raw.shape[0])


cdef object _slot_maxima_in_place(lanes, Py_ssize_t G, int mask):
    """merge_slot_partials of a one-part lane table (1, rows, maxrec, 8 or 4) for its
    first G rows, written over the lanes: (G, 3, maxrec), a view. Row g of the maxima
    ends before row g + 1 of the lanes begins (3 lanes' room of 4 or 8), so rows taken in
    order overwrite only lanes already read; the pages after the maxima are given back."""
    cdef Py_ssize_t R = lanes.shape[2], g, r
    cdef int L = lanes.shape[3]
    if lanes.shape[0] != 1 or L not in (_SLOT_LANES, _NARROW_LANES) or not lanes.flags.c_contiguous:
        raise ValueError("_slot_maxima_in_place: one C-contiguous part of slot lanes")
    flat = lanes.reshape(-1)
    if not (G and R):
        return np.zeros((G, 3, R), dtype=np.uint16)
    cdef uint16_t[::1] v = flat
    cdef uint16_t* base = &v[0]
    cdef const uint16_t* x
    row_ = np.empty(3 * R, dtype=np.uint16)
    cdef uint16_t[::1] row_v = row_
    cdef uint16_t* row = &row_v[0]
    cdef uint16_t m[3]
    cdef int k
    with nogil:
        for g in range(G):
            x = base + g * R * L
            for r in range(R):  # as merge_slot_partials
                m[0] = m[1] = m[2] = 0
                _take_slot_lanes(x, L, m)
                for k in range(3):
                    row[k * R + r] = m[k] if (mask >> k) & 1 else 0
                x += L
            memcpy(base + g * 3 * R, row, 3 * R * sizeof(uint16_t))
        _drop_pages(<char*>(base + G * 3 * R), <char*>(base + v.shape[0]))
    return flat[:G * 3 * R].reshape(G, 3, R)


#: bytes of per-thread partial tables a DeviationAccumulator may add beyond its first
#: thread's: with more histories it runs on fewer threads (at least one)
PARTIALS_BUDGET = 64 << 20


cdef Py_ssize_t _row_bytes(bint records, bint finals, int maxrec, int lanes):
    """Bytes one group takes in one thread's partial tables."""
    cdef Py_ssize_t n = sizeof(int32_t)  # its block position (pos)
    if records:
        n += sizeof(_RecordRow) + maxrec * lanes * sizeof(uint16_t)
    if finals:
        n += sizeof(_FinalRow)
    return n


cdef int _record_mask(records) except -1:
    """Bit k set for each record table to compute: True = all, False/None = none, or names."""
    if records is True:
        return 7
    if records is False or records is None:
        return 0
    names = tuple(records)
    unknown = [t for t in names if t not in RECORD_TABLES]
    if unknown:
        raise ValueError(f"records: unknown record tables {unknown}; they are {RECORD_TABLES}")
    return sum(1 << k for k, t in enumerate(RECORD_TABLES) if t in names)


cdef list _joined_by_block(list parts):
    """Block partials ``(block, groups, sums)`` with a block's entries next to each other ->
    one entry a block (groups and sums concatenated): what merge_block_sums and the
    totals expect, one list per block."""
    cdef list out = []
    cdef Py_ssize_t last
    for block, groups, sums in parts:
        last = len(out) - 1  # (the module has no wraparound: no out[-1])
        if last >= 0 and out[last][0] == block:
            out[last] = (block, np.concatenate([out[last][1], groups]), np.concatenate([out[last][2], sums]))
        else:
            out.append((block, groups, sums))
    return out


cdef object _grown(old, new):
    """``new`` (P2, G2, ...) with ``old`` (P <= P2, G <= G2, ...) copied into its first parts
    and groups: partial tables growing rows for new groups."""
    new[:old.shape[0], :old.shape[1]] = old
    return new


def merge_block_sums(Py_ssize_t n_groups, blocks):
    """Totals (n_groups,) float64 from kept block partials ``(block, groups, sums)`` of any
    number of accumulators, added in block order: the same bits as one in-order pass."""
    sums = np.zeros(n_groups)
    cdef double[::1] s = sums
    cdef const int32_t[::1] g
    cdef const double[::1] v
    cdef Py_ssize_t q
    seen = set()
    for block, groups, values in sorted(blocks, key=lambda item: item[0]):
        if block in seen:
            raise ValueError(f"block {block} given twice")
        seen.add(block)
        g, v = groups, values
        for q in range(g.shape[0]):
            s[g[q]] += v[q]
    return sums
