# ------------------------------------------------------------------ aligned SEvt deviations
# The --aligned comparison of an SEvt pair (docs/aligned.md): for every photon whose full
# two-word seqhis is the same in A and B, one deviation per table,
#   d = max |float64(a) - float64(b)| over the table's values (every record slot for the
#       record tables, photon.npy q0..q2 without the integer q1.w for "photon"),
# NaN as soon as one compared difference is NaN. Per history group and table: nitem,
# photons beyond each of 3 cuts (NaN beyond all), NaN count, max/min of the non-NaN
# deviations, argmax (lowest photon index on ties) and the sum.
#
# ONE pass over the photons for all requested tables. Threads take whole blocks of
# SUM_BLOCK photons (the association of the 2019 ox sums): within a block a thread sums
# each group's deviations in photon order into block scratch, and the block sums are
# added to the totals in block order after the parallel region, so every float is the
# same for any thread count and any chunking on SUM_BLOCK boundaries. Counts, max, min
# and argmax go to per-thread partial rows (the _FinalRow of _finals.pxi) merged in part
# order with the lowest index on ties.

#: the tables, in the order of the kernel's table ids
ALIGNED_TABLES = ("pos", "time", "mom", "pol", "wl", "photon")
#: record tables (ids 0..4) and the one photon.npy table (id 5)
cdef enum:
    _A_POS = 0
    _A_TIME = 1
    _A_MOM = 2
    _A_POL = 3
    _A_WL = 4
    _A_PHOTON = 5
    _A_NTAB = 6
    _A_NREC = 5

# float offsets in a 16-float sphoton: q0 pos.xyz t, q1 mom.xyz (q1.w an integer),
# q2 pol.xyz wavelength (q3 integers)
cdef int _A_TABLE_OF[12]
_A_TABLE_OF[:] = [_A_POS, _A_POS, _A_POS, _A_TIME, _A_MOM, _A_MOM, _A_MOM, -1,
                  _A_POL, _A_POL, _A_POL, _A_WL]


cdef class GroupIndex128:
    """Read-only map from a two-word history (lo, hi) to its group 0..G-1 (the order of
    ``lo``/``hi``): the histories a comparison aggregates, e.g. those present in A and B."""
    cdef readonly object lo
    cdef readonly object hi
    cdef uint64_t[::1] slot_lo
    cdef uint64_t[::1] slot_hi
    cdef int32_t[::1] slot_entry
    cdef uint64_t mask

    def __init__(self, lo, hi):
        lo = np.ascontiguousarray(lo, dtype=np.uint64).reshape(-1)
        hi = np.ascontiguousarray(hi, dtype=np.uint64).reshape(-1)
        if lo.shape != hi.shape:
            raise ValueError(f"GroupIndex128: lo and hi differ in length ({len(lo)}, {len(hi)})")
        if len(lo) >= (1 << 31) - 1:
            raise ValueError("GroupIndex128: too many histories")
        self.lo, self.hi = lo, hi
        cdef Py_ssize_t cap = _capacity_for(len(lo))
        self.slot_lo = np.zeros(cap, dtype=np.uint64)
        self.slot_hi = np.zeros(cap, dtype=np.uint64)
        self.slot_entry = np.full(cap, -1, dtype=np.int32)
        self.mask = cap - 1
        cdef const uint64_t[::1] l = lo
        cdef const uint64_t[::1] h = hi
        cdef Py_ssize_t i
        cdef int64_t s
        for i in range(l.shape[0]):
            s = _find_slot128(&self.slot_lo[0], &self.slot_hi[0], &self.slot_entry[0], self.mask, l[i], h[i])
            if self.slot_entry[s] >= 0:
                raise ValueError("GroupIndex128: histories must be distinct")
            self.slot_lo[s] = l[i]
            self.slot_hi[s] = h[i]
            self.slot_entry[s] = <int32_t>i

    def __len__(self):
        return len(self.lo)

    def lookup(self, lo, hi):
        """Group of each (lo, hi) history (int32), -1 where it is not in the index."""
        cdef const uint64_t[:] l = np.asarray(lo, dtype=np.uint64).reshape(-1)
        cdef const uint64_t[:] h = np.asarray(hi, dtype=np.uint64).reshape(-1)
        if l.shape[0] != h.shape[0]:
            raise ValueError("lookup: lo and hi differ in length")
        out = np.empty(l.shape[0], dtype=np.int32)
        cdef int32_t[::1] o = out
        cdef Py_ssize_t i
        for i in range(l.shape[0]):
            o[i] = _lookup128(self, l[i], h[i])
        return out


