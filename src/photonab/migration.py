"""History migration: the photons whose seqhis differs between A and B.

The deviation tables compare only aligned photons (same history in A and B). The others
are the migrated photons: how many, the first of them (the original's ``Maligned``),
and per (A history, B history) pair how many photons went one way in A and the other in
B, most frequent first. ``TO BT BT SA -> TO BT BR BT SA`` by the hundred is the smoking
gun of a wrong reflectivity.

:func:`count_migrations` is one compiled pass (``cyext.MigrationCounter``) bounded in
memory by ``max_pairs`` distinct pairs; when an event has more, it counts again in hash
partitions of the pairs, so the table is exact whatever the input
(docs/analysis.md, section 2). :func:`count_migrations_reference` is the numpy
reference with the same output. :func:`chase_migrated` lists the photons of chosen
migrations with their decoded A and B records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .flags import LEGACY_ERA
from .patterns import SELECT_CHUNK, distinct_codes, history_labels, iter_selected, parse_migration

#: distinct (A, B) pairs the compiled counter holds at once (about 72 bytes each)
DEFAULT_MAX_PAIRS = 1 << 18
#: lowest migrated photon indices kept (the original showed 25)
DEFAULT_FIRST = 25


@dataclass
class MigrationTable:
    """Migrated photons of one comparison, and their (A code, B code) pairs.

    Rows (``codes_a``, ``codes_b``, ``counts``, ``first``) are the ``top`` most frequent
    pairs: count descending, then A code, then B code ascending. The pairs beyond them
    are summed in ``other_pairs`` (how many distinct pairs) and ``other_photons``.
    Photon indices are indices of the (``--msli``-sliced) events.
    """

    n: int  # photons compared
    n_migrated: int
    first_migrated: np.ndarray  # int64 (<= first,): the lowest migrated photon indices
    codes_a: np.ndarray  # uint64 (R,)
    codes_b: np.ndarray  # uint64 (R,)
    counts: np.ndarray  # int64 (R,)
    first: np.ndarray  # int64 (R,): lowest photon index of each pair
    other_pairs: int = 0
    other_photons: int = 0
    era: str = LEGACY_ERA
    max_pairs: int = DEFAULT_MAX_PAIRS
    passes: int = 1  # counting passes over the photons (1 unless more than max_pairs pairs)
    _labels: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self):
        return len(self.counts)

    @property
    def n_aligned(self) -> int:
        return self.n - self.n_migrated

    @property
    def fraction(self) -> float:
        """Migrated photons / photons (0 for no photons)."""
        return self.n_migrated / self.n if self.n else 0.0

    @property
    def n_pairs(self) -> int:
        """Distinct (A, B) pairs in all, shown or not."""
        return len(self) + self.other_pairs

    @property
    def labels_a(self) -> list[str]:
        if "a" not in self._labels:
            self._labels["a"] = history_labels(self.codes_a, self.era)
        return self._labels["a"]

    @property
    def labels_b(self) -> list[str]:
        if "b" not in self._labels:
            self._labels["b"] = history_labels(self.codes_b, self.era)
        return self._labels["b"]

    def row_labels(self, rows) -> tuple[list[str], list[str]]:
        """A and B labels of ``rows`` only (what a text view shows)."""
        rows = np.asarray(rows, np.intp)
        if "a" in self._labels and "b" in self._labels:
            return [self._labels["a"][i] for i in rows], [self._labels["b"][i] for i in rows]
        return history_labels(self.codes_a[rows], self.era), history_labels(self.codes_b[rows], self.era)

    def rows_matching(self, migration: str) -> np.ndarray:
        """Row numbers whose pair matches ``"A-PATTERN -> B-PATTERN"`` (``*`` = any side)."""
        pa, pb = parse_migration(migration, self.era)
        return np.flatnonzero(pa.match(self.codes_a) & pb.match(self.codes_b))

    def equals(self, other: "MigrationTable") -> bool:
        """Same numbers (``passes`` is how they were counted, not what they are)."""
        return (self.n, self.n_migrated, self.other_pairs, self.other_photons, self.era) == (
            other.n, other.n_migrated, other.other_pairs, other.other_photons, other.era) and all(
            np.array_equal(getattr(self, k), getattr(other, k))
            for k in ("first_migrated", "codes_a", "codes_b", "counts", "first"))

    def __repr__(self):
        return (f"<MigrationTable {self.n_migrated}/{self.n} photons migrated in {self.n_pairs} "
                f"(A, B) history pairs>")


def _check(seq_a, seq_b, top, max_pairs, first):
    seq_a, seq_b = np.asarray(seq_a), np.asarray(seq_b)
    if seq_a.ndim != 1 or seq_b.ndim != 1 or len(seq_a) != len(seq_b):
        raise InputError(f"migration needs two seqhis columns of one length, got shapes {seq_a.shape} "
                         f"and {seq_b.shape}")
    if seq_a.dtype != np.uint64 or seq_b.dtype != np.uint64:
        raise InputError(f"seqhis columns must be uint64, got {seq_a.dtype} and {seq_b.dtype}")
    if max_pairs < 1:
        raise InputError(f"max_pairs must be >= 1, got {max_pairs}")
    top = max_pairs if top is None else int(top)
    if not 0 <= top <= max_pairs:
        raise InputError(f"top must be in 0..max_pairs ({max_pairs}), got {top}")
    if first < 0:
        raise InputError(f"first must be >= 0, got {first}")
    return seq_a, seq_b, top


def _smallest(keys, k: int) -> np.ndarray:
    """Row numbers (ascending) of the ``k`` rows that come first in the lexicographic
    order of ``keys`` (first key first, ties by row number, as a stable sort): one
    partition per key over the rows still tied, O(rows), no sort."""
    rows = np.arange(len(keys[0]))
    if k <= 0:
        return rows[:0]
    picked = []
    for key in keys:
        if len(rows) <= k:
            break
        values = key[rows]
        cut = np.partition(values, k - 1)[k - 1]
        below = values < cut
        picked.append(rows[below])
        k -= int(np.count_nonzero(below))
        rows = rows[values == cut]
    picked.append(rows[:k])
    return np.sort(np.concatenate(picked))


def _select(a, b, counts, first, top):
    """The ``top`` rows first in table order (count descending, then A code, then B code),
    in any order, and (pairs, photons) of the rest: a partition, not a sort."""
    if len(counts) <= top:
        return (a, b, counts, first), 0, 0
    keep = _smallest((-counts, a, b), top)
    rest_photons = int(counts.sum()) - int(counts[keep].sum())
    return (a[keep], b[keep], counts[keep], first[keep]), len(counts) - len(keep), rest_photons


def _in_order(a, b, counts, first):
    order = np.lexsort((b, a, -counts))
    return a[order], b[order], counts[order], first[order]


def _trim(a, b, counts, first, top):
    """The ``top`` rows in table order, and (pairs, photons) of the rest."""
    rows, other_pairs, other_photons = _select(a, b, counts, first, top)
    return _in_order(*rows), other_pairs, other_photons


def first_pass_counter(first: int = DEFAULT_FIRST, max_pairs: int = DEFAULT_MAX_PAIRS, room: int | None = None):
    """The MigrationCounter of :func:`count_migrations`' first pass (``room``: photons per
    private table, as cyext.PairPass wants), for a pass that counts more than migrations."""
    from .engines.compiled import import_cyext
    cyext = import_cyext()
    return cyext.MigrationCounter(max_pairs, 1, 0, first, room=cyext.PAIR_ROOM if room is None else room)


def count_migrations(seq_a, seq_b, *, top: int | None = None, max_pairs: int = DEFAULT_MAX_PAIRS,
                     first: int = DEFAULT_FIRST, era: str = LEGACY_ERA, chunk: int = SELECT_CHUNK,
                     n_threads=None, counted: dict | None = None) -> MigrationTable:
    """Migration table of two seqhis columns (``ph[:, 0, 0]`` views, strided is fine).

    ``counted`` is the first pass when it was made already: the ``result()`` of
    :func:`first_pass_counter` fed with every photon (the cython engine's one pass).

    One compiled pass, GIL released, per-thread tables merged exactly. Memory: at most
    ``max_pairs`` pairs in the table plus a bounded private table per thread, whatever
    the input. When the pass finds more than ``max_pairs`` distinct pairs, they are
    counted again in hash partitions of the pairs (one pass each, a partition that
    still overflows is split in two), keeping the ``top`` most frequent exactly: about
    2 x distinct / max_pairs more passes. The result never depends on ``chunk``,
    ``n_threads`` or the number of passes.
    """
    from .engines.compiled import import_cyext
    cyext = import_cyext()
    seq_a, seq_b, top = _check(seq_a, seq_b, top, max_pairs, first)
    n = len(seq_a)

    def one_pass(rounds, part, keep):
        counter = cyext.MigrationCounter(max_pairs, rounds, part, keep)
        for start in range(0, n, chunk):
            counter.add(seq_a, seq_b, start, min(start + chunk, n), n_threads)
        return counter.result()

    res = one_pass(1, 0, first) if counted is None else counted
    n_migrated, lowest = res["n_migrated"], res["lowest"]
    passes = 1
    if not res["overflowed"]:
        (a, b, counts, firsts), other_pairs, other_photons = _trim(
            res["pairs"][:, 0], res["pairs"][:, 1], res["counts"], res["first"], top)
    else:
        # Partition (R, p) holds the pairs whose hash h has (h >> 32) % R == p, so it splits
        # exactly into (2R, p) and (2R, p + R): a part that overflows is split, the
        # others are counted once. Start from an estimate of the distinct pairs (those
        # placed + the entries that found no room, an upper bound that chunking inflates, so
        # aim at parts twice full and let the few that overflow split).
        estimate = len(res["pairs"]) + res["unplaced_pairs"]
        start = 1 << max(1, math.ceil(math.log2(max(2.0, estimate / (2 * max_pairs)))))
        todo = [(start, p) for p in range(start)]
        a = b = np.zeros(0, np.uint64)
        counts = firsts = np.zeros(0, np.int64)
        other_pairs = other_photons = 0
        while todo:
            rounds, part = todo.pop()
            r = one_pass(rounds, part, 0)
            passes += 1
            if r["overflowed"]:
                todo += [(2 * rounds, part), (2 * rounds, part + rounds)]
                continue
            # the top rows so far, in any order (partitioned, not sorted): sorted once at the end
            (a, b, counts, firsts), op, oph = _select(
                np.concatenate([a, r["pairs"][:, 0]]), np.concatenate([b, r["pairs"][:, 1]]),
                np.concatenate([counts, r["counts"]]), np.concatenate([firsts, r["first"]]), top)
            other_pairs, other_photons = other_pairs + op, other_photons + oph
        a, b, counts, firsts = _in_order(a, b, counts, firsts)
    return MigrationTable(n, n_migrated, np.asarray(lowest, np.int64), a.astype(np.uint64),
                          b.astype(np.uint64), counts.astype(np.int64), firsts.astype(np.int64),
                          int(other_pairs), int(other_photons), era, max_pairs, passes)


def count_migrations_reference(seq_a, seq_b, *, top: int | None = None, max_pairs: int = DEFAULT_MAX_PAIRS,
                               first: int = DEFAULT_FIRST, era: str = LEGACY_ERA, **_ignored) -> MigrationTable:
    """Numpy reference of :func:`count_migrations` (whole arrays in memory): same table."""
    seq_a, seq_b, top = _check(seq_a, seq_b, top, max_pairs, first)
    a, b = np.asarray(seq_a), np.asarray(seq_b)
    idx = np.flatnonzero(a != b)
    pa, pb = a[idx], b[idx]
    order = np.lexsort((idx, pb, pa))
    pa, pb, pi = pa[order], pb[order], idx[order]
    new = np.ones(len(pa), dtype=bool)
    new[1:] = (pa[1:] != pa[:-1]) | (pb[1:] != pb[:-1])
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(pa))).astype(np.int64)
    (ra, rb, rc, rf), other_pairs, other_photons = _trim(pa[starts], pb[starts], counts, pi[starts], top)
    return MigrationTable(len(a), len(idx), idx[:first].astype(np.int64), ra.astype(np.uint64),
                          rb.astype(np.uint64), rc, rf.astype(np.int64), other_pairs, other_photons, era,
                          max_pairs, 1)


def migrations(pair, *, engine: str = "cython", **kw) -> MigrationTable:
    """Migration table of an :class:`~photonab.events.EventPair` (``engine`` ``cython``
    or ``numpy``, the reference); keywords as :func:`count_migrations`."""
    if engine not in ("cython", "numpy"):
        raise InputError(f"unknown migration engine {engine!r}; engines are cython, numpy")
    fn = count_migrations if engine == "cython" else count_migrations_reference
    return fn(pair.a.seqhis, pair.b.seqhis, **kw)


# ---------------------------------------------------------------- chasing migrated photons


@dataclass
class MigratedPhotons:
    """Photons of the migrations that matched ``migration``, with their A and B records.

    ``indices`` are the first ``limit`` of the ``found`` photons (ascending; sliced-event
    indices, ``file_rows`` their rows in the files). Records are decoded float32 by the
    :class:`~photonab.events.Event` decoders: positions (k, maxrec, 3) mm, times
    (k, maxrec) ns, polarizations (k, maxrec, 3), wavelengths (k, maxrec) nm.
    """

    migration: str
    found: int
    indices: np.ndarray
    file_rows: np.ndarray
    codes_a: np.ndarray
    codes_b: np.ndarray
    positions_a: np.ndarray
    positions_b: np.ndarray
    times_a: np.ndarray
    times_b: np.ndarray
    polarizations_a: np.ndarray
    polarizations_b: np.ndarray
    wavelengths_a: np.ndarray
    wavelengths_b: np.ndarray
    era: str = LEGACY_ERA

    def __len__(self):
        return len(self.indices)

    @property
    def labels_a(self) -> list[str]:
        return history_labels(self.codes_a, self.era)

    @property
    def labels_b(self) -> list[str]:
        return history_labels(self.codes_b, self.era)

    def __repr__(self):
        return f"<MigratedPhotons {self.migration!r}: {len(self)} of {self.found} photons>"


def chase_migrated(pair, migration: str, limit: int = 10, *, codes=None, era: str = LEGACY_ERA,
                   chunk: int = SELECT_CHUNK, n_threads=None) -> MigratedPhotons:
    """The migrated photons whose A history matches the left pattern of ``migration``
    and whose B history matches the right one (``"A-PATTERN -> B-PATTERN"``, ``*`` =
    any), the first ``limit`` of them with their decoded A and B records.

    ``codes``: the distinct seqhis codes of A and B (e.g. the history table's); found in
    one counting pass when not given. Raises InputError when no history of the events
    matches a side's pattern.
    """
    if limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    pa, pb = parse_migration(migration, era)
    sa, sb = pair.a.seqhis, pair.b.seqhis
    if codes is None:
        codes = distinct_codes(sa, sb, n_threads=n_threads)
    codes = np.asarray(codes, np.uint64)
    for side, pat in (("A", pa), ("B", pb)):
        if not pat.match(codes).any():
            raise InputError(f"migration {migration!r}: no history of the events matches the {side} "
                             f"pattern {pat.text!r}")
    idx, found = [], 0
    for chunk_idx in iter_selected(sa, pa, sb, pb, migrated=1, codes=codes, era=era, chunk=chunk,
                                   n_threads=n_threads):
        found += len(chunk_idx)
        room = limit - sum(len(i) for i in idx)
        if room > 0:
            idx.append(chunk_idx[:room])
    indices = np.concatenate(idx) if idx else np.zeros(0, np.int64)
    a, b = pair.a, pair.b
    rows = a.file_rows  # a range: its arithmetic, not an N-sized array
    return MigratedPhotons(
        migration, found, indices, (rows.start + indices * rows.step).astype(np.int64),
        np.asarray(sa[indices], np.uint64), np.asarray(sb[indices], np.uint64),
        a.positions(indices), b.positions(indices), a.times(indices), b.times(indices),
        a.polarizations(indices), b.polarizations(indices), a.wavelengths(indices), b.wavelengths(indices),
        era)
