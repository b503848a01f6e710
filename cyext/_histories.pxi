# ------------------------------------------------------------------ history counting
# One O(N) pass, no sort: each thread counts the blocks it takes into a private hash
# table of bounded size; the private tables are then merged into the global table.
# Bounded private tables keep memory O(distinct codes) even when nearly every photon
# has a code of its own.

#: photons whose codes a private table has room for
HISTORY_ROOM = 1 << 14


cdef inline uint64_t _seq_at(const char* base, Py_ssize_t stride, Py_ssize_t i) noexcept nogil:
    return (<const uint64_t*>(base + i * stride))[0]


cdef inline int64_t _entry_for(uint64_t* slot_code, int32_t* slot_entry, uint64_t mask,
                               uint64_t* code, int64_t* count, int64_t* entry_slot,
                               int64_t* size, uint64_t c) noexcept nogil:
    """Entry of code ``c`` in a table, created with zero counts when new."""
    cdef int64_t h = _find_slot(slot_code, slot_entry, mask, c)
    cdef int64_t e = slot_entry[h]
    if e < 0:
        e = size[0]
        size[0] += 1
        slot_code[h] = c
        slot_entry[h] = <int32_t>e
        code[e] = c
        count[2 * e] = 0
        count[2 * e + 1] = 0
        if entry_slot != NULL:
            entry_slot[e] = h
    return e


cdef void _count_part(const char* a_base, Py_ssize_t a_stride,
                      const char* b_base, Py_ssize_t b_stride,
                      Py_ssize_t s, Py_ssize_t e,
                      uint64_t* slot_code, int32_t* slot_entry, uint64_t mask,
                      uint64_t* code, int64_t* count, int64_t* entry_slot,
                      int64_t* size) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t ca, cb
    cdef int64_t ea, eb
    for i in range(s, e):
        ca = _seq_at(a_base, a_stride, i)
        cb = _seq_at(b_base, b_stride, i)
        ea = _entry_for(slot_code, slot_entry, mask, code, count, entry_slot, size, ca)
        count[2 * ea] += 1
        if cb == ca:
            count[2 * ea + 1] += 1
        else:
            eb = _entry_for(slot_code, slot_entry, mask, code, count, entry_slot, size, cb)
            count[2 * eb + 1] += 1