cdef inline int32_t _lookup128(GroupIndex128 index, uint64_t lo, uint64_t hi):
    cdef int64_t s = _find_slot128(&index.slot_lo[0], &index.slot_hi[0], &index.slot_entry[0],
                                   index.mask, lo, hi)
    return index.slot_entry[s]


cdef struct _AInputs:
    const char* sa      # seqhis rows: word 0 at +0, word 1 at +sw
    Py_ssize_t sas, saw
    const char* sb
    Py_ssize_t sbs, sbw
    const char* ra      # record rows (maxrec x 16 values, contiguous)
    Py_ssize_t ras
    bint ra64
    const char* rb
    Py_ssize_t rbs
    bint rb64
    int maxrec
    const char* pa      # photon rows (16 float32, contiguous)
    Py_ssize_t pas
    const char* pb
    Py_ssize_t pbs
    const uint64_t* slot_lo
    const uint64_t* slot_hi
    const int32_t* slot_entry
    uint64_t mask
    int ntab            # requested tables
    int tab[_A_NTAB]    # table id of each requested table
    int col[_A_NTAB]    # requested column of each table id, -1 when not requested
    bint records
    const double* cut   # (ntab, 3)


cdef inline double _rd(const char* p, int k, bint f64) noexcept nogil:
    if f64:
        return (<const double*>p)[k]
    return <double>(<const float*>p)[k]


cdef inline void _dev_update(double* d, double x) noexcept nogil:
    # NaN sticks: once d is NaN, "x > d" is false; a NaN x replaces d
    if isnan(x) or x > d[0]:
        d[0] = x


