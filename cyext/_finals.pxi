# ------------------------------------------------------------------ final-photon deviations
# The ox table: per aligned photon, d = max |float64(a) - float64(b)| over ox[:, :3, :]
# (position, time, direction, weight, polarization, wavelength). A NaN anywhere makes
# the photon count as NaN: beyond every cut, kept out of max/min/sum, never dropped.
#
# Float sums are made reproducible by fixing their association: photons are summed in
# index order within blocks of SUM_BLOCK photons (absolute index of the sliced event),
# and the block partials are added in block order. Threads work on whole blocks, so the
# result is the same for every thread count and every chunking on block boundaries.

#: photons per summation block; chunk boundaries must fall on multiples of it
SUM_BLOCK = 1 << 16
cdef Py_ssize_t _SUM_BLOCK = 1 << 16

# Field layout of one group's counts row (int64): nitem, nnan, beyond cut 0, 1, 2, photon of max
# and of its extrema row (float64): max, min of the non-NaN deviations
cdef enum:
    FIN_FIELDS = 6
    FIN_EXTREMA = 2
FINAL_FIELDS = FIN_FIELDS


cdef inline double _final_deviation(const float* a, const float* b) noexcept nogil:
    cdef double d = 0.0, x
    cdef int c
    for c in range(12):
        x = fabs(<double>a[c] - <double>b[c])
        if isnan(x):
            return x
        if x > d:
            d = x
    return d


cdef void _finals_block(const char* oa, Py_ssize_t oa_stride, const char* ob, Py_ssize_t ob_stride,
                        const char* sa, Py_ssize_t sa_stride, const char* sb, Py_ssize_t sb_stride,
                        Py_ssize_t s, Py_ssize_t e,
                        const uint64_t* slot_code, const int32_t* slot_entry, uint64_t mask,
                        const double* cut, int64_t* counts, double* extrema, int32_t* pos,
                        int32_t* blk_group, double* blk_sum, int64_t* blk_n,
                        int64_t* unknown) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t ca, last = 0
    cdef int32_t g, last_g = -1, q, nq = 0
    cdef double d
    cdef int64_t* row
    cdef double* ex
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
        d = _final_deviation(<const float*>(oa + i * oa_stride), <const float*>(ob + i * ob_stride))
        row = counts + <Py_ssize_t>g * FIN_FIELDS
        row[0] += 1
        if isnan(d):
            row[1] += 1
            row[2] += 1
            row[3] += 1
            row[4] += 1
            continue
        if d > cut[0]:
            row[2] += 1
            if d > cut[1]:
                row[3] += 1
                if d > cut[2]:
                    row[4] += 1
        ex = extrema + <Py_ssize_t>g * FIN_EXTREMA
        if d > ex[0] or (d == ex[0] and i < row[5]):
            ex[0] = d
            row[5] = i
        if d < ex[1]:
            ex[1] = d
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


def new_final_partials(Py_ssize_t n_groups, int n_parts):
    """Zeroed partials for final_deviations: counts (P, G, FINAL_FIELDS) int64 and
    extrema (P, G, 2) float64 starting at (-inf, +inf)."""
    counts = np.zeros((n_parts, n_groups, FINAL_FIELDS), dtype=np.int64)
    counts[:, :, 5] = -1
    extrema = np.empty((n_parts, n_groups, FIN_EXTREMA), dtype=np.float64)
    extrema[:, :, 0] = -np.inf
    extrema[:, :, 1] = np.inf
    return counts, extrema


def new_block_sums(Py_ssize_t n_groups, Py_ssize_t n_blocks):
    """Scratch for the per-block sums of final_deviations over up to n_blocks blocks."""
    cap = max(1, min(_SUM_BLOCK, n_groups))
    return (np.zeros((n_blocks, cap), dtype=np.int32), np.zeros((n_blocks, cap), dtype=np.float64),
            np.zeros(n_blocks, dtype=np.int64))


