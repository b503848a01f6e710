# ------------------------------------------------------------------ 128-bit history counting
# SEvt histories hold up to 32 steps in two uint64 words (seq.npy[:, 0] = seqhis lo, hi).
# Same design as _histories.pxi: one O(N) pass, no sort; each thread counts the blocks
# it takes into a private hash table of bounded size; a block that might not fit is
# skipped, the private tables are merged into the global one and the skipped blocks
# get another round. Besides the counts, each side keeps the first photon index of
# every history (a minimum, so the merge is exact in any order).

#: photons whose histories a private table has room for
HISTORY128_ROOM = 1 << 14

cdef int64_t _NO_INDEX = 0x7FFFFFFFFFFFFFFF


cdef inline uint64_t _fmix64(uint64_t x) noexcept nogil:
    # the murmur3 finaliser: every input bit reaches every output bit, so histories that
    # differ only in their last slots still spread over the table (masking keeps low bits)
    x ^= x >> 33
    x *= <uint64_t>0xFF51AFD7ED558CCDULL
    x ^= x >> 33
    x *= <uint64_t>0xC4CEB9FE1A85EC53ULL
    x ^= x >> 33
    return x


cdef inline uint64_t _mix128(uint64_t lo, uint64_t hi) noexcept nogil:
    return _fmix64(lo ^ _fmix64(hi))  # _fmix64(0) == 0: histories of <= 16 steps pay one finaliser


cdef inline int64_t _find_slot128(const uint64_t* slot_lo, const uint64_t* slot_hi,
                                  const int32_t* slot_entry, uint64_t mask,
                                  uint64_t lo, uint64_t hi) noexcept nogil:
    """Slot holding history (lo, hi), or the empty slot where it belongs."""
    cdef uint64_t h = _mix128(lo, hi) & mask
    while slot_entry[h] >= 0 and (slot_lo[h] != lo or slot_hi[h] != hi):
        h = (h + 1) & mask
    return <int64_t>h


cdef inline void _prefetch_slot128(const uint64_t* slot_lo, const uint64_t* slot_hi, const int32_t* slot_entry,
                                   uint64_t mask, uint64_t lo, uint64_t hi) noexcept nogil:
    """The lines of the slot where history (lo, hi) starts its probe (as _prefetch_slot)."""
    cdef uint64_t h = _mix128(lo, hi) & mask
    _prefetch(slot_entry + h)
    _prefetch(slot_lo + h)
    _prefetch(slot_hi + h)


cdef inline int64_t _entry128(uint64_t* slot_lo, uint64_t* slot_hi, int32_t* slot_entry, uint64_t mask,
                              uint64_t* code_lo, uint64_t* code_hi, int64_t* count, int64_t* first,
                              int64_t* entry_slot, int64_t* size, uint64_t lo, uint64_t hi) noexcept nogil:
    """Entry of history (lo, hi) in a table, created with zero counts when new."""
    cdef int64_t h = _find_slot128(slot_lo, slot_hi, slot_entry, mask, lo, hi)
    cdef int64_t e = slot_entry[h]
    if e < 0:
        e = size[0]
        size[0] += 1
        slot_lo[h] = lo
        slot_hi[h] = hi
        slot_entry[h] = <int32_t>e
        code_lo[e] = lo
        code_hi[e] = hi
        count[2 * e] = 0
        count[2 * e + 1] = 0
        first[2 * e] = _NO_INDEX
        first[2 * e + 1] = _NO_INDEX
        if entry_slot != NULL:
            entry_slot[e] = h
    return e


cdef void _count128_part(const char* a_base, Py_ssize_t a_s0, Py_ssize_t a_s1,
                         const char* b_base, Py_ssize_t b_s0, Py_ssize_t b_s1,
                         Py_ssize_t s, Py_ssize_t e, int64_t offset,
                         uint64_t* slot_lo, uint64_t* slot_hi, int32_t* slot_entry, uint64_t mask,
                         uint64_t* code_lo, uint64_t* code_hi, int64_t* count, int64_t* first,
                         int64_t* entry_slot, int64_t* size) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t alo, ahi, blo, bhi
    cdef int64_t ea, eb, idx
    for i in range(s, e):
        alo = (<const uint64_t*>(a_base + i * a_s0))[0]
        ahi = (<const uint64_t*>(a_base + i * a_s0 + a_s1))[0]
        blo = (<const uint64_t*>(b_base + i * b_s0))[0]
        bhi = (<const uint64_t*>(b_base + i * b_s0 + b_s1))[0]
        idx = i + offset
        ea = _entry128(slot_lo, slot_hi, slot_entry, mask, code_lo, code_hi, count, first,
                       entry_slot, size, alo, ahi)
        count[2 * ea] += 1
        if idx < first[2 * ea]:
            first[2 * ea] = idx
        if alo == blo and ahi == bhi:
            eb = ea
        else:
            eb = _entry128(slot_lo, slot_hi, slot_entry, mask, code_lo, code_hi, count, first,
                           entry_slot, size, blo, bhi)
        count[2 * eb + 1] += 1
        if idx < first[2 * eb + 1]:
            first[2 * eb + 1] = idx