cdef extern from *:
    """
    /* The record deviations of one photon with float32 records, 4 doubles a register:
       per slot q0 (pos.xyz, t), q1 (mom.xyz and the integer q1.w, never used) and q2
       (pol.xyz, wl), |double(a) - double(b)| lane by lane, the running max of each lane
       over the slots, and an unordered-compare mask for NaN. The differences are the
       scalar loop's doubles, every |.| is >= +0 and a max of those is exact in any order,
       so d[0..4] (pos, time, mom, pol, wl) are the scalar loop's bits, NaN where one of a
       table's differences is NaN (maxpd drops NaN: the mask says so). Returns 0 when the
       CPU has no AVX2 (the caller runs the scalar loop). With 32 slots of 12 values the
       scalar loop was compute-bound: 2.6x a read of the same bytes (docs/aligned.md). */
    #if defined(CYEXT_AVX2)
    CYEXT_AVX2_INLINE void cyext_aligned_slots_avx2(const float *a, const float *b, int maxrec, double *d) {
        const __m256d sign = _mm256_set1_pd(-0.0);
        __m256d m0 = _mm256_setzero_pd(), m1 = m0, m2 = m0, n0 = m0, n1 = m0, n2 = m0;
        for (int s = 0; s < maxrec; s++, a += 16, b += 16) {
            CYEXT_PREFETCH(a + 256);  /* a slot is a line: the line 1 KB on (the next photon's, past its end) */
            CYEXT_PREFETCH(b + 256);
            __m256d x0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a)), _mm256_cvtps_pd(_mm_loadu_ps(b)));
            __m256d x1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + 4)), _mm256_cvtps_pd(_mm_loadu_ps(b + 4)));
            __m256d x2 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + 8)), _mm256_cvtps_pd(_mm_loadu_ps(b + 8)));
            n0 = _mm256_or_pd(n0, _mm256_cmp_pd(x0, x0, _CMP_UNORD_Q));
            n1 = _mm256_or_pd(n1, _mm256_cmp_pd(x1, x1, _CMP_UNORD_Q));
            n2 = _mm256_or_pd(n2, _mm256_cmp_pd(x2, x2, _CMP_UNORD_Q));
            m0 = _mm256_max_pd(m0, _mm256_andnot_pd(sign, x0));
            m1 = _mm256_max_pd(m1, _mm256_andnot_pd(sign, x1));
            m2 = _mm256_max_pd(m2, _mm256_andnot_pd(sign, x2));
        }
        double v0[4], v1[4], v2[4];
        _mm256_storeu_pd(v0, m0);
        _mm256_storeu_pd(v1, m1);
        _mm256_storeu_pd(v2, m2);
        const int k0 = _mm256_movemask_pd(n0), k1 = _mm256_movemask_pd(n1), k2 = _mm256_movemask_pd(n2);
        d[0] = (k0 & 7) ? NAN : fmax(fmax(v0[0], v0[1]), v0[2]);
        d[1] = (k0 & 8) ? NAN : v0[3];
        d[2] = (k1 & 7) ? NAN : fmax(fmax(v1[0], v1[1]), v1[2]);
        d[3] = (k2 & 7) ? NAN : fmax(fmax(v2[0], v2[1]), v2[2]);
        d[4] = (k2 & 8) ? NAN : v2[3];
    }
    static CYEXT_AVX2_FN void cyext_aligned_slots_avx2_fn(const float *a, const float *b, int maxrec, double *d) {
        cyext_aligned_slots_avx2(a, b, maxrec, d);
    }
    #endif
    static int cyext_aligned_slots(const float *a, const float *b, int maxrec, double *d) {
    #if defined(CYEXT_AVX2)
        if (cyext_isa >= 2) {
            cyext_aligned_slots_avx2_fn(a, b, maxrec, d);
            return 1;
        }
    #endif
        (void)a; (void)b; (void)maxrec; (void)d;
        return 0;
    }
    """
    int _aligned_slots_simd "cyext_aligned_slots"(const float* a, const float* b, int maxrec, double* d) noexcept nogil


cdef inline void _aligned_record_devs(const _AInputs* x, Py_ssize_t i, double* d) noexcept nogil:
    """d[0..4] = the pos, time, mom, pol, wl deviations of photon i over every record slot."""
    cdef const char* a = x.ra + i * x.ras
    cdef const char* b = x.rb + i * x.rbs
    cdef Py_ssize_t sa = 64 * (2 if x.ra64 else 1), sb = 64 * (2 if x.rb64 else 1)
    cdef int s, k, t
    if not x.ra64 and not x.rb64 and _aligned_slots_simd(<const float*>a, <const float*>b, x.maxrec, d):
        return
    for t in range(_A_NREC):
        d[t] = 0.0
    for s in range(x.maxrec):
        for k in range(12):
            t = _A_TABLE_OF[k]
            if t >= 0:
                _dev_update(d + t, fabs(_rd(a, k, x.ra64) - _rd(b, k, x.rb64)))
        a += sa
        b += sb


cdef inline double _aligned_photon_dev(const _AInputs* x, Py_ssize_t i) noexcept nogil:
    """The photon.npy deviation of photon i: q0, q1.xyz, q2 (11 values)."""
    cdef const float* a = <const float*>(x.pa + i * x.pas)
    cdef const float* b = <const float*>(x.pb + i * x.pbs)
    cdef double d = 0.0
    cdef int k
    for k in range(12):
        if k != 7:
            _dev_update(&d, fabs(<double>a[k] - <double>b[k]))
    return d


