# ------------------------------------------------------------------ record deviations
# One pass over both events' step records (rx) and histories (ph) for the rpost, rtime
# and rpol tables together. Arithmetic is on the stored integers (data contract,
# "Exactness"): the per-photon deviation of a table is max |sA - sB| over every record
# slot and component, an exact int32, compared with integer cut thresholds.

from libc.stdlib cimport abs as iabs

# Field layout of one group's row in a record partial table (int64):
#   [0] nitem, then for table k in (rpost, rtime, rpol) at 1 + 7k:
#   +0..+2 photons beyond cut level 0, 1, 2; +3 max; +4 min; +5 sum; +6 photon of max
cdef enum:
    REC_FIELDS = 22
    REC_STRIDE = 7
RECORD_TABLES = ("rpost", "rtime", "rpol")
RECORD_FIELDS = REC_FIELDS
#: larger than any |difference| of two stored values, so the first photon sets the min
RECORD_MIN_START = 65536


cdef inline void _record_deviation(const int16_t* a, const int16_t* b, int maxrec,
                                   int32_t* d) noexcept nogil:
    """d[0] = position, d[1] = time, d[2] = polarization deviation, in stored counts."""
    cdef int r, c
    cdef int32_t dpos = 0, dt = 0, dpol = 0, x
    cdef uint16_t ua, ub
    for r in range(maxrec):
        for c in range(3):
            x = iabs(<int32_t>a[c] - <int32_t>b[c])
            if x > dpos:
                dpos = x
        x = iabs(<int32_t>a[3] - <int32_t>b[3])
        if x > dt:
            dt = x
        # q1 as little-endian bytes: px py | pz wl; polarization = bytes 0, 1, 2
        ua = <uint16_t>a[4]
        ub = <uint16_t>b[4]
        x = iabs(<int32_t>(ua & 0xFF) - <int32_t>(ub & 0xFF))
        if x > dpol:
            dpol = x
        x = iabs(<int32_t>(ua >> 8) - <int32_t>(ub >> 8))
        if x > dpol:
            dpol = x
        ua = <uint16_t>a[5]
        ub = <uint16_t>b[5]
        x = iabs(<int32_t>(ua & 0xFF) - <int32_t>(ub & 0xFF))
        if x > dpol:
            dpol = x
        a += 8
        b += 8
    d[0] = dpos
    d[1] = dt
    d[2] = dpol


cdef void _records_part(const char* ra, Py_ssize_t ra_stride, const char* rb, Py_ssize_t rb_stride,
                        const char* sa, Py_ssize_t sa_stride, const char* sb, Py_ssize_t sb_stride,
                        Py_ssize_t s, Py_ssize_t e, int maxrec,
                        const uint64_t* slot_code, const int32_t* slot_entry, uint64_t mask,
                        const int64_t* thr, int64_t* agg, int64_t* unknown) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t ca, last = 0
    cdef int32_t g, last_g = -1
    cdef int32_t d[3]
    cdef int64_t* row
    cdef int64_t* f
    cdef int64_t x
    cdef int k
    for i in range(s, e):
        ca = _seq_at(sa, sa_stride, i)
        if ca != _seq_at(sb, sb_stride, i):
            continue
        if last_g >= 0 and ca == last:
            g = last_g
        else:
            g = _lookup(slot_code, slot_entry, mask, ca)
            last, last_g = ca, g
        if g < 0:
            unknown[0] += 1
            continue
        _record_deviation(<const int16_t*>(ra + i * ra_stride),
                          <const int16_t*>(rb + i * rb_stride), maxrec, d)
        row = agg + <Py_ssize_t>g * REC_FIELDS
        row[0] += 1
        for k in range(3):
            f = row + 1 + REC_STRIDE * k
            x = d[k]
            if x >= thr[3 * k]:
                f[0] += 1
                if x >= thr[3 * k + 1]:
                    f[1] += 1
                    if x >= thr[3 * k + 2]:
                        f[2] += 1
            if x > f[3]:  # photons come in increasing order: ties keep the lowest index
                f[3] = x
                f[6] = i
            if x < f[4]:
                f[4] = x
            f[5] += x


def new_record_partials(Py_ssize_t n_groups, int n_parts):
    """Zeroed partial tables (n_parts, n_groups, RECORD_FIELDS) int64 for record_deviations."""
    agg = np.zeros((n_parts, n_groups, RECORD_FIELDS), dtype=np.int64)
    for k in range(3):
        agg[:, :, 1 + REC_STRIDE * k + 3] = -1
        agg[:, :, 1 + REC_STRIDE * k + 4] = RECORD_MIN_START
        agg[:, :, 1 + REC_STRIDE * k + 6] = -1
    return agg