cdef class HistoryCounter:
    """Photon counts per seqhis code in event A and in event B.

    ``add`` may be called on successive (or any) photon ranges and ``add_counts`` merges
    another counter's result; ``result()`` gives the codes (in no particular order) with
    their (A, B) counts. Counting is exact int64 and independent of ``n_threads``.
    """
    cdef int64_t size
    cdef uint64_t[::1] code
    cdef int64_t[:, ::1] count
    cdef uint64_t[::1] slot_code
    cdef int32_t[::1] slot_entry
    cdef uint64_t mask
    # per-part private tables, each with room for the codes of ``room`` photons
    cdef int nparts
    cdef readonly int64_t room
    cdef uint64_t[:, ::1] p_slot_code
    cdef int32_t[:, ::1] p_slot_entry
    cdef uint64_t p_mask
    cdef uint64_t[:, ::1] p_code
    cdef int64_t[:, :, ::1] p_count
    cdef int64_t[:, ::1] p_entry_slot
    cdef int64_t[::1] p_size
    cdef bint released  # _release() took the slot tables: nothing more can be counted

    def __init__(self, int64_t room=HISTORY_ROOM):
        """An empty counter; each thread's private table holds the codes of ``room`` photons."""
        if room < 1:
            raise ValueError(f"room must be >= 1, got {room}")
        self.size = 0
        self._grow(64)
        self.nparts = 0
        self.room = room

    def __len__(self):
        return self.size

    cdef _grow(self, int64_t entries):
        """Room for ``entries`` codes: reallocate, then re-slot the existing entries."""
        cdef int64_t i, h, cap = _capacity_for(entries)
        code = np.zeros(entries, dtype=np.uint64)
        count = np.zeros((entries, 2), dtype=np.int64)
        if self.size:
            code[:self.size] = np.asarray(self.code)[:self.size]
            count[:self.size] = np.asarray(self.count)[:self.size]
        self.code, self.count = code, count
        self.slot_code = np.zeros(cap, dtype=np.uint64)
        self.slot_entry = np.full(cap, -1, dtype=np.int32)
        self.mask = cap - 1
        for i in range(self.size):
            h = _find_slot(&self.slot_code[0], &self.slot_entry[0], self.mask, self.code[i])
            self.slot_code[h] = self.code[i]
            self.slot_entry[h] = <int32_t>i

    cdef _reserve(self, int64_t more):
        if self.size + more > self.code.shape[0]:
            self._grow(max(2 * self.code.shape[0], self.size + more))

    cdef _expect(self, int64_t entries):
        """Room for ``entries`` codes in all, at once: a caller that can tell how many
        codes are coming spares the doublings on the way (each re-slots every code)."""
        if entries > self.code.shape[0]:
            self._grow(entries)

    cdef _release(self):
        """Free the slot tables and the private tables (a million codes take more room
        there than in the codes and counts): result(copy=False) stays; counting raises."""
        self.released = True
        self.slot_code, self.slot_entry, self.mask = _released_slots()
        self.nparts = 0
        self.p_slot_code = self.p_code = np.zeros((1, 1), np.uint64)
        self.p_slot_entry = np.full((1, 1), -1, np.int32)
        self.p_count = np.zeros((1, 1, 2), np.int64)
        self.p_entry_slot = np.zeros((1, 1), np.int64)
        self.p_size = np.zeros(1, np.int64)

    cdef _check(self):
        if self.released:
            raise ValueError("HistoryCounter: its tables were released (the pass that owned it ended)")

    cdef _prepare_parts(self, int nparts):
        self._check()
        if nparts == self.nparts:
            return
        cdef int64_t per_part = 2 * self.room  # an A and a B code per photon
        cdef int64_t cap = _capacity_for(per_part)
        self.p_slot_code = np.zeros((nparts, cap), dtype=np.uint64)
        self.p_slot_entry = np.full((nparts, cap), -1, dtype=np.int32)
        self.p_mask = cap - 1
        self.p_code = np.zeros((nparts, per_part), dtype=np.uint64)
        self.p_count = np.zeros((nparts, per_part, 2), dtype=np.int64)
        self.p_entry_slot = np.zeros((nparts, per_part), dtype=np.int64)
        self.p_size = np.zeros(nparts, dtype=np.int64)
        self.nparts = nparts

    cdef _merge_parts(self):
        """Every private table into the global one (then empty)."""
        cdef int p
        self._reserve(np.asarray(self.p_size).sum())  # room for every private code
        for p in range(self.nparts):
            self._merge_part(p)

    cdef void _merge_part(self, int p) noexcept nogil:
        cdef int64_t j, e, n = self.p_size[p]
        for j in range(n):
            if j + _AHEAD < n:  # a private table of new codes probes the global one at random
                _prefetch_slot(&self.slot_code[0], &self.slot_entry[0], self.mask, self.p_code[p, j + _AHEAD])
            e = _entry_for(&self.slot_code[0], &self.slot_entry[0], self.mask,
                           &self.code[0], &self.count[0, 0], NULL, &self.size, self.p_code[p, j])
            self.count[e, 0] += self.p_count[p, j, 0]
            self.count[e, 1] += self.p_count[p, j, 1]
            self.p_slot_entry[p, self.p_entry_slot[p, j]] = -1
        self.p_size[p] = 0

    def add(self, const uint64_t[:] seq_a, const uint64_t[:] seq_b,
            Py_ssize_t start=0, stop=None, n_threads=None):
        """Count photons ``[start, stop)`` of the two seqhis arrays (``ph[:, 0, 0]`` views)."""
        cdef Py_ssize_t n = seq_a.shape[0]
        if seq_b.shape[0] != n:
            raise ValueError(f"seqhis arrays differ in length: A {n}, B {seq_b.shape[0]}")
        cdef Py_ssize_t stop_ = n if stop is None else stop
        if not 0 <= start <= stop_ <= n:
            raise ValueError(f"photon range [{start}, {stop_}) outside 0..{n}")
        if stop_ == start:
            return
        cdef int nparts = effective_threads(n_threads)
        self._prepare_parts(nparts)
        cdef const char* a_base = <const char*>&seq_a[0]
        cdef const char* b_base = <const char*>&seq_b[0]
        cdef Py_ssize_t a_stride = seq_a.strides[0], b_stride = seq_b.strides[0]
        cdef Py_ssize_t k, p, b, bs, be, ntodo
        cdef int t
        cdef uint64_t[:, ::1] p_slot_code = self.p_slot_code
        cdef int32_t[:, ::1] p_slot_entry = self.p_slot_entry
        cdef uint64_t[:, ::1] p_code = self.p_code
        cdef int64_t[:, :, ::1] p_count = self.p_count
        cdef int64_t[:, ::1] p_entry_slot = self.p_entry_slot
        cdef int64_t[::1] p_size = self.p_size
        cdef uint64_t p_mask = self.p_mask
        cdef int64_t room = self.p_code.shape[1]
        todo = np.arange(_n_blocks(start, stop_, WORK_BLOCK), dtype=np.int64)
        skipped = np.zeros(len(todo), dtype=np.uint8)
        cdef int64_t[::1] todo_v
        cdef uint8_t[::1] skip_v = skipped
        # One parallel region per round (a barrier costs a time slice when another
        # process holds a core). A thread whose private table has no room for another
        # block's codes skips it; the tables are merged and the skipped blocks get
        # another round. With a few hundred histories there is one round.
        while len(todo):
            todo_v = todo
            ntodo = len(todo)
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
                        _count_part(a_base, a_stride, b_base, b_stride, bs, be,
                                    &p_slot_code[t, 0], &p_slot_entry[t, 0], p_mask,
                                    &p_code[t, 0], &p_count[t, 0, 0], &p_entry_slot[t, 0], &p_size[t])
            self._merge_parts()
            todo = todo[skipped[todo] == 1]

    def add_counts(self, codes, counts):
        """Merge another counter's ``result()``: codes (G,) uint64 and counts (G, 2) int64."""
        cdef const uint64_t[::1] c = np.ascontiguousarray(codes, dtype=np.uint64)
        cdef const int64_t[:, ::1] k = np.ascontiguousarray(counts, dtype=np.int64).reshape(-1, 2)
        if c.shape[0] != k.shape[0]:
            raise ValueError("add_counts: codes and counts differ in length")
        self._check()
        self._reserve(c.shape[0])
        cdef Py_ssize_t j
        cdef int64_t e
        for j in range(c.shape[0]):
            e = _entry_for(&self.slot_code[0], &self.slot_entry[0], self.mask,
                           &self.code[0], &self.count[0, 0], NULL, &self.size, c[j])
            self.count[e, 0] += k[j, 0]
            self.count[e, 1] += k[j, 1]

    def result(self, bint copy=True):
        """(codes uint64 (G,), counts int64 (G, 2)); with ``copy`` False views of the
        counter's own arrays (for a caller that counts nothing more)."""
        codes, counts = np.asarray(self.code)[:self.size], np.asarray(self.count)[:self.size]
        return (codes.copy(), counts.copy()) if copy else (codes, counts)