cdef void _aligned_block(const _AInputs* x, Py_ssize_t s, Py_ssize_t e, Py_ssize_t G,
                         _FinalRow* rows, int32_t* pos, int32_t* blk_group, double* blk_sum,
                         int64_t* blk_n, int64_t* aligned, int64_t* unknown) noexcept nogil:
    """Photons [s, e) (one SUM_BLOCK) into this thread's rows (ntab x G) and the block's sums."""
    cdef Py_ssize_t i
    cdef uint64_t alo, ahi, last_lo = 0, last_hi = 0
    cdef int32_t g, last_g = -1, q, nq = 0
    cdef int64_t h
    cdef int c, t
    cdef double dev[_A_NTAB]
    cdef double d
    for i in range(s, e):
        alo = (<const uint64_t*>(x.sa + i * x.sas))[0]
        ahi = (<const uint64_t*>(x.sa + i * x.sas + x.saw))[0]
        if alo != (<const uint64_t*>(x.sb + i * x.sbs))[0] or ahi != (<const uint64_t*>(x.sb + i * x.sbs + x.sbw))[0]:
            continue
        aligned[0] += 1
        if last_g >= 0 and alo == last_lo and ahi == last_hi:  # histories repeat: the last lookup
            g = last_g
        else:
            h = _find_slot128(x.slot_lo, x.slot_hi, x.slot_entry, x.mask, alo, ahi)
            g = x.slot_entry[h]
            last_lo, last_hi, last_g = alo, ahi, g
        if g < 0:
            unknown[0] += 1
            continue
        if x.records:
            _aligned_record_devs(x, i, dev)
        if x.col[_A_PHOTON] >= 0:
            dev[_A_PHOTON] = _aligned_photon_dev(x, i)
        q = pos[g]
        if q < 0:  # first photon of this group in the block
            q = nq
            nq += 1
            pos[g] = q
            blk_group[q] = g
            for c in range(x.ntab):
                blk_sum[q * x.ntab + c] = 0.0
        for c in range(x.ntab):
            d = dev[x.tab[c]]
            if _final_update(rows + c * G + g, d, x.cut + 3 * c, i):
                blk_sum[q * x.ntab + c] += d
    for q in range(nq):
        pos[blk_group[q]] = -1
    blk_n[0] = nq


