# ------------------------------------------------------------------ history migration
# Photons whose seqhis differs between A and B, counted per (A code, B code) pair in one
# pass: each thread counts the blocks it takes into a private hash table of bounded
# room, the private tables merge into one global table by exact integer addition (and
# min for the first photon of a pair), so the counts never depend on the thread count
# or on how callers chunk the photons. The global table never holds more than
# ``capacity`` pairs: a pass that finds more flags ``overflowed`` and the caller counts
# again in rounds, each round taking the pairs of one hash partition
# (docs/analysis.md, section 2).
#
# Also here: the first photons of a selection (Maligned, chase), a photon mask for
# codes of a GroupIndex, and the history and material counts of one pass over ph.

#: migrated photons whose pairs a private table has room for
PAIR_ROOM = 1 << 14


cdef inline uint64_t _mix_pair(uint64_t a, uint64_t b) noexcept nogil:
    return _mix(a ^ _mix(b ^ <uint64_t>0x632BE59BD9B4E019ULL))


cdef inline int64_t _pair_slot(const uint64_t* slot_key, const int32_t* slot_entry, uint64_t mask,
                               uint64_t a, uint64_t b, uint64_t h) noexcept nogil:
    """Slot holding pair (a, b), or the empty slot where it belongs."""
    cdef uint64_t s = h & mask
    while slot_entry[s] >= 0 and (slot_key[2 * s] != a or slot_key[2 * s + 1] != b):
        s = (s + 1) & mask
    return <int64_t>s


cdef inline bint _in_partition(uint64_t h, uint64_t rounds, uint64_t part) noexcept nogil:
    # the high half of the hash: independent of the low bits that pick the slot
    return rounds <= 1 or (h >> 32) % rounds == part


cdef struct _MigrationPart:  # one thread's private pair table and lowest-index heap, without the GIL
    uint64_t* slot_key
    int32_t* slot_entry
    uint64_t mask
    uint64_t* key
    int64_t* count
    int64_t* first
    int64_t* entry_slot
    int64_t* size
    double* hd
    int64_t* hi
    int64_t* hsize
    int64_t* nmig
    int64_t keep
    uint64_t rounds
    uint64_t part


cdef inline void _migrate_photon(_MigrationPart* m, uint64_t ca, uint64_t cb, Py_ssize_t i) noexcept nogil:
    """Count migrated photon ``i`` (A code ``ca`` != B code ``cb``) into a private table."""
    cdef uint64_t h
    cdef int64_t slot, en
    m.nmig[0] += 1
    if m.keep > 0:
        _heap_offer(m.hd, m.hi, m.hsize, m.keep, 0.0, i)  # equal keys: the lowest indices are kept
    h = _mix_pair(ca, cb)
    if not _in_partition(h, m.rounds, m.part):
        return
    slot = _pair_slot(m.slot_key, m.slot_entry, m.mask, ca, cb, h)
    en = m.slot_entry[slot]
    if en < 0:
        en = m.size[0]
        m.size[0] += 1
        m.slot_entry[slot] = <int32_t>en
        m.slot_key[2 * slot] = ca
        m.slot_key[2 * slot + 1] = cb
        m.key[2 * en] = ca
        m.key[2 * en + 1] = cb
        m.count[en] = 0
        m.first[en] = i
        m.entry_slot[en] = slot
    m.count[en] += 1
    if i < m.first[en]:
        m.first[en] = i


cdef void _migrate_part(const char* a_base, Py_ssize_t a_stride, const char* b_base, Py_ssize_t b_stride,
                        Py_ssize_t s, Py_ssize_t e, _MigrationPart* m) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t ca, cb
    for i in range(s, e):
        ca = _seq_at(a_base, a_stride, i)
        cb = _seq_at(b_base, b_stride, i)
        if ca != cb:
            _migrate_photon(m, ca, cb, i)


