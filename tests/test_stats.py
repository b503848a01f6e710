"""The scipy-free chi-square p-value agrees with scipy."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import chdtrc

from photonab.stats import chi2_cdf, chi2_sf


@given(ndf=st.integers(1, 5000), c2=st.floats(1e-6, 1e6))
@settings(max_examples=400, deadline=None)
def test_matches_scipy(ndf, c2):
    want = float(chdtrc(ndf, c2))
    got = chi2_sf(c2, ndf)
    # relative where the p-value is representable, absolute near 0 and 1
    assert got == pytest.approx(want, rel=1e-9, abs=1e-13)


@pytest.mark.parametrize("c2,ndf,want", [(0.0, 3, 1.0), (5.0, 0, 1.0), (5.0, -1, 1.0),
                                         (math.inf, 4, 0.0)])
def test_edges(c2, ndf, want):
    assert chi2_sf(c2, ndf) == want


def test_nan_stays_nan():
    assert math.isnan(chi2_sf(math.nan, 3))


def test_tiny_tail_keeps_relative_precision():
    # c2/ndf 12641 at ndf 300: scipy gives a representable tiny value or 0
    for c2, ndf in [(2000.0, 300), (700.0, 100), (150.0, 10)]:
        assert chi2_sf(c2, ndf) == pytest.approx(float(chdtrc(ndf, c2)), rel=1e-9, abs=1e-300)


@given(ndf=st.integers(1, 5000), c2=st.floats(1e-6, 1e6))
@settings(max_examples=200, deadline=None)
def test_cdf_matches_scipy(ndf, c2):
    from scipy.special import chdtr
    assert chi2_cdf(c2, ndf) == pytest.approx(float(chdtr(ndf, c2)), rel=1e-9, abs=1e-13)


def test_cdf_edges():
    assert chi2_cdf(0.0, 3) == 0.0 and chi2_cdf(math.inf, 3) == 1.0
    assert math.isnan(chi2_cdf(1.0, 0))
