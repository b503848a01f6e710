# ------------------------------------------------------------------ the one pass over a pair
# The history counts of A and B and the four deviation tables in ONE pass over each
# photon range, one parallel region per round (docs/kernels.md, "One pass"): a thread
# takes a SUM_BLOCK block, counts its histories into its private table (reading ph),
# then, if every aligned photon of the block has a history the group index knows,
# aggregates the block's deviations (ph again, now from cache, with rx and ox).
#
# The groups are not known before the pass: a block whose aligned photons bring a new
# history waits. After the region the private counts merge, the index grows by the
# histories now seen in both events, and the waiting blocks (already counted) get
# their deviations in the next round. A block is never half done, and the ox sums of a
# block are made in photon order, so the tables are those of the two-pass way
# (HistoryCounter, then DeviationAccumulator) whatever the threads and the rounds.


cdef enum:
    # migrated photons a counting range keeps before counting them: their pair table's
    # lines are cold (the block's records went through the caches since), and probed in
    # a loop of their own the misses of several photons overlap
    _MIGRANT_BATCH = 1024


cdef void _migrate_photons(const _Inputs* x, const Py_ssize_t* migrants, Py_ssize_t n,
                           _MigrationPart* migrated) noexcept nogil:
    cdef Py_ssize_t k, i
    for k in range(n):
        i = migrants[k]
        _migrate_photon(migrated, _seq_at(x.sa, x.sas, i), _seq_at(x.sb, x.sbs, i), i)


cdef int64_t _count_block(const _Inputs* x, Py_ssize_t s, Py_ssize_t e,
                          uint64_t* slot_code, int32_t* slot_entry, uint64_t mask,
                          uint64_t* code, int64_t* count, int64_t* entry_slot, int64_t* size,
                          int32_t* entry_group, int32_t* groups, _MigrationPart* migrated,
                          PyObject* finder, int64_t* group_count) noexcept nogil:
    """Count the histories of photons [s, e) into a private table (as _count_part), and
    put each photon's group in ``groups`` (_NOT_ALIGNED, or -1 for a history the index
    of ``x`` lacks; each private entry looks its code up once, into ``entry_group``), and
    the migrated photons into ``migrated`` (unless NULL); with a ``finder`` (the PairPass,
    or NULL) an aligned photon's history that the index lacks gets a new group at once
    (PairPass._new_group); returns how many aligned photons are left without a group.
    With ``group_count`` (not NULL) an aligned photon whose history the index knows is
    counted there instead, at its group (the caller adds those counts to A and B)."""
    cdef Py_ssize_t i
    cdef const char* sa = x.sa
    cdef const char* sb = x.sb
    cdef Py_ssize_t sas = x.sas, sbs = x.sbs
    cdef uint64_t ca, cb
    cdef int64_t ea, eb, n, unknown = 0
    cdef int64_t entries = size[0]  # a local: the count stores cannot alias it for the compiler
    cdef int32_t g
    cdef Py_ssize_t migrants[_MIGRANT_BATCH]
    cdef Py_ssize_t nm = 0
    for i in range(s, e):
        ca = _seq_at(sa, sas, i)
        cb = _seq_at(sb, sbs, i)
        if group_count != NULL and cb == ca:
            # most photons: a known history, aligned; one probe of the small shared index
            # and one count, where the private table costs a probe of its sparse slots,
            # the entry's group and two counts (docs/kernels.md, "One pass")
            g = _lookup(x.slot_code, x.slot_entry, x.mask, ca)
            if g >= 0:
                group_count[g] += 1
                groups[i - s] = g
                continue
        # every photon probes the (small, cached) table: remembering the last code saves
        # less than its branch costs, as consecutive photons' histories differ unpredictably
        n = entries
        ea = _entry_for(slot_code, slot_entry, mask, code, count, entry_slot, &entries, ca)
        if ea == n:  # a new entry
            entry_group[ea] = _lookup(x.slot_code, x.slot_entry, x.mask, ca)
        g = entry_group[ea]
        count[2 * ea] += 1
        if cb == ca:
            count[2 * ea + 1] += 1
            if g < 0 and finder != NULL:  # rare: the first aligned photon of a new history
                with gil:
                    g = (<PairPass>finder)._new_group(ca)
                entry_group[ea] = g
            groups[i - s] = g
            unknown += g < 0
        else:
            n = entries
            eb = _entry_for(slot_code, slot_entry, mask, code, count, entry_slot, &entries, cb)
            if eb == n:
                entry_group[eb] = _lookup(x.slot_code, x.slot_entry, x.mask, cb)
            count[2 * eb + 1] += 1
            groups[i - s] = _NOT_ALIGNED
            if migrated != NULL:
                migrants[nm] = i
                nm += 1
                if nm == _MIGRANT_BATCH:
                    _migrate_photons(x, migrants, nm, migrated)
                    nm = 0
    size[0] = entries
    if nm:
        _migrate_photons(x, migrants, nm, migrated)
    return unknown