cdef class History128Counter:
    """Photon counts and first photon index per two-word seqhis history, in A and in B.

    ``add`` may be called on successive (or any) photon ranges and ``add_counts`` merges
    another counter's result; ``result()`` gives the histories sorted by (hi, lo) with
    their (A, B) counts and first indices (-1 where a side has none). Counts are exact
    int64 and first indices minima, so the result does not depend on ``n_threads`` or on
    how the photons were chunked. Memory: the global table is O(distinct histories), the
    per-thread tables have room for HISTORY128_ROOM photons whatever the input.
    """
    cdef int64_t size
    cdef uint64_t[::1] code_lo
    cdef uint64_t[::1] code_hi
    cdef int64_t[:, ::1] count
    cdef int64_t[:, ::1] first
    cdef uint64_t[::1] slot_lo
    cdef uint64_t[::1] slot_hi
    cdef int32_t[::1] slot_entry
    cdef uint64_t mask
    # per-part private tables
    cdef int nparts
    cdef uint64_t[:, ::1] p_slot_lo
    cdef uint64_t[:, ::1] p_slot_hi
    cdef int32_t[:, ::1] p_slot_entry
    cdef uint64_t p_mask
    cdef uint64_t[:, ::1] p_lo
    cdef uint64_t[:, ::1] p_hi
    cdef int64_t[:, :, ::1] p_count
    cdef int64_t[:, :, ::1] p_first
    cdef int64_t[:, ::1] p_entry_slot
    cdef int64_t[::1] p_size
    #: rounds of the last add() (1 unless the private tables filled up)
    cdef readonly int rounds

    def __init__(self):
        """An empty counter."""
        self.size = 0
        self.nparts = 0
        self.rounds = 0
        self._grow(64)

    def __len__(self):
        return self.size

    cdef _grow(self, int64_t entries):
        """Room for ``entries`` histories: reallocate, then re-slot the existing entries."""
        cdef int64_t i, h, cap = _capacity_for(entries)
        code_lo = np.zeros(entries, dtype=np.uint64)
        code_hi = np.zeros(entries, dtype=np.uint64)
        count = np.zeros((entries, 2), dtype=np.int64)
        first = np.zeros((entries, 2), dtype=np.int64)
        if self.size:
            code_lo[:self.size] = np.asarray(self.code_lo)[:self.size]
            code_hi[:self.size] = np.asarray(self.code_hi)[:self.size]
            count[:self.size] = np.asarray(self.count)[:self.size]
            first[:self.size] = np.asarray(self.first)[:self.size]
        self.code_lo, self.code_hi, self.count, self.first = code_lo, code_hi, count, first
        self.slot_lo = np.zeros(cap, dtype=np.uint64)
        self.slot_hi = np.zeros(cap, dtype=np.uint64)
        self.slot_entry = np.full(cap, -1, dtype=np.int32)
        self.mask = cap - 1
        for i in range(self.size):
            if i + _AHEAD < self.size:  # a million histories land at random in the new slots
                _prefetch_slot128(&self.slot_lo[0], &self.slot_hi[0], &self.slot_entry[0], self.mask,
                                  self.code_lo[i + _AHEAD], self.code_hi[i + _AHEAD])
            h = _find_slot128(&self.slot_lo[0], &self.slot_hi[0], &self.slot_entry[0], self.mask,
                              self.code_lo[i], self.code_hi[i])
            self.slot_lo[h] = self.code_lo[i]
            self.slot_hi[h] = self.code_hi[i]
            self.slot_entry[h] = <int32_t>i

    cdef _reserve(self, int64_t more):
        if self.size + more > self.code_lo.shape[0]:
            self._grow(max(2 * self.code_lo.shape[0], self.size + more))

    cdef _expect(self, int64_t found, int64_t counted, int64_t left):
        """Room at once for the histories that ``left`` photons still to count would bring
        at the rate of the round just merged (``found`` new among ``counted`` photons): with
        millions of distinct histories the table is sized once, not doubled a dozen times
        (each doubling re-slots every history). As HistoryCounter's pass (PairPass)."""
        if found <= 0 or counted <= 0 or left <= 0:
            return
        cdef int64_t want = self.size + (found * left + counted - 1) // counted
        if want > 2 * self.code_lo.shape[0]:  # below that, doubling does as well
            self._grow(max(want, min(want + want // 16, _capacity_for(want) // 2)))

    cdef _prepare_parts(self, int nparts):
        if nparts == self.nparts:
            return
        cdef int64_t per_part = 2 * HISTORY128_ROOM  # an A and a B history per photon
        cdef int64_t cap = _capacity_for(per_part)
        self.p_slot_lo = np.zeros((nparts, cap), dtype=np.uint64)
        self.p_slot_hi = np.zeros((nparts, cap), dtype=np.uint64)
        self.p_slot_entry = np.full((nparts, cap), -1, dtype=np.int32)
        self.p_mask = cap - 1
        self.p_lo = np.zeros((nparts, per_part), dtype=np.uint64)
        self.p_hi = np.zeros((nparts, per_part), dtype=np.uint64)
        self.p_count = np.zeros((nparts, per_part, 2), dtype=np.int64)
        self.p_first = np.zeros((nparts, per_part, 2), dtype=np.int64)
        self.p_entry_slot = np.zeros((nparts, per_part), dtype=np.int64)
        self.p_size = np.zeros(nparts, dtype=np.int64)
        self.nparts = nparts

    cdef void _merge_part(self, int p) noexcept nogil:
        cdef int64_t j, e, k, n = self.p_size[p]
        for j in range(n):
            if j + _AHEAD < n:  # new histories probe the global table at random (as HistoryCounter)
                _prefetch_slot128(&self.slot_lo[0], &self.slot_hi[0], &self.slot_entry[0], self.mask,
                                  self.p_lo[p, j + _AHEAD], self.p_hi[p, j + _AHEAD])
            e = _entry128(&self.slot_lo[0], &self.slot_hi[0], &self.slot_entry[0], self.mask,
                          &self.code_lo[0], &self.code_hi[0], &self.count[0, 0], &self.first[0, 0],
                          NULL, &self.size, self.p_lo[p, j], self.p_hi[p, j])
            for k in range(2):
                self.count[e, k] += self.p_count[p, j, k]
                if self.p_first[p, j, k] < self.first[e, k]:
                    self.first[e, k] = self.p_first[p, j, k]
            self.p_slot_entry[p, self.p_entry_slot[p, j]] = -1
        self.p_size[p] = 0

    def add(self, const uint64_t[:, :] seqhis_a, const uint64_t[:, :] seqhis_b,
            Py_ssize_t start=0, stop=None, n_threads=None, int64_t offset=0):
        """Count photons ``[start, stop)`` of two (N, 2) seqhis arrays (``seq[:, 0]`` views).

        First indices are the photon index in these arrays plus ``offset``.
        """
        cdef Py_ssize_t n = seqhis_a.shape[0]
        if seqhis_a.shape[1] != 2 or seqhis_b.shape[1] != 2:
            raise ValueError(f"seqhis arrays must be (N, 2) words: A {tuple(seqhis_a.shape)[:2]}, "
                             f"B {tuple(seqhis_b.shape)[:2]}")
        if seqhis_b.shape[0] != n:
            raise ValueError(f"seqhis arrays differ in length: A {n}, B {seqhis_b.shape[0]}")
        cdef Py_ssize_t stop_ = n if stop is None else stop
        if not 0 <= start <= stop_ <= n:
            raise ValueError(f"photon range [{start}, {stop_}) outside 0..{n}")
        self.rounds = 0
        if stop_ == start:
            return
        cdef int nparts = effective_threads(n_threads)
        self._prepare_parts(nparts)
        cdef const char* a_base = <const char*>&seqhis_a[0, 0]
        cdef const char* b_base = <const char*>&seqhis_b[0, 0]
        cdef Py_ssize_t a_s0 = seqhis_a.strides[0], a_s1 = seqhis_a.strides[1]
        cdef Py_ssize_t b_s0 = seqhis_b.strides[0], b_s1 = seqhis_b.strides[1]
        cdef Py_ssize_t k, b, bs, be, ntodo
        cdef int t, p
        cdef uint64_t[:, ::1] p_slot_lo = self.p_slot_lo
        cdef uint64_t[:, ::1] p_slot_hi = self.p_slot_hi
        cdef int32_t[:, ::1] p_slot_entry = self.p_slot_entry
        cdef uint64_t[:, ::1] p_lo = self.p_lo
        cdef uint64_t[:, ::1] p_hi = self.p_hi
        cdef int64_t[:, :, ::1] p_count = self.p_count
        cdef int64_t[:, :, ::1] p_first = self.p_first
        cdef int64_t[:, ::1] p_entry_slot = self.p_entry_slot
        cdef int64_t[::1] p_size = self.p_size
        cdef uint64_t p_mask = self.p_mask
        cdef int64_t room = self.p_lo.shape[1]
        cdef int64_t before, counted, left
        todo = np.arange(_n_blocks(start, stop_, WORK_BLOCK), dtype=np.int64)
        sizes = np.minimum(start + (todo + 1) * WORK_BLOCK, stop_) - (start + todo * WORK_BLOCK)
        skipped = np.zeros(len(todo), dtype=np.uint8)
        cdef int64_t[::1] todo_v
        cdef uint8_t[::1] skip_v = skipped
        # One parallel region per round; a thread whose private table has no room for
        # another block's histories skips it (a thread starts every round empty, so each
        # round counts at least one block per thread).
        while len(todo):
            todo_v = todo
            ntodo = len(todo)
            self.rounds += 1
            with nogil:
                for k in prange(ntodo, schedule="dynamic", num_threads=nparts):
                    t = cyext_thread_id()
                    b = todo_v[k]
                    bs = start + b * WORK_BLOCK
                    be = min(bs + WORK_BLOCK, stop_)
                    if p_size[t] + 2 * (be - bs) > room:
                        skip_v[b] = 1
                    else:
                        skip_v[b] = 0
                        _count128_part(a_base, a_s0, a_s1, b_base, b_s0, b_s1, bs, be, offset,
                                       &p_slot_lo[t, 0], &p_slot_hi[t, 0], &p_slot_entry[t, 0], p_mask,
                                       &p_lo[t, 0], &p_hi[t, 0], &p_count[t, 0, 0], &p_first[t, 0, 0],
                                       &p_entry_slot[t, 0], &p_size[t])
            self._reserve(np.asarray(self.p_size).sum())  # room for every private history, then merge
            before = self.size
            with nogil:
                for p in range(nparts):
                    self._merge_part(p)
            waiting = skipped[todo] == 1
            left = int(sizes[todo[waiting]].sum())
            counted = int(sizes[todo[~waiting]].sum())
            if self.rounds == 1:
                self._expect(self.size - before, counted, left)
            todo = todo[waiting]

    def add_counts(self, lo, hi, counts, first):
        """Merge another counter's ``result()``: lo, hi (G,) uint64, counts and first (G, 2) int64."""
        cdef const uint64_t[::1] l = np.ascontiguousarray(lo, dtype=np.uint64).reshape(-1)
        cdef const uint64_t[::1] h = np.ascontiguousarray(hi, dtype=np.uint64).reshape(-1)
        cdef const int64_t[:, ::1] c = np.ascontiguousarray(counts, dtype=np.int64).reshape(-1, 2)
        cdef const int64_t[:, ::1] f = np.ascontiguousarray(first, dtype=np.int64).reshape(-1, 2)
        if not (l.shape[0] == h.shape[0] == c.shape[0] == f.shape[0]):
            raise ValueError("add_counts: lo, hi, counts and first differ in length")
        self._reserve(l.shape[0])
        cdef Py_ssize_t j
        cdef int64_t e, k, x
        for j in range(l.shape[0]):
            e = _entry128(&self.slot_lo[0], &self.slot_hi[0], &self.slot_entry[0], self.mask,
                          &self.code_lo[0], &self.code_hi[0], &self.count[0, 0], &self.first[0, 0],
                          NULL, &self.size, l[j], h[j])
            for k in range(2):
                self.count[e, k] += c[j, k]
                x = f[j, k]
                if 0 <= x < self.first[e, k]:
                    self.first[e, k] = x

    def result(self):
        """(lo uint64 (G,), hi uint64 (G,), counts int64 (G, 2), first int64 (G, 2)), sorted by (hi, lo).

        ``first[g, s]`` is -1 when side s (0 = A, 1 = B) has no photon of history g.
        """
        n = self.size
        lo = np.asarray(self.code_lo)[:n]
        hi = np.asarray(self.code_hi)[:n]
        order = lexorder((lo, hi))  # np.lexsort((lo, hi)), 3-4x faster for a million histories
        # np.take, not [order]: a (G, 2) gather by fancy index is 7x slower for 2M rows
        first = np.take(np.asarray(self.first)[:n], order, axis=0)
        first[first == _NO_INDEX] = -1
        return lo[order], hi[order], np.take(np.asarray(self.count)[:n], order, axis=0), first
