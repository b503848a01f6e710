import json

import numpy as np
import pytest

from photonab import EventPair, InputError
from photonab.distributions import (QUANTITIES, check_plot_path, histogram_chi2, plot_distribution,
                                    slot_distribution)
from photonab.patterns import parse_pattern

from conftest import random_pair


@pytest.fixture
def pair(tmp_path):
    a, b = random_pair(tmp_path, 6000, n_codes=6, p_aligned=0.7, seed=11, extreme=True)
    return EventPair.open(a, b)


def reference(pair, pattern, slot, quantity, edges_by_component):
    """Whole-array numpy: isin on the codes, the Event decoders, np.histogram on the edges."""
    pat = parse_pattern(pattern)
    out = []
    for ev in (pair.a, pair.b):
        seq = np.asarray(ev.seqhis)
        codes = np.unique(seq)
        sel = np.isin(seq, codes[pat.match(codes)]) & (((seq >> np.uint64(4 * slot)) & np.uint64(0xF)) != 0)
        idx = np.flatnonzero(sel)
        pos, t = ev.positions(idx)[:, slot], ev.times(idx)[:, slot]
        pol, wl = ev.polarizations(idx)[:, slot], ev.wavelengths(idx)[:, slot]
        stored = np.asarray(ev.rx[idx, slot, 0, :])
        values = {"x": (pos[:, 0], stored[:, 0]), "y": (pos[:, 1], stored[:, 1]), "z": (pos[:, 2], stored[:, 2]),
                  "t": (t, stored[:, 3]), "polx": (pol[:, 0], None), "poly": (pol[:, 1], None),
                  "polz": (pol[:, 2], None), "wl": (wl, None),
                  "r": (np.hypot(pos[:, 0].astype(np.float64), pos[:, 1].astype(np.float64)),
                        stored[:, :2].min(axis=1))}
        side = {}
        for comp in QUANTITIES[quantity][0]:
            v, s = values[comp]
            keep = np.ones(len(v), bool) if s is None else s != -32768
            side[comp] = (np.histogram(v[keep].astype(np.float64), edges_by_component[comp])[0], len(idx),
                          int((~keep).sum()))
        out.append(side)
    return out


@pytest.mark.parametrize("quantity", list(QUANTITIES))
@pytest.mark.parametrize("pattern, slot", [("TO ..", 0), (".d", 2)])
def test_equals_numpy_reference(pair, cyext, quantity, pattern, slot):
    d = slot_distribution(pair, pattern, slot, quantity, chunk=4096)
    edges = {h.component: h.edges for h in d.histograms}
    ref = reference(pair, pattern, slot, quantity, edges)
    for k, h in enumerate(d.histograms):
        (ra, na, oa), (rb, nb, ob) = ref[0][h.component], ref[1][h.component]
        assert np.array_equal(h.a, ra) and np.array_equal(h.b, rb), h.component
        assert (d.n_a, d.n_b) == (na, nb)
        assert h.outside == (oa, ob)
        assert h.n_a + sum(h.under[:1]) + h.over[0] + h.outside[0] == d.n_a
    # chunking and threads do not change anything
    d2 = slot_distribution(pair, pattern, slot, quantity, chunk=1 << 22, n_threads=1)
    assert all(np.array_equal(x.a, y.a) and np.array_equal(x.b, y.b) for x, y in zip(d.histograms, d2.histograms))


def test_bins_are_compression_bins(pair):
    d = slot_distribution(pair, "TO ..", 1, "x")
    h = d.histograms[0]
    step = 748 / 32767
    assert len(h.edges) == 65 and h.edges[0] == pytest.approx(-32767.5 * step)
    assert np.allclose(np.diff(h.edges), 1024 * step)
    narrow = slot_distribution(pair, "TO ..", 1, "x", binscale=64, value_range=(-100, 100))
    hn = narrow.histograms[0]
    assert hn.edges[0] <= -100 and hn.edges[-1] >= 100 and np.allclose(np.diff(hn.edges), 64 * step)
    assert hn.n_a + hn.under[0] + hn.over[0] + hn.outside[0] == narrow.n_a
    pol = slot_distribution(pair, "TO ..", 1, "pol")
    assert [x.component for x in pol.histograms] == ["polx", "poly", "polz"]


def test_marked_slot_and_errors(pair):
    d = slot_distribution(pair, "TO [.] ..", None, "t")
    assert d.slot == 1
    with pytest.raises(InputError, match="no slot given"):
        slot_distribution(pair, "TO ..", None, "t")
    with pytest.raises(InputError, match="slot 10 outside"):
        slot_distribution(pair, "TO ..", 10, "t")
    with pytest.raises(InputError, match="unknown quantity"):
        slot_distribution(pair, "TO ..", 1, "q")
    with pytest.raises(InputError, match="lo must be below hi"):
        slot_distribution(pair, "TO ..", 1, "x", value_range=(5, 1))


def test_chi2_like_ab_h():
    a = np.array([100, 50, 10, 0])
    b = np.array([100, 80, 10, 40])
    c2, n = histogram_chi2(a, b, shape=False)
    assert n == 3 and c2[0] == 0 and c2[1] == pytest.approx(30 * 30 / 130) and c2[2] == 0
    c2s, _ = histogram_chi2(a, 2 * a, shape=True)  # same shape, twice the photons
    assert np.allclose(c2s, 0)


def test_same_events_give_zero_chi2(tmp_path):
    a, _ = random_pair(tmp_path, 3000, n_codes=4, seed=2)
    same = EventPair.open(a, a)
    d = slot_distribution(same, "TO ..", 1, "z")
    h = d.histograms[0]
    assert np.array_equal(h.a, h.b) and h.c2sum == 0 and h.pvalue == 1.0
    bins = h.bins()
    assert len(bins) == len(h.a) and json.loads(json.dumps(bins))[0].keys() == {"lo", "hi", "a", "b", "c2"}


def test_png(pair, tmp_path):
    d = slot_distribution(pair, "TO ..", 1, "pol")
    out = plot_distribution(d, tmp_path / "pol.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".pol.tmp-*"))
    with pytest.raises(InputError, match="PNG"):
        check_plot_path(tmp_path / "pol.txt")
    with pytest.raises(InputError, match="does not exist"):
        check_plot_path(tmp_path / "nope" / "pol.png")
