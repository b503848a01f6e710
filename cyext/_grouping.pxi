# ------------------------------------------------------------------ grouping
# Open-addressing hash over uint64 seqhis codes. A slot holds the code and the id of
# its entry (-1 = empty); entries are dense, in insertion order, so a table of G codes
# is G rows. Linear probing at load <= 1/2 keeps every lookup O(1), whatever the codes.

cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    # Fibonacci hashing: one multiply spreads every bit of the code into the high bits,
    # the shift-xor folds them into the low bits that the mask keeps
    x *= <uint64_t>0x9E3779B97F4A7C15ULL
    return x ^ (x >> 29)


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

    def lookup(self, codes):
        """Group number of each code (int32), -1 where the code is not in the index."""
        cdef const uint64_t[:] c = np.asarray(codes, dtype=np.uint64).reshape(-1)
        out = np.empty(len(c), dtype=np.int32)
        cdef int32_t[::1] o = out
        cdef Py_ssize_t i
        for i in range(len(c)):
            o[i] = _lookup(&self.slot_code[0], &self.slot_entry[0], self.mask, c[i])
        return out