def final_deviations(int64_t[:, :, ::1] counts, double[:, :, ::1] extrema,
                     int32_t[:, ::1] blk_group, double[:, ::1] blk_sum, int64_t[::1] blk_n,
                     GroupIndex index, const double[::1] cuts,
                     const float[:, :, :] ox_a, const float[:, :, :] ox_b,
                     const uint64_t[:] seq_a, const uint64_t[:] seq_b,
                     Py_ssize_t start, Py_ssize_t stop):
    """ox-table aggregates of aligned photons ``[start, stop)``.

    counts, extrema       partials from new_final_partials (P parts = P threads)
    blk_group, blk_sum,   from new_block_sums: filled with, for each block of the range,
    blk_n                 the groups present and their in-order sum (add_block_sums adds
                          them to the totals in block order)
    cuts                  (3,) float64: beyond cut j when d > cuts[j]
    ox_a, ox_b            (N, 4, 4) float32 final photons, each photon contiguous
    ``start`` must be a multiple of SUM_BLOCK. Returns the number of aligned photons
    whose code is missing from ``index``.
    """
    cdef Py_ssize_t n = seq_a.shape[0]
    cdef int nparts = counts.shape[0]
    cdef Py_ssize_t G = len(index)
    if counts.shape[1] != G or extrema.shape[1] != G or extrema.shape[0] != nparts:
        raise ValueError("counts/extrema must be new_final_partials(len(index), n_parts)")
    if cuts.shape[0] != 3:
        raise ValueError("cuts must be (3,)")
    _check_finals(ox_a, "ox_a", n)
    _check_finals(ox_b, "ox_b", n)
    if seq_b.shape[0] != n:
        raise ValueError(f"seq_b has {seq_b.shape[0]} photons, seq_a has {n}")
    if not 0 <= start <= stop <= n:
        raise ValueError(f"photon range [{start}, {stop}) outside 0..{n}")
    if start % _SUM_BLOCK:
        raise ValueError(f"start {start} is not a multiple of SUM_BLOCK ({_SUM_BLOCK})")
    cdef Py_ssize_t nblocks = (stop - start + _SUM_BLOCK - 1) // _SUM_BLOCK
    if blk_group.shape[0] < nblocks or blk_n.shape[0] < nblocks or blk_group.shape[1] < min(G, _SUM_BLOCK):
        raise ValueError(f"block scratch too small for {nblocks} blocks of {G} groups")
    blk_n[:] = 0
    if stop == start or G == 0:
        return 0
    pos = np.full((nparts, G), -1, dtype=np.int32)
    unknown = np.zeros(nparts, dtype=np.int64)
    cdef int32_t[:, ::1] pos_v = pos
    cdef int64_t[::1] unk = unknown
    cdef const char* oa = <const char*>&ox_a[0, 0, 0]
    cdef const char* ob = <const char*>&ox_b[0, 0, 0]
    cdef const char* sa = <const char*>&seq_a[0]
    cdef const char* sb = <const char*>&seq_b[0]
    cdef Py_ssize_t oas = ox_a.strides[0], obs = ox_b.strides[0]
    cdef Py_ssize_t sas = seq_a.strides[0], sbs = seq_b.strides[0]
    cdef const uint64_t* slot_code = &index.slot_code[0]
    cdef const int32_t* slot_entry = &index.slot_entry[0]
    cdef uint64_t mask = index.mask
    cdef const double* cut = &cuts[0]
    cdef Py_ssize_t b, bs
    cdef int t
    with nogil:
        for b in prange(nblocks, schedule="static", num_threads=nparts):
            t = cyext_thread_id()
            bs = start + b * _SUM_BLOCK
            _finals_block(oa, oas, ob, obs, sa, sas, sb, sbs, bs, min(bs + _SUM_BLOCK, stop),
                          slot_code, slot_entry, mask, cut, &counts[t, 0, 0], &extrema[t, 0, 0],
                          &pos_v[t, 0], &blk_group[b, 0], &blk_sum[b, 0], &blk_n[b], &unk[t])
    return int(unknown.sum())


cdef _check_finals(const float[:, :, :] ox, str name, Py_ssize_t n):
    if ox.shape[0] != n or ox.shape[1] != 4 or ox.shape[2] != 4:
        raise ValueError(f"{name} must be ({n}, 4, 4), got ({ox.shape[0]}, {ox.shape[1]}, {ox.shape[2]})")
    if ox.strides[2] != 4 or ox.strides[1] != 16:
        raise ValueError(f"{name}: each photon's values must be C-contiguous")


def add_block_sums(double[::1] sums, const int32_t[:, ::1] blk_group, const double[:, ::1] blk_sum,
                   const int64_t[::1] blk_n):
    """sums[g] += each block's partial for g, block after block (the fixed association)."""
    cdef Py_ssize_t b, q
    with nogil:
        for b in range(blk_n.shape[0]):
            for q in range(blk_n[b]):
                sums[blk_group[b, q]] += blk_sum[b, q]


def merge_final_partials(counts, extrema):
    """(P, G, ...) partials -> (counts (G, FINAL_FIELDS), extrema (G, 2)); the photon of
    the max is the lowest index among the parts that reach it."""
    counts, extrema = np.asarray(counts), np.asarray(extrema)
    out_c = counts.sum(axis=0)
    out_e = np.empty(extrema.shape[1:], dtype=np.float64)
    out_e[:, 0] = extrema[:, :, 0].max(axis=0)
    out_e[:, 1] = extrema[:, :, 1].min(axis=0)
    at_max = np.where(extrema[:, :, 0] == out_e[None, :, 0], counts[:, :, 5], np.iinfo(np.int64).max)
    out_c[:, 5] = at_max.min(axis=0)  # -1 where no part saw a non-NaN deviation
    return out_c, out_e