def record_deviations(int64_t[:, :, ::1] partials, GroupIndex index, const int64_t[:, ::1] thresholds,
                      const int16_t[:, :, :, :] rx_a, const int16_t[:, :, :, :] rx_b,
                      const uint64_t[:] seq_a, const uint64_t[:] seq_b,
                      Py_ssize_t start, Py_ssize_t stop):
    """Accumulate rpost/rtime/rpol aggregates of aligned photons ``[start, stop)``.

    partials    (P, G, RECORD_FIELDS) int64 from new_record_partials; one part per thread
    index       GroupIndex of the aligned codes (group g = row g)
    thresholds  (3, 3) int64: a photon is beyond cut j of table k when d >= thresholds[k, j]
    rx_a, rx_b  (N, maxrec, 2, 4) int16 records, each photon's records contiguous
    seq_a/b     (N,) uint64 seqhis (e.g. ``ph[:, 0, 0]``)
    Returns the number of aligned photons whose code is missing from ``index`` (0 when
    the index was built from these events).
    """
    cdef Py_ssize_t n = seq_a.shape[0]
    cdef int nparts = partials.shape[0]
    cdef int maxrec = rx_a.shape[1]
    if partials.shape[1] != len(index) or partials.shape[2] != RECORD_FIELDS:
        raise ValueError("partials must be new_record_partials(len(index), n_parts)")
    if thresholds.shape[0] != 3 or thresholds.shape[1] != 3:
        raise ValueError("thresholds must be (3, 3)")
    _check_records(rx_a, rx_b, seq_a, seq_b)
    if not 0 <= start <= stop <= n:
        raise ValueError(f"photon range [{start}, {stop}) outside 0..{n}")
    if stop == start or len(index) == 0:
        return 0
    unknown = np.zeros(nparts, dtype=np.int64)
    cdef int64_t[::1] unk = unknown
    cdef const char* ra = <const char*>&rx_a[0, 0, 0, 0]
    cdef const char* rb = <const char*>&rx_b[0, 0, 0, 0]
    cdef const char* sa = <const char*>&seq_a[0]
    cdef const char* sb = <const char*>&seq_b[0]
    cdef Py_ssize_t ras = rx_a.strides[0], rbs = rx_b.strides[0]
    cdef Py_ssize_t sas = seq_a.strides[0], sbs = seq_b.strides[0]
    cdef const uint64_t* slot_code = &index.slot_code[0]
    cdef const int32_t* slot_entry = &index.slot_entry[0]
    cdef uint64_t mask = index.mask
    cdef const int64_t* thr = &thresholds[0, 0]
    cdef Py_ssize_t p
    with nogil:
        for p in prange(nparts, schedule="static", chunksize=1, num_threads=nparts):
            _records_part(ra, ras, rb, rbs, sa, sas, sb, sbs,
                          _part_bound(start, stop - start, p, nparts),
                          _part_bound(start, stop - start, p + 1, nparts),
                          maxrec, slot_code, slot_entry, mask, thr,
                          &partials[p, 0, 0], &unk[p])
    return int(unknown.sum())


def merge_record_partials(partials):
    """(P, G, RECORD_FIELDS) -> (G, RECORD_FIELDS): counts and sums add, max/min combine,
    the photon of the max is the lowest index among the parts that reach it."""
    partials = np.asarray(partials)
    out = partials.sum(axis=0)
    for k in range(3):
        base = 1 + REC_STRIDE * k
        mx = partials[:, :, base + 3]
        out[:, base + 3] = mx.max(axis=0)
        out[:, base + 4] = partials[:, :, base + 4].min(axis=0)
        at_max = np.where(mx == out[None, :, base + 3], partials[:, :, base + 6], np.iinfo(np.int64).max)
        out[:, base + 6] = at_max.min(axis=0)
    return out


cdef _check_rx(const int16_t[:, :, :, :] rx, str name, Py_ssize_t n):
    if rx.shape[0] != n:
        raise ValueError(f"{name} has {rx.shape[0]} photons, seqhis has {n}")
    if rx.shape[2] != 2 or rx.shape[3] != 4:
        raise ValueError(f"{name} must be (N, maxrec, 2, 4), got (N, {rx.shape[1]}, {rx.shape[2]}, {rx.shape[3]})")
    if rx.strides[3] != 2 or rx.strides[2] != 8 or rx.strides[1] != 16:
        raise ValueError(f"{name}: each photon's records must be C-contiguous")


cdef _check_records(const int16_t[:, :, :, :] rx_a, const int16_t[:, :, :, :] rx_b,
                    const uint64_t[:] seq_a, const uint64_t[:] seq_b):
    """Same photon count everywhere, same maxrec, each photon's records contiguous."""
    cdef Py_ssize_t n = seq_a.shape[0]
    _check_rx(rx_a, "rx_a", n)
    _check_rx(rx_b, "rx_b", n)
    if seq_b.shape[0] != n:
        raise ValueError(f"seq_b has {seq_b.shape[0]} photons, seq_a has {n}")
    if rx_a.shape[1] != rx_b.shape[1]:
        raise ValueError(f"maxrec differs: A {rx_a.shape[1]}, B {rx_b.shape[1]}")