#: photons whose histories (and migrated pairs) a thread of a PairPass counts between merges
PAIR_PASS_ROOM = HISTORY_ROOM
#: groups a PairPass gives during a round to histories the index lacks (rows kept free)
NEW_GROUPS_PER_ROUND = 1024
#: new histories in one round beyond which a PairPass counts the rest of the range first
MANY_NEW_HISTORIES = 1 << 14


cdef enum:  # the state of a block of an add() range
    _TO_COUNT = 0    # not counted yet
    _COUNTED = 1     # counted, its deviations wait for the index to know its histories
    _DONE = 2


cdef class PairPass:
    """History counts (``counter``, a HistoryCounter) and deviation tables
    (``deviations``, a DeviationAccumulator) of the photon ranges given to :meth:`add`,
    and with a ``migrations`` MigrationCounter its migrated photons, each range read
    once. The arguments are DeviationAccumulator's; its index grows as histories are
    found. :meth:`result` gives the counts and the tables of every history
    seen in both events, in ascending code order (what the two-pass way gives for the
    groups ``HistoryCounts.groups()``).
    """
    cdef readonly HistoryCounter counter
    cdef readonly DeviationAccumulator deviations
    cdef readonly MigrationCounter migrations
    cdef readonly int rounds
    cdef bint finished
    cdef bint indexed  # the index knows every history counted in both events (_grow_index)
    # groups given to histories found during a round (rows reserved beyond the index)
    cdef dict found
    cdef list found_codes
    cdef Py_ssize_t found_first, found_room

    def __init__(self, thresholds, cuts, n_threads=None, *, records=True, bint finals=True, maxrec=None,
                 MigrationCounter migrations=None):
        if migrations is not None and migrations.room < WORK_BLOCK:
            raise ValueError(f"migrations: a MigrationCounter with room >= {WORK_BLOCK} photons is needed")
        self.migrations = migrations
        # with many new histories a thread counts PAIR_PASS_ROOM photons, then the tables merge
        self.counter = HistoryCounter(room=PAIR_PASS_ROOM)
        self.deviations = DeviationAccumulator(GroupIndex(np.zeros(0, np.uint64)), thresholds, cuts, n_threads,
                                               records=records, finals=finals, maxrec=maxrec)
        self.rounds = 0
        self.finished = False
        self.indexed = True
        self.found, self.found_codes, self.found_first, self.found_room = {}, [], 0, 0

    def add(self, rx_a, rx_b, ox_a, ox_b, const uint64_t[:] seq_a, const uint64_t[:] seq_b,
            Py_ssize_t start, Py_ssize_t stop):
        """Count and aggregate the photons of ``[start, stop)`` (arguments as
        DeviationAccumulator.add; ranges in increasing order)."""
        cdef DeviationAccumulator acc = self.deviations
        cdef HistoryCounter hc = self.counter
        cdef _Inputs x
        if self.finished:
            raise ValueError("PairPass: result() was taken, nothing more can be added")
        acc._fill_inputs(&x, rx_a, rx_b, ox_a, ox_b, seq_a, seq_b, start, stop)
        if stop == start:
            return
        cdef Py_ssize_t nblocks = _n_blocks(start, stop, _SUM_BLOCK)
        state = np.zeros(nblocks, dtype=np.uint8)
        cdef uint8_t[::1] st = state
        # where the counting of each block goes on (a thread whose private table is full
        # leaves the rest of its block to the next round)
        resume = start + np.arange(nblocks, dtype=np.int64) * _SUM_BLOCK
        cdef int64_t[::1] upto = resume
        cdef Py_ssize_t i0, i1
        cdef int64_t missing
        cdef bint fresh
        todo = np.arange(nblocks, dtype=np.int64)
        cdef const int64_t[::1] bl
        cdef Py_ssize_t k, nb, b, bs, be
        cdef int t, nparts
        cdef int64_t room = 2 * hc.room
        cdef uint64_t[:, ::1] p_slot_code
        cdef int32_t[:, ::1] p_slot_entry
        cdef uint64_t[:, ::1] p_code
        cdef int64_t[:, :, ::1] p_count
        cdef int64_t[:, ::1] p_entry_slot
        cdef int64_t[::1] p_size
        cdef _Partials p
        # per thread: the group of each private entry, and of each photon of its block
        entry_groups = np.empty((acc.n_threads_asked, 2 * hc.room), dtype=np.int32)
        block_groups = np.empty((acc.n_threads_asked, _SUM_BLOCK), dtype=np.int32)
        cdef int32_t[:, ::1] eg = entry_groups
        cdef int32_t[:, ::1] bgr = block_groups
        cdef const int32_t* counted
        cdef MigrationCounter mc = self.migrations
        cdef _MigrationPart* mig = mc._start(acc.n_threads_asked) if mc is not None else NULL
        cdef int64_t mroom = mc.room if mc is not None else 0
        cdef _BlockSums scratch
        cdef _BlockScratch sv
        cdef int64_t[::1] unk
        sums = []
        # with no groups yet, or many new histories in a round (rows to grow, blocks to
        # wait): count the whole range first, then grow the tables once, to their size,
        # and aggregate (the two-pass way)
        cdef bint count_first = len(acc.index) == 0, now
        cdef PyObject* finder
        cdef int64_t counted_now, entries_before
        # aligned photons of known histories, counted per group (a few groups only: these
        # counts stay in the caches), then added to the counter after the region
        cdef int64_t[:, ::1] gcount
        cdef bint by_group
        while len(todo):
            if not (state[todo] == _TO_COUNT).any():  # every block counted: deviations only
                acc._point_index(&x)
                unknown = np.zeros(acc.n_threads_asked, dtype=np.int64)
                sums.extend(acc._deviation_round(&x, start, stop, todo, state[todo] == _COUNTED, unknown))
                self.rounds += 1
                if unknown.any():
                    raise RuntimeError(f"PairPass: {int(unknown.sum())} photons of known blocks had unknown histories")
                break
            before = resume.copy()
            now = not count_first or not (state[todo] == _TO_COUNT).any()  # deviations this round
            nparts = acc.n_threads
            hc._prepare_parts(nparts)
            p_slot_code, p_slot_entry, p_code = hc.p_slot_code, hc.p_slot_entry, hc.p_code
            p_count, p_entry_slot, p_size = hc.p_count, hc.p_entry_slot, hc.p_size
            if not count_first:  # rows for the histories this round may find
                acc._reserve_rows(len(acc.index) + NEW_GROUPS_PER_ROUND)
                self.found, self.found_codes = {}, []
                self.found_first, self.found_room = len(acc.index), NEW_GROUPS_PER_ROUND
            finder = NULL if count_first else <PyObject*>self
            known = acc.index.codes
            by_group = 0 < len(known) <= _ROWS_CACHED
            group_counts = np.zeros((nparts, len(known) if by_group else 1), dtype=np.int64)
            gcount = group_counts
            acc._point_index(&x)
            p = acc._partials()
            nb = len(todo)
            bl = todo
            scratch = _BlockSums(nb, acc.rows, acc.finals)
            sv = scratch.view()
            unknown = np.zeros(nparts, dtype=np.int64)
            unk = unknown
            with nogil:
                for k in prange(nb, schedule="dynamic", num_threads=nparts):
                    t = cyext_thread_id()
                    b = bl[k]
                    bs = start + b * _SUM_BLOCK
                    be = min(bs + _SUM_BLOCK, stop)
                    counted = NULL  # a block counted in an earlier round looks its groups up
                    if st[b] == _TO_COUNT:
                        fresh = upto[b] == bs
                        i0 = upto[b]
                        missing = 0
                        while i0 < be:  # WORK_BLOCK at a time, while the private tables have room
                            i1 = min(i0 + WORK_BLOCK, be)
                            if p_size[t] + 2 * (i1 - i0) > room or (mig and mig[t].size[0] + (i1 - i0) > mroom):
                                break
                            missing = missing + _count_block(
                                &x, i0, i1, &p_slot_code[t, 0], &p_slot_entry[t, 0], hc.p_mask, &p_code[t, 0],
                                &p_count[t, 0, 0], &p_entry_slot[t, 0], &p_size[t], &eg[t, 0], &bgr[t, i0 - bs],
                                &mig[t] if mig else NULL, finder, &gcount[t, 0] if by_group else NULL)
                            i0 = i1
                        upto[b] = i0
                        if i0 < be:
                            continue  # the rest of its codes next round, after the merge
                        st[b] = _COUNTED
                        if missing or not fresh or not now:
                            continue  # a history the index lacks: next round
                        counted = &bgr[t, 0]
                    elif not now:
                        continue
                    _deviation_block(&x, bs, be, &p, t, _block_at(&sv, k), counted, &unk[t])
                    st[b] = _DONE
            self.rounds += 1
            if unknown.any():  # a block counted as known met an unknown history: a bug
                raise RuntimeError(f"PairPass: {int(unknown.sum())} photons of known blocks had unknown histories")
            sums.extend(scratch.taken(start // _SUM_BLOCK, todo, state[todo] == _DONE))
            if self.found_codes:  # the groups given during the round join the index, in their order
                acc._regroup(GroupIndex(np.concatenate([acc.index.codes, np.array(self.found_codes, np.uint64)])))
                self.found_codes, self.found_room = [], 0
            if by_group:
                aligned = group_counts.sum(axis=0)
                some = aligned > 0
                hc.add_counts(known[some], np.repeat(aligned[some, None], 2, axis=1))
            entries_before = hc.size
            hc._merge_parts()
            if mc is not None:
                mc._merge_parts()
            counted_now = int((resume - before).sum())
            if counted_now:
                self.indexed = False
                if count_first and (state[todo] == _TO_COUNT).any():
                    self._expect_histories(hc.size - entries_before, counted_now, resume, start, stop)
            if (state[todo] == _COUNTED).any() and not (count_first and (state[todo] == _TO_COUNT).any()):
                if self._grow_index(count_first) > MANY_NEW_HISTORIES:
                    count_first = True
            todo = todo[state[todo] != _DONE]
        acc._take_block_sums(sums)
        acc.next_start = stop
        if mc is not None:
            mc._finish()

    cdef int32_t _new_group(self, uint64_t code) noexcept:
        """The group of a history found during a round (the GIL serialises the threads):
        the same for every thread, the next reserved row when new, -1 when none is left
        (the block then waits for the round's end)."""
        g = self.found.get(code)
        if g is not None:
            return g
        if len(self.found_codes) >= self.found_room:
            return -1
        g = self.found_first + len(self.found_codes)
        self.found[code] = g
        self.found_codes.append(code)
        return g

    cdef _expect_histories(self, int64_t found, int64_t counted, resume, Py_ssize_t start, Py_ssize_t stop):
        """Room in the counter, at once, for the histories the photons still to count
        would bring at the rate of this round (``found`` new among ``counted`` photons):
        with a million distinct histories the table is sized once instead of doubling
        a dozen times. The slot table keeps its power-of-two size (no margin past it)."""
        ends = np.minimum(start + np.arange(1, len(resume) + 1, dtype=np.int64) * _SUM_BLOCK, stop)
        left = int((ends - resume).sum())  # photons of the blocks not counted to their end
        cdef int64_t want = self.counter.size + (found * left + counted - 1) // counted
        if want <= 2 * self.counter.size:
            return  # doubling does as well
        self.counter._expect(max(want, min(want + want // 16, _capacity_for(want) // 2)))

    cdef Py_ssize_t _grow_index(self, bint exact=True):
        """Groups for every history now counted in both events that the index lacks
        (new codes after the old: rows already made keep their numbers); how many.
        ``exact``: rows for these groups only (else room to grow, see _regroup)."""
        cdef DeviationAccumulator acc = self.deviations
        cdef HistoryCounter hc = self.counter
        codes, counts = hc.result(copy=False)
        both = codes[(counts[:, 0] > 0) & (counts[:, 1] > 0)]
        new = both[acc.index.lookup(both) < 0] if len(acc.index) else both
        if len(new):
            sort_codes(new)  # a copy of the counter's codes, sorted in place
            acc._regroup(GroupIndex(np.concatenate([acc.index.codes, new]) if len(acc.index) else new), exact)
        self.indexed = True
        return len(new)

    def result(self):
        """(codes (H,) uint64, counts (H, 2) int64) of every history in no particular
        order, the groups (G,) uint64 = the codes counted in both events, ascending, and
        the deviation tables of those groups as DeviationAccumulator.result (row g =
        group g; a group without aligned photons has an empty row). It ends the pass:
        the tables are put in code order where they are."""
        if self.finished:
            raise ValueError("PairPass: result() can be taken once")
        self.finished = True
        if not self.indexed:
            self._grow_index()
        codes, counts = self.counter.result(copy=False)  # the counter is done: views
        self.counter._release()  # its slot tables, before the tables' merge needs memory
        res = self.deviations.result(copy=False)
        groups = self.deviations.index.codes
        self.deviations.index._release()
        if len(groups) > 1 and not bool((groups[:-1] < groups[1:]).all()):  # groups found in a round
            order = np.argsort(groups)
            for key in ("records", "slots", "finals", "sums"):
                if key in res:  # the rows are ours alone (views of the finished tables or merged copies)
                    _take_in_place(res[key], order)
            groups = groups[order]
        return codes, counts, groups, res


cdef _take_in_place(rows, const int64_t[::1] order):
    """rows[:] = rows[order] without a copy of the rows (a permutation, cycle by cycle,
    one row of scratch): a million rows of a few hundred bytes are not copied twice."""
    cdef Py_ssize_t n = order.shape[0], size = rows.itemsize * (rows.size // max(n, 1))
    if n == 0 or size == 0:
        return
    if rows.shape[0] != n or not rows.flags.c_contiguous:
        raise ValueError("_take_in_place: C-contiguous rows, one per order entry")
    cdef uint8_t[::1] raw = rows.reshape(-1).view(np.uint8)
    cdef char* base = <char*>&raw[0]
    done_ = np.zeros(n, dtype=np.uint8)
    scratch_ = np.empty(size, dtype=np.uint8)
    cdef uint8_t[::1] done = done_
    cdef uint8_t[::1] scratch_v = scratch_
    cdef char* scratch = <char*>&scratch_v[0]
    cdef Py_ssize_t i, j, k
    with nogil:
        for i in range(n):
            if done[i] or order[i] == i:
                continue
            memcpy(scratch, base + i * size, size)  # row i, the first of its cycle
            j = i
            while True:
                k = order[j]
                done[j] = 1
                if k == i:
                    memcpy(base + j * size, scratch, size)
                    break
                memcpy(base + j * size, base + k * size, size)
                j = k