cdef class MigrationCounter:
    """Migrated photons (seqhis A != B) per (A code, B code) pair, bounded in memory.

    ``capacity`` bounds the pairs the table holds; a pass over more distinct pairs (of
    its partition) sets ``overflowed``, and its table is then incomplete: count again
    with ``rounds`` > 1, one counter per ``part`` in 0..rounds-1 (each holds about
    1/rounds of the pairs, and every pair falls in exactly one part). Whatever the
    partition, every counter also counts all migrated photons (``n_migrated``) and keeps
    the ``keep`` lowest migrated photon indices.
    """
    cdef readonly int64_t capacity
    cdef readonly uint64_t rounds
    cdef readonly uint64_t part
    cdef readonly int64_t keep
    cdef readonly int64_t n_migrated
    cdef readonly int64_t unplaced
    cdef readonly int64_t unplaced_pairs
    cdef readonly bint overflowed
    cdef int64_t size
    cdef uint64_t[:, ::1] key
    cdef int64_t[::1] count
    cdef int64_t[::1] first
    cdef uint64_t[::1] slot_key
    cdef int32_t[::1] slot_entry
    cdef uint64_t mask
    cdef object lowest
    # per-part private tables (room for the pairs of ``room`` photons each) and, during
    # an add, per-part heaps of the lowest migrated photons and counts
    cdef int nparts
    cdef readonly int64_t room
    cdef object heap_dev, heap_idx, heap_size, nmig, part_views
    cdef uint64_t[:, ::1] p_slot_key
    cdef int32_t[:, ::1] p_slot_entry
    cdef uint64_t p_mask
    cdef uint64_t[:, ::1] p_key
    cdef int64_t[:, ::1] p_count
    cdef int64_t[:, ::1] p_first
    cdef int64_t[:, ::1] p_entry_slot
    cdef int64_t[::1] p_size

    def __init__(self, int64_t capacity=1 << 20, uint64_t rounds=1, uint64_t part=0, int64_t keep=0, *,
                 int64_t room=PAIR_ROOM):
        if room < 1:
            raise ValueError(f"room must be >= 1, got {room}")
        self.room = room
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if rounds < 1 or part >= rounds:
            raise ValueError(f"part {part} outside 0..rounds-1 (rounds {rounds})")
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        self.capacity, self.rounds, self.part, self.keep = capacity, rounds, part, keep
        self.n_migrated = self.unplaced = self.unplaced_pairs = 0
        self.overflowed = False
        self.size = 0
        self.nparts = 0
        self.lowest = np.zeros(0, dtype=np.int64)
        self._grow(min(64, capacity))

    def __len__(self):
        return self.size

    cdef _grow(self, int64_t entries):
        cdef int64_t i, cap = _capacity_for(entries)
        cdef int64_t s
        key = np.zeros((entries, 2), dtype=np.uint64)
        count = np.zeros(entries, dtype=np.int64)
        first = np.zeros(entries, dtype=np.int64)
        if self.size:
            key[:self.size] = np.asarray(self.key)[:self.size]
            count[:self.size] = np.asarray(self.count)[:self.size]
            first[:self.size] = np.asarray(self.first)[:self.size]
        self.key, self.count, self.first = key, count, first
        self.slot_key = np.zeros(2 * cap, dtype=np.uint64)
        self.slot_entry = np.full(cap, -1, dtype=np.int32)
        self.mask = cap - 1
        for i in range(self.size):
            s = _pair_slot(&self.slot_key[0], &self.slot_entry[0], self.mask, self.key[i, 0], self.key[i, 1],
                           _mix_pair(self.key[i, 0], self.key[i, 1]))
            self.slot_key[2 * s] = self.key[i, 0]
            self.slot_key[2 * s + 1] = self.key[i, 1]
            self.slot_entry[s] = <int32_t>i

    cdef _reserve(self, int64_t more):
        cdef int64_t want = min(self.size + more, self.capacity)
        if want > self.key.shape[0]:
            self._grow(min(max(2 * self.key.shape[0], want), self.capacity))

    cdef _prepare_parts(self, int nparts):
        if nparts == self.nparts:
            return
        cdef int64_t cap = _capacity_for(self.room)
        self.p_slot_key = np.zeros((nparts, 2 * cap), dtype=np.uint64)
        self.p_slot_entry = np.full((nparts, cap), -1, dtype=np.int32)
        self.p_mask = cap - 1
        self.p_key = np.zeros((nparts, 2 * self.room), dtype=np.uint64)
        self.p_count = np.zeros((nparts, self.room), dtype=np.int64)
        self.p_first = np.zeros((nparts, self.room), dtype=np.int64)
        self.p_entry_slot = np.zeros((nparts, self.room), dtype=np.int64)
        self.p_size = np.zeros(nparts, dtype=np.int64)
        self.nparts = nparts

    cdef void _merge_part(self, int p) noexcept nogil:
        cdef int64_t j, e, s
        cdef uint64_t a, b, h
        for j in range(self.p_size[p]):
            a = self.p_key[p, 2 * j]
            b = self.p_key[p, 2 * j + 1]
            h = _mix_pair(a, b)
            s = _pair_slot(&self.slot_key[0], &self.slot_entry[0], self.mask, a, b, h)
            e = self.slot_entry[s]
            if e < 0:
                if self.size >= self.capacity:
                    self.overflowed = True
                    self.unplaced += self.p_count[p, j]
                    self.unplaced_pairs += 1
                    self.p_slot_entry[p, self.p_entry_slot[p, j]] = -1
                    continue
                e = self.size
                self.size += 1
                self.slot_entry[s] = <int32_t>e
                self.slot_key[2 * s] = a
                self.slot_key[2 * s + 1] = b
                self.key[e, 0] = a
                self.key[e, 1] = b
                self.count[e] = 0
                self.first[e] = self.p_first[p, j]
            self.count[e] += self.p_count[p, j]
            if self.p_first[p, j] < self.first[e]:
                self.first[e] = self.p_first[p, j]
            self.p_slot_entry[p, self.p_entry_slot[p, j]] = -1
        self.p_size[p] = 0

    def add(self, const uint64_t[:] seq_a, const uint64_t[:] seq_b,
            Py_ssize_t start=0, stop=None, n_threads=None):
        """Count the migrated photons of ``[start, stop)`` (``ph[:, 0, 0]`` views of A and B).

        Photon indices are those of the arrays given, so successive calls on successive
        ranges of the same arrays give the same table as one call.
        """
        cdef Py_ssize_t n = seq_a.shape[0]
        if seq_b.shape[0] != n:
            raise ValueError(f"seqhis arrays differ in length: A {n}, B {seq_b.shape[0]}")
        cdef Py_ssize_t stop_ = n if stop is None else stop
        if not 0 <= start <= stop_ <= n:
            raise ValueError(f"photon range [{start}, {stop_}) outside 0..{n}")
        if stop_ == start:
            return
        cdef int nparts = effective_threads(n_threads)
        cdef _MigrationPart* parts = self._start(nparts)
        cdef const char* a_base = <const char*>&seq_a[0]
        cdef const char* b_base = <const char*>&seq_b[0]
        cdef Py_ssize_t a_stride = seq_a.strides[0], b_stride = seq_b.strides[0]
        cdef Py_ssize_t k, b, bs, be, ntodo
        cdef int t
        todo = np.arange(_n_blocks(start, stop_, WORK_BLOCK), dtype=np.int64)
        skipped = np.zeros(len(todo), dtype=np.uint8)
        cdef int64_t[::1] todo_v
        cdef uint8_t[::1] skip_v = skipped
        # rounds of one parallel region each, as HistoryCounter.add: a block whose photons
        # might not fit a private table waits for the next round, after the merge
        while len(todo):
            todo_v = todo
            ntodo = len(todo)
            with nogil:
                for k in prange(ntodo, schedule="dynamic", num_threads=nparts):
                    t = cyext_thread_id()
                    b = todo_v[k]
                    bs = start + b * WORK_BLOCK
                    be = min(bs + WORK_BLOCK, stop_)
                    if parts[t].size[0] + (be - bs) > self.room:
                        skip_v[b] = 1
                    else:
                        skip_v[b] = 0
                        _migrate_part(a_base, a_stride, b_base, b_stride, bs, be, &parts[t])
            self._merge_parts()
            todo = todo[skipped[todo] == 1]
        self._finish()

    cdef _MigrationPart* _start(self, int nparts) except NULL:
        """Private tables for ``nparts`` threads and fresh heaps: thread t's in the result."""
        self._prepare_parts(nparts)
        cdef int64_t keep = self.keep
        self.heap_dev = np.zeros((nparts, max(keep, 1)), dtype=np.float64)
        self.heap_idx = np.zeros((nparts, max(keep, 1)), dtype=np.int64)
        self.heap_size = np.zeros(nparts, dtype=np.int64)
        self.nmig = np.zeros(nparts, dtype=np.int64)
        self.part_views = np.zeros(nparts * sizeof(_MigrationPart), dtype=np.uint8)
        cdef double[:, ::1] hd = self.heap_dev
        cdef int64_t[:, ::1] hi = self.heap_idx
        cdef int64_t[::1] hs = self.heap_size
        cdef int64_t[::1] nm = self.nmig
        cdef uint8_t[::1] raw = self.part_views
        cdef _MigrationPart* parts = <_MigrationPart*>&raw[0]
        cdef int t
        for t in range(nparts):
            parts[t].slot_key, parts[t].slot_entry, parts[t].mask = &self.p_slot_key[t, 0], \
                &self.p_slot_entry[t, 0], self.p_mask
            parts[t].key, parts[t].count, parts[t].first = &self.p_key[t, 0], &self.p_count[t, 0], &self.p_first[t, 0]
            parts[t].entry_slot, parts[t].size = &self.p_entry_slot[t, 0], &self.p_size[t]
            parts[t].hd, parts[t].hi, parts[t].hsize, parts[t].nmig = &hd[t, 0], &hi[t, 0], &hs[t], &nm[t]
            parts[t].keep, parts[t].rounds, parts[t].part = keep, self.rounds, self.part
        return parts

    cdef _merge_parts(self):
        """Every private table into the global one (then empty)."""
        cdef int p
        self._reserve(np.asarray(self.p_size).sum())
        for p in range(self.nparts):
            self._merge_part(p)

    cdef _finish(self):
        """The counts and lowest photons of the heaps of an add."""
        self.n_migrated += int(self.nmig.sum())
        if self.keep > 0:
            kept = np.concatenate([self.lowest] + [self.heap_idx[p, :self.heap_size[p]] for p in range(self.nparts)])
            self.lowest = np.sort(kept)[:self.keep]
        self.heap_dev = self.heap_idx = self.heap_size = self.nmig = self.part_views = None

    def result(self):
        """dict: ``pairs`` (G, 2) uint64 (A code, B code) in no particular order, their
        ``counts`` and ``first`` photon (int64), ``n_migrated``, ``lowest`` (the ``keep``
        lowest migrated photon indices, ascending), ``overflowed`` and ``unplaced``
        (migrated photons of this partition whose pair found no room) and
        ``unplaced_pairs`` (private-table entries that found no room: at least the
        distinct pairs left out, at most ``unplaced``)."""
        return {"pairs": np.asarray(self.key)[:self.size].copy(),
                "counts": np.asarray(self.count)[:self.size].copy(),
                "first": np.asarray(self.first)[:self.size].copy(),
                "n_migrated": int(self.n_migrated), "lowest": np.asarray(self.lowest).copy(),
                "overflowed": bool(self.overflowed), "unplaced": int(self.unplaced),
                "unplaced_pairs": int(self.unplaced_pairs)}


