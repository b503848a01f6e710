# ------------------------------------------------------------------ chasing photons
# From a bad row to its photons: the aligned photons of one history (or of all) whose
# deviation in one table reaches a threshold, most deviant first, lowest index on ties,
# at most ``limit`` of them. Each thread keeps a bounded heap, so nothing N-sized is built.

#: table numbers of chase(): the three record tables, then the ox table
CHASE_TABLES = ("rpost", "rtime", "rpol", "ox")


cdef inline bint _worse(double d1, int64_t i1, double d2, int64_t i2) noexcept nogil:
    """Is (d1, i1) ranked below (d2, i2)? Smaller deviation, or equal and later photon.
    A strict order, so the kept set does not depend on the order photons arrive in."""
    return d1 < d2 or (d1 == d2 and i1 > i2)


cdef void _heap_offer(double* hd, int64_t* hi, int64_t* size, int64_t limit,
                      double d, int64_t i) noexcept nogil:
    """Keep the ``limit`` best (d, i) in a min-heap whose root is the worst kept."""
    cdef int64_t k, c, parent
    if size[0] < limit:
        k = size[0]
        size[0] += 1
        while k > 0:  # sift up
            parent = (k - 1) // 2
            if not _worse(d, i, hd[parent], hi[parent]):
                break
            hd[k], hi[k] = hd[parent], hi[parent]
            k = parent
        hd[k], hi[k] = d, i
        return
    if limit == 0 or not _worse(hd[0], hi[0], d, i):
        return
    k = 0
    while True:  # replace the root, sift down
        c = 2 * k + 1
        if c >= limit:
            break
        if c + 1 < limit and _worse(hd[c + 1], hi[c + 1], hd[c], hi[c]):
            c += 1
        if not _worse(hd[c], hi[c], d, i):
            break
        hd[k], hi[k] = hd[c], hi[c]
        k = c
    hd[k], hi[k] = d, i


cdef void _chase_part(int table, const char* va, Py_ssize_t va_stride, const char* vb, Py_ssize_t vb_stride,
                      int maxrec, const char* sa, Py_ssize_t sa_stride, const char* sb, Py_ssize_t sb_stride,
                      uint64_t code, bint all_codes, double min_dev, Py_ssize_t s, Py_ssize_t e,
                      double* hd, int64_t* hi, int64_t* hsize, int64_t limit, int64_t* found) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t ca
    cdef int32_t d3[3]
    cdef double d
    for i in range(s, e):
        ca = _seq_at(sa, sa_stride, i)
        if ca != _seq_at(sb, sb_stride, i) or (not all_codes and ca != code):
            continue
        if table == 3:
            d = _final_deviation(<const float*>(va + i * va_stride), <const float*>(vb + i * vb_stride))
            if isnan(d):
                d = INFINITY  # NaN is beyond every cut: rank it first
        else:
            _record_deviation(<const int16_t*>(va + i * va_stride),
                              <const int16_t*>(vb + i * vb_stride), maxrec, d3)
            d = d3[table]
        if d >= min_dev:
            found[0] += 1
            _heap_offer(hd, hi, hsize, limit, d, i)


def chase(int64_t[::1] out_index, double[::1] out_dev, int table, uint64_t code, bint all_codes,
          double min_dev, values_a, values_b, const uint64_t[:] seq_a, const uint64_t[:] seq_b,
          Py_ssize_t start, Py_ssize_t stop, n_threads=None):
    """Aligned photons in ``[start, stop)`` with history ``code`` (any when ``all_codes``)
    whose deviation in ``table`` (0 rpost, 1 rtime, 2 rpol in stored counts; 3 ox as
    float64, NaN ranked as +inf) is >= ``min_dev``.

    values_a/b are the rx arrays for tables 0-2, the ox arrays for table 3. The best
    ``len(out_index)`` photons go to out_index/out_dev, most deviant first, lowest index
    on ties. Returns (number written, number of photons that reached min_dev).
    """
    cdef Py_ssize_t n = seq_a.shape[0]
    cdef int64_t limit = out_index.shape[0]
    cdef const int16_t[:, :, :, :] rxa
    cdef const int16_t[:, :, :, :] rxb
    cdef const float[:, :, :] oxa
    cdef const float[:, :, :] oxb
    cdef const char* va
    cdef const char* vb
    cdef Py_ssize_t vas, vbs
    cdef int maxrec = 0
    if out_dev.shape[0] != limit:
        raise ValueError("out_index and out_dev differ in length")
    if not 0 <= table <= 3:
        raise ValueError(f"table must be 0..3 ({', '.join(CHASE_TABLES)}), got {table}")
    if seq_b.shape[0] != n:
        raise ValueError(f"seq_b has {seq_b.shape[0]} photons, seq_a has {n}")
    if not 0 <= start <= stop <= n:
        raise ValueError(f"photon range [{start}, {stop}) outside 0..{n}")
    if stop == start:
        return 0, 0
    if table == 3:
        oxa, oxb = values_a, values_b
        _check_finals(oxa, "ox_a", n)
        _check_finals(oxb, "ox_b", n)
        va, vb, vas, vbs = <const char*>&oxa[0, 0, 0], <const char*>&oxb[0, 0, 0], oxa.strides[0], oxb.strides[0]
    else:
        rxa, rxb = values_a, values_b
        _check_records(rxa, rxb, seq_a, seq_b)
        maxrec = rxa.shape[1]
        va, vb, vas, vbs = <const char*>&rxa[0, 0, 0, 0], <const char*>&rxb[0, 0, 0, 0], rxa.strides[0], rxb.strides[0]
    cdef int nparts = effective_threads(n_threads)
    heap_dev = np.zeros((nparts, max(limit, 1)), dtype=np.float64)
    heap_idx = np.zeros((nparts, max(limit, 1)), dtype=np.int64)
    sizes = np.zeros(nparts, dtype=np.int64)
    found = np.zeros(nparts, dtype=np.int64)
    cdef double[:, ::1] hd = heap_dev
    cdef int64_t[:, ::1] hi = heap_idx
    cdef int64_t[::1] hs = sizes
    cdef int64_t[::1] fd = found
    cdef const char* sa = <const char*>&seq_a[0]
    cdef const char* sb = <const char*>&seq_b[0]
    cdef Py_ssize_t sas = seq_a.strides[0], sbs = seq_b.strides[0]
    cdef Py_ssize_t b, bs
    cdef int t
    with nogil:
        for b in prange(_n_blocks(start, stop, WORK_BLOCK), schedule="dynamic", num_threads=nparts):
            t = cyext_thread_id()
            bs = start + b * WORK_BLOCK
            _chase_part(table, va, vas, vb, vbs, maxrec, sa, sas, sb, sbs, code, all_codes, min_dev,
                        bs, min(bs + WORK_BLOCK, stop), &hd[t, 0], &hi[t, 0], &hs[t], limit, &fd[t])
    kept_dev = np.concatenate([heap_dev[p, :sizes[p]] for p in range(nparts)])
    kept_idx = np.concatenate([heap_idx[p, :sizes[p]] for p in range(nparts)])
    order = np.lexsort((kept_idx, -kept_dev))[:limit]
    k = len(order)
    np.asarray(out_index)[:k] = kept_idx[order]
    np.asarray(out_dev)[:k] = kept_dev[order]
    return k, int(found.sum())