cdef class AlignedAccumulator:
    """Per-history aggregates of the aligned SEvt tables over the photon ranges given to
    :meth:`add` (ranges start on a multiple of SUM_BLOCK and come in increasing order).

    index    GroupIndex128 of the histories to aggregate (group g = row g)
    tables   names from ALIGNED_TABLES to compute (only these are computed)
    cuts     (len(tables), 3) float64: a photon is beyond cut j of table c when d > cuts[c, j]
    """
    cdef readonly GroupIndex128 index
    cdef readonly int n_threads
    cdef readonly tuple tables
    cdef readonly object partials, sums
    cdef readonly int64_t n_aligned, n_unknown
    cdef object cuts, pos, blk_group, blk_sum, blk_n
    cdef Py_ssize_t next_start

    def __init__(self, GroupIndex128 index, tables, cuts, n_threads=None):
        tables = tuple(tables)
        for t in tables:
            if t not in ALIGNED_TABLES:
                raise ValueError(f"unknown aligned table {t!r}: expected one of {', '.join(ALIGNED_TABLES)}")
        if len(set(tables)) != len(tables) or not tables:
            raise ValueError(f"tables must be distinct and at least one: {tables}")
        self.cuts = np.ascontiguousarray(cuts, dtype=np.float64)
        if self.cuts.shape != (len(tables), 3):
            raise ValueError(f"cuts must be ({len(tables)}, 3) float64, got {self.cuts.shape}")
        _check_cuts(self.cuts)
        self.index, self.tables = index, tables
        self.n_threads = effective_threads(n_threads)
        cdef Py_ssize_t G = len(index)
        self.partials = new_final_partials(len(tables) * G, self.n_threads)
        self.sums = np.zeros((len(tables), G))
        self.pos = np.full((self.n_threads, max(G, 1)), -1, dtype=np.int32)
        self.blk_group = self.blk_sum = self.blk_n = None
        self.n_aligned = self.n_unknown = 0
        self.next_start = 0

    cdef _scratch(self, Py_ssize_t nblocks):
        cdef Py_ssize_t cap = max(1, min(_SUM_BLOCK, len(self.index)))
        if self.blk_n is None or self.blk_n.shape[0] < nblocks:
            self.blk_group = np.zeros((nblocks, cap), dtype=np.int32)
            self.blk_sum = np.zeros((nblocks, cap * len(self.tables)), dtype=np.float64)
            self.blk_n = np.zeros(nblocks, dtype=np.int64)
        self.blk_n[:] = 0

    def add(self, const uint64_t[:, :] seqhis_a, const uint64_t[:, :] seqhis_b, record_a, record_b,
            photon_a, photon_b, Py_ssize_t start, Py_ssize_t stop):
        """Aggregate the aligned photons of ``[start, stop)``.

        seqhis_a/b (N, 2) uint64 (``seq[:, 0]`` views); record_a/b (N, maxrec, 4, 4) float32
        or float64 with each photon's slots contiguous (None when no record table is
        asked); photon_a/b (N, 4, 4) float32, each photon contiguous (None without the
        photon table). Everything is checked before the tables are touched.
        """
        cdef Py_ssize_t n = seqhis_a.shape[0]
        cdef _AInputs x
        cdef Py_ssize_t G = len(self.index)
        cdef int c, tid
        if seqhis_a.shape[1] != 2 or seqhis_b.shape[1] != 2:
            raise ValueError("seqhis arrays must be (N, 2) words")
        if seqhis_b.shape[0] != n:
            raise ValueError(f"seqhis_b has {seqhis_b.shape[0]} photons, seqhis_a has {n}")
        if not 0 <= start <= stop <= n:
            raise ValueError(f"photon range [{start}, {stop}) outside 0..{n}")
        if start % _SUM_BLOCK:
            raise ValueError(f"start {start} is not a multiple of SUM_BLOCK ({_SUM_BLOCK})")
        if start < self.next_start:
            raise ValueError(f"ranges must come in increasing order (start {start} < {self.next_start})")
        if stop == start:
            return
        memset(&x, 0, sizeof(x))
        x.ntab = len(self.tables)
        for c in range(_A_NTAB):
            x.col[c] = -1
        for c, name in enumerate(self.tables):
            tid = ALIGNED_TABLES.index(name)
            x.tab[c] = tid
            x.col[tid] = c
            if tid < _A_NREC:
                x.records = True
        x.sa, x.sas, x.saw = <const char*>&seqhis_a[0, 0], seqhis_a.strides[0], seqhis_a.strides[1]
        x.sb, x.sbs, x.sbw = <const char*>&seqhis_b[0, 0], seqhis_b.strides[0], seqhis_b.strides[1]
        # keep the memoryviews (and so the buffers) alive for the pass
        cdef const float[:, :, :, :] ra32
        cdef const float[:, :, :, :] rb32
        cdef const double[:, :, :, :] ra64
        cdef const double[:, :, :, :] rb64
        cdef const float[:, :, :] pa
        cdef const float[:, :, :] pb
        if x.records:
            shapes = []
            for side, rec in (("record_a", record_a), ("record_b", record_b)):
                if rec is None:
                    raise ValueError(f"{side} is needed for the record tables")
                dt = np.dtype(rec.dtype)
                if dt not in (np.dtype(np.float32), np.dtype(np.float64)) or rec.ndim != 4 or \
                        rec.shape[0] != n or rec.shape[2:] != (4, 4):
                    raise ValueError(f"{side} must be ({n}, maxrec, 4, 4) float32 or float64, got "
                                     f"{rec.shape} {rec.dtype}")
                if rec.strides[3] != dt.itemsize or rec.strides[2] != 4 * dt.itemsize or \
                        (rec.shape[1] > 1 and rec.strides[1] != 16 * dt.itemsize):
                    raise ValueError(f"{side}: each photon's record slots must be C-contiguous")
                shapes.append(rec.shape[1])
            if shapes[0] != shapes[1]:
                raise ValueError(f"record_a and record_b differ in maxrec ({shapes[0]}, {shapes[1]})")
            x.maxrec = shapes[0]
            if record_a.dtype == np.float64:
                ra64 = record_a
                x.ra, x.ras, x.ra64 = <const char*>&ra64[0, 0, 0, 0], ra64.strides[0], True
            else:
                ra32 = record_a
                x.ra, x.ras = <const char*>&ra32[0, 0, 0, 0], ra32.strides[0]
            if record_b.dtype == np.float64:
                rb64 = record_b
                x.rb, x.rbs, x.rb64 = <const char*>&rb64[0, 0, 0, 0], rb64.strides[0], True
            else:
                rb32 = record_b
                x.rb, x.rbs = <const char*>&rb32[0, 0, 0, 0], rb32.strides[0]
        if x.col[_A_PHOTON] >= 0:
            if photon_a is None or photon_b is None:
                raise ValueError("photon_a and photon_b are needed for the photon table")
            pa, pb = photon_a, photon_b
            _check_finals(pa, "photon_a", n)
            _check_finals(pb, "photon_b", n)
            x.pa, x.pas, x.pb, x.pbs = <const char*>&pa[0, 0, 0], pa.strides[0], \
                <const char*>&pb[0, 0, 0], pb.strides[0]
        cdef GroupIndex128 index = self.index
        x.slot_lo, x.slot_hi, x.slot_entry, x.mask = &index.slot_lo[0], &index.slot_hi[0], \
            &index.slot_entry[0], index.mask
        cdef const double[:, ::1] cut = self.cuts
        x.cut = &cut[0, 0]

        cdef Py_ssize_t nblocks = _n_blocks(start, stop, _SUM_BLOCK)
        self._scratch(nblocks)
        cdef _FinalRow* rows = _final_rows(self.partials, 0) if G else NULL
        cdef Py_ssize_t per_part = x.ntab * G
        cdef int32_t[:, ::1] pos = self.pos
        cdef int32_t[:, ::1] bg = self.blk_group
        cdef double[:, ::1] bsum = self.blk_sum
        cdef int64_t[::1] bn = self.blk_n
        counts = np.zeros((self.n_threads, 2), dtype=np.int64)
        cdef int64_t[:, ::1] cnt = counts
        cdef Py_ssize_t b, bs
        cdef int t
        if G:
            with nogil:
                for b in prange(nblocks, schedule="dynamic", num_threads=self.n_threads):
                    t = cyext_thread_id()
                    bs = start + b * _SUM_BLOCK
                    _aligned_block(&x, bs, min(bs + _SUM_BLOCK, stop), G, rows + t * per_part, &pos[t, 0],
                                   &bg[b, 0], &bsum[b, 0], &bn[b], &cnt[t, 0], &cnt[t, 1])
            _add_aligned_sums(self.sums, bg, bsum, bn, nblocks, x.ntab)
            self.n_aligned += counts[:, 0].sum()
            self.n_unknown += counts[:, 1].sum()
        else:  # no group: only count the photons with equal histories
            eq = np.asarray(seqhis_a[start:stop]) == np.asarray(seqhis_b[start:stop])
            k = int(eq.all(axis=1).sum())
            self.n_aligned += k
            self.n_unknown += k
        self.next_start = stop

    def result(self):
        """``rows`` (T, G) FINAL_DTYPE (counts, max, min, argmax per table and group, row order
        of ``tables``), ``sums`` (T, G) float64, ``n_aligned`` (photons with equal histories)
        and ``n_unknown`` (of them, histories not in the index: not aggregated)."""
        T, G = len(self.tables), len(self.index)
        merged = merge_final_partials(self.partials) if T * G else np.zeros(0, FINAL_DTYPE)
        return {"rows": merged.reshape(T, G), "sums": self.sums.copy(),
                "n_aligned": int(self.n_aligned), "n_unknown": int(self.n_unknown)}


cdef void _add_aligned_sums(double[:, ::1] sums, int32_t[:, ::1] bg, double[:, ::1] bsum, int64_t[::1] bn,
                            Py_ssize_t nblocks, int ntab) noexcept:
    cdef Py_ssize_t b, q
    cdef int c
    for b in range(nblocks):  # block order: the fixed association
        for q in range(bn[b]):
            for c in range(ntab):
                sums[c, bg[b, q]] += bsum[b, q * ntab + c]