# ------------------------------------------------------------------ photon selection

cdef void _select_part(uint8_t* out, const char* a_base, Py_ssize_t a_stride,
                       const char* b_base, Py_ssize_t b_stride, bint have_b,
                       const uint64_t* ka, const int32_t* ea, uint64_t ma, bint test_a,
                       const uint64_t* kb, const int32_t* eb, uint64_t mb, bint test_b,
                       int migrated, Py_ssize_t s, Py_ssize_t e, Py_ssize_t start) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t ca, cb = 0
    cdef bint ok
    for i in range(s, e):
        ca = _seq_at(a_base, a_stride, i)
        ok = not test_a or _lookup(ka, ea, ma, ca) >= 0
        if ok and have_b:
            cb = _seq_at(b_base, b_stride, i)
            if migrated == 1:
                ok = ca != cb
            elif migrated == -1:
                ok = ca == cb
            if ok and test_b:
                ok = _lookup(kb, eb, mb, cb) >= 0
        out[i - start] = ok


def select_photons(uint8_t[::1] out, const uint64_t[:] seq_a, GroupIndex wanted_a=None,
                   seq_b=None, GroupIndex wanted_b=None, int migrated=0,
                   Py_ssize_t start=0, stop=None, n_threads=None):
    """Mark the photons of ``[start, stop)`` that are selected: ``out[i - start] = 1``.

    A photon is selected when its A code is in ``wanted_a`` (None: any), and, when
    ``seq_b`` is given, its B code is in ``wanted_b`` (None: any) and ``migrated`` holds:
    1 = A code != B code, -1 = A code == B code (aligned), 0 = either. ``out`` needs at
    least ``stop - start`` bytes. Returns the number selected.
    """
    cdef Py_ssize_t n = seq_a.shape[0]
    cdef Py_ssize_t stop_ = n if stop is None else stop
    cdef const uint64_t[:] sb
    cdef bint have_b = seq_b is not None
    if not 0 <= start <= stop_ <= n:
        raise ValueError(f"photon range [{start}, {stop_}) outside 0..{n}")
    if out.shape[0] < stop_ - start:
        raise ValueError(f"out has {out.shape[0]} bytes, the range needs {stop_ - start}")
    if migrated not in (-1, 0, 1):
        raise ValueError(f"migrated must be -1, 0 or 1, got {migrated}")
    if stop_ == start:
        return 0
    if have_b:
        sb = seq_b
        if sb.shape[0] != n:
            raise ValueError(f"seqhis arrays differ in length: A {n}, B {sb.shape[0]}")
    else:
        sb = seq_a
    # an empty index still needs valid slot arrays to point at
    cdef GroupIndex ga = wanted_a if wanted_a is not None else GroupIndex(np.zeros(0, np.uint64))
    cdef GroupIndex gb = wanted_b if wanted_b is not None else GroupIndex(np.zeros(0, np.uint64))
    cdef bint test_a = wanted_a is not None, test_b = wanted_b is not None and have_b
    cdef const char* a_base = <const char*>&seq_a[0]
    cdef const char* b_base = <const char*>&sb[0]
    cdef Py_ssize_t a_stride = seq_a.strides[0], b_stride = sb.strides[0]
    cdef int nparts = effective_threads(n_threads)
    cdef Py_ssize_t b, bs
    with nogil:
        for b in prange(_n_blocks(start, stop_, WORK_BLOCK), schedule="dynamic", num_threads=nparts):
            bs = start + b * WORK_BLOCK
            _select_part(&out[0], a_base, a_stride, b_base, b_stride, have_b,
                         &ga.slot_code[0], &ga.slot_entry[0], ga.mask, test_a,
                         &gb.slot_code[0], &gb.slot_entry[0], gb.mask, test_b,
                         migrated, bs, min(bs + WORK_BLOCK, stop_), start)
    return int(np.count_nonzero(np.asarray(out)[:stop_ - start]))


