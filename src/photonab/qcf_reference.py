"""A faithful re-implementation of Opticks' ``ana/qcf.py`` history comparison, the old way.

For tests and the profiling harness: it does what QCF does, step by step and at its
speed: ``|S96`` label strings per photon (3 bytes per slot, ``ana/histype.py``), ``QU``
= ``np.unique(return_index, return_counts)`` per side, the union of both unique lists,
the per-union-row loop with ``np.where`` (``init_qcf_ab_py``), ``argsort`` of max(a, b)
reversed (default, unstable sort), float32 chi-square (``ana/nbase.py``), dropouts.
Written from the description of the algorithm (docs/sevt.md, section 3), not copied.
"""
from __future__ import annotations

import numpy as np

from .seqhis import flag_table


def aflags(era) -> np.ndarray:
    """``|S3`` token per nibble 0..15: ``"   "`` then each abbreviation plus one space."""
    table = flag_table(era)
    return np.array([b"   "] + [(table.abbr[n] + " ").encode() for n in range(1, 16)], dtype="|S3")


def nibbles32(seqhis: np.ndarray) -> np.ndarray:
    """(N, 2) uint64 -> (N, 32) int8 slot nibbles (word 0 then word 1), as HisType.Convert."""
    q = np.asarray(seqhis, dtype=np.uint64)
    qq = np.zeros((len(q), 32), dtype=np.int8)
    for i in range(16):
        qq[:, i] = (q[:, 0] >> np.uint64(4 * i)) & np.uint64(0xF)
        qq[:, 16 + i] = (q[:, 1] >> np.uint64(4 * i)) & np.uint64(0xF)
    return qq


def labels96(seqhis: np.ndarray, era) -> np.ndarray:
    """(N, 1) ``|S96`` label strings, as ``ht.seqhis(seq[:, 0])``."""
    return aflags(era)[nibbles32(seqhis)].view("|S96")


class QU:
    """Unique labels of one side: ``u`` (sorted), first index ``x``, count ``n``, order ``o``."""

    def __init__(self, q):
        assert q.dtype == "|S96"
        self.u, self.x, self.n = np.unique(q, return_index=True, return_counts=True)
        self.o = np.argsort(self.n)[::-1]


def chi2_float32(a_, b_, cut=30):
    """ana/nbase.py chi2: float32, rows with a + b > cut; returns (c2, c2n, c2c)."""
    a = a_.astype(np.float32)
    b = b_.astype(np.float32)
    msk = a + b > cut
    c2 = np.zeros_like(a)
    c2[msk] = np.power(a - b, 2)[msk] / (a + b)[msk]
    return c2, len(a[msk]), len(a[~msk])


def chi2_pvalue(c2obs, ndf):
    """1 - chi2.cdf(c2obs, ndf), or 1 without scipy, as ana/nbase.py."""
    try:
        from scipy.stats import chi2 as _chi2
    except ImportError:  # pragma: no cover
        return 1
    return 1 - _chi2.cdf(c2obs, ndf)


class QCF:
    """The comparison of two ``|S96`` label arrays, as ``ana/qcf.py`` QCF (Python loop path)."""

    def __init__(self, _aq, _bq, c2cut=30):
        mn = min(_aq.shape[0], _bq.shape[0])
        lim = slice(None) if _aq.shape == _bq.shape else slice(0, mn)
        aq, bq = _aq[lim], _bq[lim]
        aqu, bqu = QU(aq), QU(bq)
        qu = np.unique(np.concatenate([aqu.u, bqu.u]))
        ab = np.zeros((len(qu), 3, 2), dtype=np.int64)
        for i, qv in enumerate(qu):  # the per-union-row loop
            ai_ = np.where(aqu.u == qv)[0]
            bi_ = np.where(bqu.u == qv)[0]
            ai = ai_[0] if len(ai_) == 1 else -1
            bi = bi_[0] if len(bi_) == 1 else -1
            ab[i, 0, 0] = ai
            ab[i, 1, 0] = aqu.x[ai] if ai > -1 else -1
            ab[i, 2, 0] = aqu.n[ai] if ai > -1 else 0
            ab[i, 0, 1] = bi
            ab[i, 1, 1] = bqu.x[bi] if bi > -1 else -1
            ab[i, 2, 1] = bqu.n[bi] if bi > -1 else 0
        abx = np.max(ab[:, 2, :], axis=1)
        abxo = np.argsort(abx)[::-1]
        abo = ab[abxo]
        quo = qu[abxo]
        self.aq, self.bq, self.aqu, self.bqu, self.qu, self.ab = aq, bq, aqu, bqu, qu, ab
        self.abx, self.abxo, self.abo, self.quo = abx, abxo, abo, quo
        self.bzero = np.where(np.logical_and(abo[:, 2, 0] > 10, abo[:, 2, 1] == 0))[0]
        self.azero = np.where(np.logical_and(abo[:, 2, 1] > 10, abo[:, 2, 0] == 0))[0]
        self.c2cut = c2cut
        self.c2, self.c2n, self.c2c = chi2_float32(abo[:, 2, 0], abo[:, 2, 1], cut=c2cut)
        self.c2sum = self.c2.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            self.c2per = self.c2sum / self.c2n
        self.pvalue = chi2_pvalue(self.c2sum, int(self.c2n))

    def labels(self) -> list[str]:
        """Ordered row labels, stripped, as QCF prints them."""
        return [q.strip().decode("utf-8") for q in self.quo]


def qcf_of_seqhis(seqhis_a, seqhis_b, era, c2cut=30) -> QCF:
    """QCF of two (N, 2) uint64 history arrays: the labels, then the comparison."""
    return QCF(labels96(seqhis_a, era), labels96(seqhis_b, era), c2cut)
