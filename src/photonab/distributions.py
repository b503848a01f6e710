"""Slot distributions: one decoded quantity at one record slot, A against B.

For the photons whose history matches a pattern (selected in A by A's history and in
B by B's, so this also serves events whose photons are not aligned), the distribution
of x, y, z, t, r, the polarization components or the wavelength at record slot K
(0 = the source, 1 = the first step, ...), histogrammed on common bins, with a
chi-square per histogram as the original's ``ab.h`` (docs/analysis.md, section 4).

Bins follow the compression (docs/event-format.md section 2): a bin is ``binscale``
stored counts wide (the original's defaults: 1024 for x, y, z, t and r, 4 for the
byte-compressed polarization and wavelength) and its edges sit half a count off the
stored values, so binning is done on the stored integers, exactly; the edges are
reported in physical units. ``r`` = sqrt(x^2 + y^2) of the decoded float32 positions
(the original's radius about the z axis) is binned in float64.

Photons are selected chunk by chunk (patterns matched on the distinct codes, photons
marked by a compiled kernel) and only the selected photons' slot is read and decoded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from .stats import chi2_sf

from .atomic import atomic_path
from .errors import InputError
from .flags import LEGACY_ERA
from .patterns import SELECT_CHUNK, distinct_codes, iter_selected, parse_pattern

#: quantity -> (components, unit); "pol" is its three components
QUANTITIES = {"x": (("x",), "mm"), "y": (("y",), "mm"), "z": (("z",), "mm"), "t": (("t",), "ns"),
              "r": (("r",), "mm"), "pol": (("polx", "poly", "polz"), ""), "polx": (("polx",), ""),
              "poly": (("poly",), ""), "polz": (("polz",), ""), "wl": (("wl",), "nm")}
#: stored counts per bin by component (the original's RQWN_BINSCALE)
BINSCALE = {"x": 1024, "y": 1024, "z": 1024, "t": 1024, "r": 1024, "polx": 4, "poly": 4, "polz": 4, "wl": 4}
#: a bin enters the chi-square when a + b exceeds this (the original's C2CUT)
C2_CUT = 30
_SHORT = {"x": 0, "y": 1, "z": 2, "t": 3}
_BYTE = {"polx": 0, "poly": 1, "polz": 2, "wl": 3}
_SHORT_MAX = 32767


@dataclass
class Histogram:
    """One component's histogram for A and B on common bins.

    ``a``/``b``: photons per bin; ``under``/``over``: below the first and from the last
    edge on; ``outside``: stored as out of the compression domain (-32768). ``c2`` per
    bin is (a-b)^2/(a+b) on the (shape-normalised, when ``shape``) counts for bins with
    a+b > ``cut``, else 0; ``ndf = max(c2n - 1, 1)``, ``c2p = c2sum / ndf`` (as ``ab.h``).
    """

    component: str
    unit: str
    edges: np.ndarray  # float64 (nbins + 1,)
    a: np.ndarray  # int64 (nbins,)
    b: np.ndarray
    under: tuple[int, int] = (0, 0)  # (A, B)
    over: tuple[int, int] = (0, 0)
    outside: tuple[int, int] = (0, 0)
    shape: bool = True
    cut: float = C2_CUT
    c2: np.ndarray = field(init=False)
    c2sum: float = field(init=False)
    c2n: int = field(init=False)
    ndf: int = field(init=False)
    c2p: float = field(init=False)
    pvalue: float = field(init=False)

    def __post_init__(self):
        self.c2, self.c2n = histogram_chi2(self.a, self.b, self.cut, self.shape)
        self.c2sum = float(self.c2.sum())
        self.ndf = max(self.c2n - 1, 1)
        self.c2p = self.c2sum / self.ndf
        self.pvalue = chi2_sf(self.c2sum, self.ndf) if self.c2n > 0 else 1.0

    @property
    def n_a(self) -> int:
        return int(self.a.sum())

    @property
    def n_b(self) -> int:
        return int(self.b.sum())

    def bins(self) -> list[dict]:
        """One plain record per bin: lo, hi, a, b, c2 (JSON-ready)."""
        return [{"lo": float(lo), "hi": float(hi), "a": int(a), "b": int(b), "c2": float(c)}
                for lo, hi, a, b, c in zip(self.edges[:-1], self.edges[1:], self.a, self.b, self.c2)]


@dataclass
class SlotDistribution:
    """The distributions of ``quantity`` at ``slot`` for the photons matching ``pattern``
    (``n_a`` in A, ``n_b`` in B have a step at that slot; photons whose history ends
    before it are left out)."""

    pattern: str
    slot: int
    quantity: str
    n_a: int
    n_b: int
    histograms: list[Histogram]
    era: str = LEGACY_ERA

    @property
    def c2sum(self) -> float:
        return float(sum(h.c2sum for h in self.histograms))

    @property
    def c2p(self) -> float:
        """Combined c2 / combined ndf over the histograms (the original's c2per)."""
        n = sum(h.c2n for h in self.histograms)
        return self.c2sum / n if n else 0.0

    def __repr__(self):
        return (f"<SlotDistribution {self.quantity}[{self.slot}] of {self.pattern!r}: A {self.n_a}, "
                f"B {self.n_b} photons, c2p {self.c2p:.3f}>")


def histogram_chi2(a, b, cut: float = C2_CUT, shape: bool = True) -> tuple[np.ndarray, int]:
    """(c2 per bin float64, bins counted). ``shape``: scale both to their mean total
    first (compares shapes when A and B select different numbers of photons)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na, nb = a.sum(), b.sum()
    if shape and na > 0 and nb > 0:
        nv = 0.5 * (na + nb)
        a, b = a * (nv / na), b * (nv / nb)
    total = a + b
    counted = total > cut
    c2 = np.zeros(len(a), np.float64)
    c2[counted] = (a[counted] - b[counted]) ** 2 / total[counted]
    return c2, int(counted.sum())


# ---------------------------------------------------------------- bins


@dataclass(frozen=True)
class _Bins:
    component: str
    lo: int  # stored value of the first bin's first count (or 0 for r)
    scale: int
    nbins: int
    edges: np.ndarray


def _short_domain(domains, component):
    if component == "t":
        return float(domains.t0), float(domains.tmax)
    return float(domains.center[_SHORT[component]]), float(domains.extent)


def _make_bins(domains, component: str, binscale: int | None, value_range) -> _Bins:
    scale = int(binscale or BINSCALE[component])
    if scale < 1:
        raise InputError(f"binscale must be >= 1 stored count, got {scale}")
    if component == "r":
        width = scale * float(domains.extent) / _SHORT_MAX
        top = math.sqrt(2.0) * (float(domains.extent) + float(np.abs(domains.center[:2]).max()))
        lo, hi = value_range if value_range is not None else (0.0, top)
        nbins = max(1, math.ceil((hi - lo) / width))
        return _Bins(component, 0, scale, nbins, lo + width * np.arange(nbins + 1, dtype=np.float64))
    if component in _SHORT:
        c, e = _short_domain(domains, component)
        step = e / _SHORT_MAX
        s_lo, s_hi = (0 if component == "t" else -_SHORT_MAX), _SHORT_MAX
        if value_range is not None:
            s_lo = max(-_SHORT_MAX, math.floor((value_range[0] - c) / step))
            s_hi = min(_SHORT_MAX, math.ceil((value_range[1] - c) / step))
        to_value = lambda s: (s - 0.5) * step + c  # noqa: E731
    else:
        if component == "wl":
            low, rng = float(domains.wl_low), float(domains.wl_range)
            step, s_hi = rng / 255.0, 255
            to_value = lambda u: (u - 0.5) * step + low  # noqa: E731
        else:
            step, s_hi = 1.0 / 127.0, 254
            to_value = lambda u: (u - 0.5) / 127.0 - 1.0  # noqa: E731
        s_lo = 0
        if value_range is not None:
            inv = (lambda v: (v - low) / step) if component == "wl" else (lambda v: (v + 1.0) * 127.0)
            s_lo = max(0, math.floor(inv(value_range[0])))
            s_hi = min(255, math.ceil(inv(value_range[1])))
    if s_hi < s_lo:
        raise InputError(f"range {value_range} leaves no values of {component}")
    nbins = math.ceil((s_hi - s_lo + 1) / scale)
    edges = to_value(s_lo + scale * np.arange(nbins + 1, dtype=np.float64))
    return _Bins(component, s_lo, scale, nbins, edges)


# ---------------------------------------------------------------- values of the selected photons


def _stored(event, idx, slot, component):
    """Stored integers (int64) of one component at one slot for photons ``idx``."""
    if component in _SHORT:
        return np.asarray(event.rx[idx, slot, 0, _SHORT[component]], dtype=np.int64)
    words = np.ascontiguousarray(event.rx[idx, slot, 1, :]).view(np.uint8).reshape(len(idx), 8)
    return words[:, _BYTE[component]].astype(np.int64)


def _radius(event, idx, slot):
    """(r float64, out-of-domain mask) from the decoded float32 x, y."""
    s = np.asarray(event.rx[idx, slot, 0, :2])
    outside = (s == -32768).any(axis=1)
    d = event.domains
    xy = s.astype(np.float32) * d.extent / np.float32(_SHORT_MAX) + d.center[:2]
    return np.hypot(xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)), outside


class _Counts:
    def __init__(self, bins: _Bins):
        self.bins = bins
        self.h = np.zeros(bins.nbins, np.int64)
        self.under = self.over = self.outside = 0

    def add(self, event, idx, slot):
        b = self.bins
        if b.component == "r":
            r, outside = _radius(event, idx, slot)
            self.outside += int(outside.sum())
            k = np.searchsorted(b.edges, r[~outside], side="right") - 1
        else:
            s = _stored(event, idx, slot, b.component)
            if b.component in _SHORT:
                out = s == -32768
                self.outside += int(out.sum())
                s = s[~out]
            k = (s - b.lo) // b.scale
        below, above = k < 0, k >= b.nbins
        self.under += int(below.sum())
        self.over += int(above.sum())
        self.h += np.bincount(k[~below & ~above], minlength=b.nbins)


def _check_quantity(quantity):
    if quantity not in QUANTITIES:
        raise InputError(f"unknown quantity {quantity!r}; quantities are {'|'.join(QUANTITIES)}")
    return QUANTITIES[quantity]


def slot_distribution(pair, pattern, slot: int | None, quantity: str, *, binscale: int | None = None,
                      value_range=None, shape: bool = True, cut: float = C2_CUT, codes=None,
                      era: str = LEGACY_ERA, chunk: int = SELECT_CHUNK, n_threads=None) -> SlotDistribution:
    """Distributions of ``quantity`` at record ``slot`` for the photons of ``pair`` whose
    history matches ``pattern`` (A by its own histories, B by its own).

    ``slot`` None takes the slot marked in the pattern (``TO [BT] BT SA``). ``binscale``:
    stored counts per bin (default :data:`BINSCALE`); ``value_range`` (lo, hi) in
    physical units narrows the bins (default: the whole compression domain). ``codes``:
    distinct seqhis codes of A and B when at hand (otherwise one counting pass).
    """
    components, unit = _check_quantity(quantity)
    pat = parse_pattern(pattern, era)
    if slot is None:
        slot = pat.marked_slot
        if slot is None:
            raise InputError(f"no slot given and none marked in pattern {pat.text!r} (mark one: TO [BT] SA)")
    maxrec = pair.a.maxrec
    if not 0 <= int(slot) < min(maxrec, 16):
        raise InputError(f"slot {slot} outside the records 0..{maxrec - 1} of {pair.a.path / 'rx.npy'}")
    slot = int(slot)
    if value_range is not None:
        value_range = (float(value_range[0]), float(value_range[1]))
        if not value_range[0] < value_range[1]:
            raise InputError(f"range {value_range}: lo must be below hi")
    bins = [_make_bins(pair.domains, c, binscale, value_range) for c in components]
    if codes is None:
        codes = distinct_codes(pair.a.seqhis, pair.b.seqhis, n_threads=n_threads)
    counts, n_sel = [], []
    for event in (pair.a, pair.b):
        side = [_Counts(b) for b in bins]
        n = 0
        seq = event.seqhis
        for idx in iter_selected(seq, pat, codes=codes, era=era, chunk=chunk, n_threads=n_threads):
            if not len(idx):
                continue
            has_step = ((np.asarray(seq[idx]) >> np.uint64(4 * slot)) & np.uint64(0xF)) != 0
            idx = idx[has_step]
            n += len(idx)
            if len(idx):
                for c in side:
                    c.add(event, idx, slot)
        counts.append(side)
        n_sel.append(n)
    hists = [Histogram(b.component, unit, b.edges, ca.h, cb.h, (ca.under, cb.under), (ca.over, cb.over),
                       (ca.outside, cb.outside), shape, cut)
             for b, ca, cb in zip(bins, *counts)]
    return SlotDistribution(pat.text, slot, quantity, n_sel[0], n_sel[1], hists, era)


# ---------------------------------------------------------------- picture


def check_plot_path(path) -> Path:
    """Check before any work that ``path`` can take a PNG: suffix .png, folder exists."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: the distribution plot is a PNG; name it NAME.png")
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    return path


def plot_distribution(dist: SlotDistribution, path) -> Path:
    """Write a PNG of ``dist`` (one panel per histogram, A and B as steps) atomically,
    with the matplotlib object API (no global backend switch)."""
    path = check_plot_path(path)
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("the distribution plot needs matplotlib: pip install 'photonab[plot]'") from None
    n = len(dist.histograms)
    fig = Figure(figsize=(5.5 * n, 4.2))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, h in zip(axes, dist.histograms):
        ax.stairs(h.a, h.edges, label=f"A ({h.n_a})", color="tab:blue")
        ax.stairs(h.b, h.edges, label=f"B ({h.n_b})", color="tab:gray", linestyle="--")
        unit = f" [{h.unit}]" if h.unit else ""
        ax.set_xlabel(f"{h.component}[{dist.slot}]{unit}")
        ax.set_ylabel("photons")
        ax.set_title(f"c2/ndf {h.c2sum:.2f}/{h.ndf} = {h.c2p:.2f}  p {h.pvalue:.2g}", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(f"{dist.pattern}   slot {dist.slot}", fontsize=9, family="monospace")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    except OSError as exc:
        raise InputError(f"{path}: cannot write the plot ({exc.strerror or exc})") from None
    return path
