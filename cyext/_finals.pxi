# ------------------------------------------------------------------ final-photon deviations
# The ox table: per aligned photon, d = max |float64(a) - float64(b)| over ox[:, :3, :]
# (position, time, direction, weight, polarization, wavelength). A NaN anywhere makes
# the photon count as NaN: beyond every cut, kept out of max/min/sum, never dropped.
#
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


cdef inline bint _final_update(int64_t* row, double* ex, double d, const double* cut,
                               Py_ssize_t i) noexcept nogil:
    """Add photon ``i`` with deviation ``d`` to its group's rows; False for NaN (which
    is counted beyond every cut and kept out of max/min/sum)."""
    row[0] += 1
    if isnan(d):
        row[1] += 1
        row[2] += 1
        row[3] += 1
        row[4] += 1
        return False
    row[2] += d > cut[0]
    row[3] += d > cut[1]
    row[4] += d > cut[2]
    if d > ex[0] or (d == ex[0] and i < row[5]):
        ex[0] = d
        row[5] = i
    if d < ex[1]:
        ex[1] = d
    return True


def new_final_partials(Py_ssize_t n_groups, int n_parts):
    """Empty partials: counts (P, G, FINAL_FIELDS) int64 (photon of max -1) and
    extrema (P, G, 2) float64 starting at (-inf, +inf)."""
    counts = np.zeros((n_parts, n_groups, FINAL_FIELDS), dtype=np.int64)
    counts[:, :, 5] = -1
    extrema = np.empty((n_parts, n_groups, FIN_EXTREMA), dtype=np.float64)
    extrema[:, :, 0] = -np.inf
    extrema[:, :, 1] = np.inf
    return counts, extrema


cdef _check_finals(const float[:, :, :] ox, str name, Py_ssize_t n):
    if ox.shape[0] != n or ox.shape[1] != 4 or ox.shape[2] != 4:
        raise ValueError(f"{name} must be ({n}, 4, 4), got ({ox.shape[0]}, {ox.shape[1]}, {ox.shape[2]})")
    if ox.strides[2] != 4 or ox.strides[1] != 16:
        raise ValueError(f"{name}: each photon's values must be C-contiguous")


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
