# ------------------------------------------------------------------ grouping
# Open-addressing hash over uint64 seqhis codes. A slot holds the code and the id of
# its entry (-1 = empty); entries are dense, in insertion order, so a table of G codes
# is G rows. Linear probing at load <= 1/2 keeps every lookup O(1), whatever the codes.

cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    # Fibonacci hashing: one multiply spreads every bit of the code into the high bits,
    # the shift-xor folds them into the low bits that the mask keeps
    x *= <uint64_t>0x9E3779B97F4A7C15ULL
    return x ^ (x >> 29)


cdef extern from *:
    """
    /* a hint that the slot of a code looked up a few iterations later be fetched now:
       with a million codes the slot tables are far bigger than the caches, and the
       probes of a loop over codes then overlap instead of waiting one by one */
    #if defined(__GNUC__) || defined(__clang__)
    #define CYEXT_PREFETCH(p) __builtin_prefetch(p)
    #else
    #define CYEXT_PREFETCH(p) ((void)0)
    #endif
    """
    void _prefetch "CYEXT_PREFETCH"(const void* p) noexcept nogil

#: codes ahead whose slots a loop over many codes prefetches (_prefetch_slot)
cdef enum:
    _AHEAD = 16


cdef tuple _released_slots():
    """(slot_code, slot_entry, mask) of an empty 16-slot table: what a released table
    keeps in place of its own (freed) slot tables."""
    return np.zeros(16, np.uint64), np.full(16, -1, np.int32), 15


cdef inline void _prefetch_slot(const uint64_t* slot_code, const int32_t* slot_entry,
                                uint64_t mask, uint64_t code) noexcept nogil:
    cdef uint64_t h = _mix(code) & mask
    _prefetch(slot_entry + h)
    _prefetch(slot_code + h)


cdef inline int32_t _lookup(const uint64_t* slot_code, const int32_t* slot_entry,
                            uint64_t mask, uint64_t code) noexcept nogil:
    cdef uint64_t h = _mix(code) & mask
    while slot_entry[h] >= 0:
        if slot_code[h] == code:
            return slot_entry[h]
        h = (h + 1) & mask
    return -1


cdef inline int64_t _find_slot(const uint64_t* slot_code, const int32_t* slot_entry,
                               uint64_t mask, uint64_t code) noexcept nogil:
    """Slot holding ``code``, or the empty slot where it belongs."""
    cdef uint64_t h = _mix(code) & mask
    while slot_entry[h] >= 0 and slot_code[h] != code:
        h = (h + 1) & mask
    return <int64_t>h


cdef Py_ssize_t _capacity_for(Py_ssize_t n):
    """Power-of-two slot count keeping the load at or below 1/2."""
    cdef Py_ssize_t cap = 16
    while cap < 2 * n:
        cap *= 2
    return cap


cdef class GroupIndex:
    """Read-only map from seqhis code to group number 0..G-1 (the order of ``codes``).

    Built once from the codes a comparison aggregates (the aligned histories) and
    handed to the deviation kernels, which look up each aligned photon's group.
    """
    cdef readonly object codes
    cdef uint64_t[::1] slot_code
    cdef int32_t[::1] slot_entry
    cdef uint64_t mask
    cdef bint released  # _release() took the slot tables: codes stay, lookups raise

    def __init__(self, codes):
        codes = np.ascontiguousarray(codes, dtype=np.uint64)
        self.codes = codes
        cdef Py_ssize_t cap = _capacity_for(len(codes))
        self.slot_code = np.zeros(cap, dtype=np.uint64)
        self.slot_entry = np.full(cap, -1, dtype=np.int32)
        self.mask = cap - 1
        cdef const uint64_t[::1] c = codes
        cdef Py_ssize_t i
        cdef int64_t h
        cdef Py_ssize_t n = len(codes)
        cdef bint repeated = False
        with nogil:
            for i in range(n):
                if i + _AHEAD < n:
                    _prefetch_slot(&self.slot_code[0], &self.slot_entry[0], self.mask, c[i + _AHEAD])
                h = _find_slot(&self.slot_code[0], &self.slot_entry[0], self.mask, c[i])
                if self.slot_entry[h] >= 0:  # the code is there already
                    repeated = True
                    break
                self.slot_code[h] = c[i]
                self.slot_entry[h] = <int32_t>i
        if repeated:
            raise ValueError("GroupIndex: codes must be distinct")

    def __len__(self):
        return len(self.codes)

    cdef _release(self):
        """Free the slot tables (a pass that ended keeps only the codes)."""
        self.released = True
        self.slot_code, self.slot_entry, self.mask = _released_slots()

    cdef _check(self):
        if self.released:
            raise ValueError("GroupIndex: its slot tables were released (the pass that owned it ended)")

    def lookup(self, codes):
        """Group number of each code (int32), -1 where the code is not in the index."""
        self._check()
        cdef const uint64_t[:] c = np.asarray(codes, dtype=np.uint64).reshape(-1)
        out = np.empty(len(c), dtype=np.int32)
        cdef int32_t[::1] o = out
        cdef Py_ssize_t i, n = len(c)
        cdef const uint64_t* sc = &self.slot_code[0]
        cdef const int32_t* se = &self.slot_entry[0]
        with nogil:
            for i in range(n):
                if i + _AHEAD < n:
                    _prefetch_slot(sc, se, self.mask, c[i + _AHEAD])
                o[i] = _lookup(sc, se, self.mask, c[i])
        return out