# ------------------------------------------------------------------ two columns in one pass

def count_two(HistoryCounter first, HistoryCounter second,
              const uint64_t[:] first_a, const uint64_t[:] first_b,
              const uint64_t[:] second_a, const uint64_t[:] second_b,
              Py_ssize_t start=0, stop=None, n_threads=None):
    """Count two code columns in one pass over the photons: ``first`` gets
    (first_a, first_b) and ``second`` (second_a, second_b), e.g. seqhis ``ph[:, 0, 0]``
    and seqmat ``ph[:, 0, 1]``, whose words share a cache line. Same counts as
    ``first.add(first_a, first_b, ...)`` and ``second.add(second_a, second_b, ...)``.
    """
    cdef Py_ssize_t n = first_a.shape[0]
    if first_b.shape[0] != n or second_a.shape[0] != n or second_b.shape[0] != n:
        raise ValueError(f"code columns differ in length: {first_a.shape[0]}, {first_b.shape[0]}, "
                         f"{second_a.shape[0]}, {second_b.shape[0]}")
    cdef Py_ssize_t stop_ = n if stop is None else stop
    if not 0 <= start <= stop_ <= n:
        raise ValueError(f"photon range [{start}, {stop_}) outside 0..{n}")
    if stop_ == start:
        return
    if first is second:
        raise ValueError("count_two needs two different counters")
    cdef int nparts = effective_threads(n_threads)
    first._prepare_parts(nparts)
    second._prepare_parts(nparts)
    cdef const char* a1 = <const char*>&first_a[0]
    cdef const char* b1 = <const char*>&first_b[0]
    cdef const char* a2 = <const char*>&second_a[0]
    cdef const char* b2 = <const char*>&second_b[0]
    cdef Py_ssize_t sa1 = first_a.strides[0], sb1 = first_b.strides[0]
    cdef Py_ssize_t sa2 = second_a.strides[0], sb2 = second_b.strides[0]
    cdef uint64_t[:, ::1] c1 = first.p_slot_code
    cdef int32_t[:, ::1] e1 = first.p_slot_entry
    cdef uint64_t[:, ::1] k1 = first.p_code
    cdef int64_t[:, :, ::1] n1 = first.p_count
    cdef int64_t[:, ::1] s1 = first.p_entry_slot
    cdef int64_t[::1] z1 = first.p_size
    cdef uint64_t m1 = first.p_mask
    cdef uint64_t[:, ::1] c2 = second.p_slot_code
    cdef int32_t[:, ::1] e2 = second.p_slot_entry
    cdef uint64_t[:, ::1] k2 = second.p_code
    cdef int64_t[:, :, ::1] n2 = second.p_count
    cdef int64_t[:, ::1] s2 = second.p_entry_slot
    cdef int64_t[::1] z2 = second.p_size
    cdef uint64_t m2 = second.p_mask
    cdef int64_t room1 = first.p_code.shape[1], room2 = second.p_code.shape[1]
    cdef Py_ssize_t k, p, b, bs, be, ntodo
    cdef int t
    todo = np.arange(_n_blocks(start, stop_, WORK_BLOCK), dtype=np.int64)
    skipped = np.zeros(len(todo), dtype=np.uint8)
    cdef int64_t[::1] todo_v
    cdef uint8_t[::1] skip_v = skipped
    while len(todo):
        todo_v = todo
        ntodo = len(todo)
        with nogil:
            for k in prange(ntodo, schedule="dynamic", num_threads=nparts):
                t = cyext_thread_id()
                b = todo_v[k]
                bs = start + b * WORK_BLOCK
                be = min(bs + WORK_BLOCK, stop_)
                if z1[t] + 2 * (be - bs) > room1 or z2[t] + 2 * (be - bs) > room2:
                    skip_v[b] = 1
                else:
                    skip_v[b] = 0
                    _count_part(a1, sa1, b1, sb1, bs, be, &c1[t, 0], &e1[t, 0], m1,
                                &k1[t, 0], &n1[t, 0, 0], &s1[t, 0], &z1[t])
                    _count_part(a2, sa2, b2, sb2, bs, be, &c2[t, 0], &e2[t, 0], m2,
                                &k2[t, 0], &n2[t, 0, 0], &s2[t, 0], &z2[t])
        first._reserve(np.asarray(first.p_size).sum())
        second._reserve(np.asarray(second.p_size).sum())
        for p in range(nparts):
            first._merge_part(p)
            second._merge_part(p)
        todo = todo[skipped[todo] == 1]
