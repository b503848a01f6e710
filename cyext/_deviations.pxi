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


cdef void _deviation_block(const _Inputs* x, Py_ssize_t s, Py_ssize_t e,
                           _RecordRow* rec, uint16_t* slot, _FinalRow* fin, int32_t* pos,
                           int32_t* blk_group, double* blk_sum, int64_t* blk_n,
                           int64_t* unknown) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t ca, last = 0
    cdef int32_t g, last_g = -1, q, nq = 0
    cdef int32_t d3[3]
    cdef double d
    for i in range(s, e):
        ca = _seq_at(x.sa, x.sas, i)
        if ca != _seq_at(x.sb, x.sbs, i):
            continue
        if last_g >= 0 and ca == last:  # histories repeat a lot: remember the last lookup
            g = last_g
        else:
            g = _lookup(x.slot_code, x.slot_entry, x.mask, ca)
            last, last_g = ca, g
        if g < 0:  # add() undoes the pass (or checked first)
            unknown[0] += 1
            continue
        if x.rmask:  # the per-slot maxima are a by-product of the per-photon deviations
            _record_slots(<const int16_t*>(x.ra + i * x.ras), <const int16_t*>(x.rb + i * x.rbs),
                          x.maxrec, slot + <Py_ssize_t>g * x.maxrec * _SLOT_LANES, d3, x.rmask)
            _record_update(rec + g, d3, x.thr, i, x.rmask)
        if x.finals:
            d = _final_deviation(<const float*>(x.oa + i * x.oas), <const float*>(x.ob + i * x.obs))
            if _final_update(fin + g, d, x.cut, i):
                q = pos[g]
                if q < 0:  # first photon of this group in the block
                    q = nq
                    nq += 1
                    pos[g] = q
                    blk_group[q] = g
                    blk_sum[q] = 0.0
                blk_sum[q] += d
    for q in range(nq):
        pos[blk_group[q]] = -1
    blk_n[0] = nq


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
    cdef readonly bint records, finals, keep_blocks
    cdef readonly object record_partials, slot_partials, final_partials, sums
    cdef readonly list blocks
    cdef object thresholds, cuts, pos
    cdef object blk_group, blk_sum, blk_n
    cdef Py_ssize_t next_start

    def __init__(self, GroupIndex index, thresholds, cuts, n_threads=None, *, records=True,
                 bint finals=True, bint keep_blocks=False, maxrec=None):
        cdef Py_ssize_t G = len(index)
        self.index = index
        self.n_threads_asked = effective_threads(n_threads)
        self.record_mask = _record_mask(records)
        self.records, self.finals, self.keep_blocks = self.record_mask != 0, finals, keep_blocks
        # Each thread fills its own partial table of G rows. With very many histories
        # those tables (and their page faults and merge) cost more than a thread saves:
        # only as many threads as have partials within PARTIALS_BUDGET bytes beyond the
        # first (docs/kernels.md, "Memory"). The result is the same for any count.
        cdef Py_ssize_t per_part = G * _row_bytes(self.records, finals, 16 if maxrec is None else int(maxrec))
        self.n_threads = max(1, min(self.n_threads_asked, 1 + PARTIALS_BUDGET // max(1, per_part)))
        self.thresholds = np.ascontiguousarray(thresholds, dtype=np.int64)
        self.cuts = np.ascontiguousarray(cuts, dtype=np.float64)
        if self.thresholds.shape != (3, 3) or self.cuts.shape != (3,):
            raise ValueError("thresholds must be (3, 3) int64 and cuts (3,) float64")
        self.record_partials = new_record_partials(G if self.records else 0, self.n_threads)
        self.maxrec = -1
        self.slot_partials = None
        if maxrec is not None:
            self._set_maxrec(int(maxrec))
        self.final_partials = new_final_partials(G if finals else 0, self.n_threads)
        self.sums = np.zeros(G if finals else 0)
        self.blocks = []
        self.pos = np.full((self.n_threads, max(G, 1)), -1, dtype=np.int32)
        self.blk_group = self.blk_sum = self.blk_n = None
        self.next_start = 0

    cdef _set_maxrec(self, int maxrec):
        if maxrec < 0:
            raise ValueError(f"maxrec must be >= 0, got {maxrec}")
        if self.maxrec >= 0:
            if maxrec != self.maxrec:
                raise ValueError(f"maxrec differs: the accumulator has {self.maxrec}, the records {maxrec}")
            return
        self.maxrec = maxrec
        self.slot_partials = new_slot_partials(len(self.index) if self.records else 0, self.n_threads, maxrec)

    cdef _block_scratch(self, Py_ssize_t nblocks):
        cdef Py_ssize_t cap = max(1, min(_SUM_BLOCK, len(self.index)))
        if self.blk_n is None or self.blk_n.shape[0] < nblocks:
            self.blk_group = np.zeros((nblocks, cap), dtype=np.int32)
            self.blk_sum = np.zeros((nblocks, cap), dtype=np.float64)
            self.blk_n = np.zeros(nblocks, dtype=np.int64)
        self.blk_n[:] = 0

    def add(self, rx_a, rx_b, ox_a, ox_b, const uint64_t[:] seq_a, const uint64_t[:] seq_b,
            Py_ssize_t start, Py_ssize_t stop):
        """Aggregate the aligned photons of ``[start, stop)``; ``start`` a multiple of
        SUM_BLOCK. rx_a/rx_b (N, maxrec, 2, 4) int16 and ox_a/ox_b (N, 4, 4) float32,
        each photon's values contiguous; the ones a disabled table needs may be None.

        Everything is checked before the tables are touched (shapes, the range, and that
        every aligned photon's history is in the index): a ValueError leaves the
        accumulator as it was, so the caller may go on with other ranges.
        """
        cdef Py_ssize_t n = seq_a.shape[0]
        cdef _Inputs x
        cdef const int16_t[:, :, :, :] rxa
        cdef const int16_t[:, :, :, :] rxb
        cdef const float[:, :, :] oxa
        cdef const float[:, :, :] oxb
        if seq_b.shape[0] != n:
            raise ValueError(f"seq_b has {seq_b.shape[0]} photons, seq_a has {n}")
        if not 0 <= start <= stop <= n:
            raise ValueError(f"photon range [{start}, {stop}) outside 0..{n}")
        if start % _SUM_BLOCK:
            raise ValueError(f"start {start} is not a multiple of SUM_BLOCK ({_SUM_BLOCK})")
        if not self.keep_blocks and start < self.next_start:
            raise ValueError(f"ranges must come in increasing order (start {start} < {self.next_start}); "
                             "use keep_blocks=True for any order")
        if stop == start:
            return
        memset(&x, 0, sizeof(x))
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
        cdef GroupIndex index = self.index
        x.slot_code, x.slot_entry, x.mask = &index.slot_code[0], &index.slot_entry[0], index.mask
        cdef const int64_t[:, ::1] thr = self.thresholds
        cdef const double[::1] cut = self.cuts
        x.thr, x.cut = &thr[0, 0], &cut[0]

        # Nothing may be added when an aligned photon's history is not in the index.
        # When the partial tables are small next to the range, keep a copy and put it
        # back on failure; otherwise look every history up before the pass.
        cdef Py_ssize_t G = len(index)
        cdef Py_ssize_t b, bs
        cdef int t
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
        self._block_scratch(nblocks)
        # row (t, g) of a (P, G) partial table is rows[t * G + g]; a disabled table has no rows
        cdef _RecordRow* rec = _record_rows(self.record_partials, 0) if self.records and G else NULL
        cdef uint16_t[:, :, :, ::1] slot_view
        cdef uint16_t* slot = NULL
        if self.records and G and x.maxrec:
            slot_view = self.slot_partials
            slot = &slot_view[0, 0, 0, 0]
        cdef _FinalRow* fin = _final_rows(self.final_partials, 0) if self.finals and G else NULL
        cdef int32_t[:, ::1] pos = self.pos
        cdef int32_t[:, ::1] bg = self.blk_group
        cdef double[:, ::1] bsum = self.blk_sum
        cdef int64_t[::1] bn = self.blk_n
        unknown = np.zeros(self.n_threads, dtype=np.int64)
        cdef int64_t[::1] unk = unknown
        with nogil:
            for b in prange(nblocks, schedule="dynamic", num_threads=self.n_threads):
                t = cyext_thread_id()
                bs = start + b * _SUM_BLOCK
                _deviation_block(&x, bs, min(bs + _SUM_BLOCK, stop), rec + t * G if rec else NULL,
                                 slot + t * G * x.maxrec * _SLOT_LANES if slot else NULL, fin + t * G if fin else NULL, &pos[t, 0], &bg[b, 0], &bsum[b, 0], &bn[b],
                                 &unk[t])
        if unknown.any():
            if saved is not None:
                np.copyto(self.record_partials, saved[0])
                np.copyto(self.final_partials, saved[1])
                if saved[2] is not None:
                    np.copyto(self.slot_partials, saved[2])
            raise ValueError(f"{int(unknown.sum())} aligned photons of [{start}, {stop}) have a history that "
                             "is not in the index; nothing was added")
        if self.finals:
            if self.keep_blocks:
                for b in range(nblocks):
                    self.blocks.append((start // _SUM_BLOCK + b, self.blk_group[b, :bn[b]].copy(),
                                        self.blk_sum[b, :bn[b]].copy()))
            else:
                _add_block_sums(self.sums, bg, bsum, bn, nblocks)
        self.next_start = stop

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
        if self.records:
            if not copy and self.record_partials.shape[0] == 1:
                out["records"] = self.record_partials[0]
            else:
                out["records"] = merge_record_partials(self.record_partials)
            if self.slot_partials is None:
                out["slots"] = np.zeros((len(self.index), 3, 0), dtype=np.uint16)
            else:
                out["slots"] = merge_slot_partials(self.slot_partials, self.record_mask)
        if self.finals:
            if not copy and self.final_partials.shape[0] == 1:
                out["finals"] = self.final_partials[0]
            else:
                out["finals"] = merge_final_partials(self.final_partials)
            if self.keep_blocks:
                out["blocks"] = list(self.blocks)
            else:
                out["sums"] = self.sums.copy()
        return out


#: bytes of per-thread partial tables a DeviationAccumulator may add beyond its first
#: thread's: with more histories it runs on fewer threads (at least one)
PARTIALS_BUDGET = 64 << 20


cdef Py_ssize_t _row_bytes(bint records, bint finals, int maxrec):
    """Bytes one group takes in one thread's partial tables."""
    cdef Py_ssize_t n = sizeof(int32_t)  # its block position (pos)
    if records:
        n += sizeof(_RecordRow) + maxrec * _SLOT_LANES * sizeof(uint16_t)
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


cdef void _add_block_sums(double[::1] sums, int32_t[:, ::1] bg, double[:, ::1] bsum, int64_t[::1] bn,
                          Py_ssize_t nblocks) noexcept:
    cdef Py_ssize_t b, q
    for b in range(nblocks):  # block order: the fixed association
        for q in range(bn[b]):
            sums[bg[b, q]] += bsum[b, q]


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
