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
    Photon indices are indices of the (``--msli``-sliced) events. A run's table
    (:func:`combine_migrations`) also gives the event of each such index:
    ``first_event`` for ``first``, ``first_migrated_event`` for ``first_migrated``.
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
    first_event: np.ndarray | None = None  # int64 (R,): a run's event of ``first``
    first_migrated_event: np.ndarray | None = None  # int64: a run's event of ``first_migrated``
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
            for k in ("first_migrated", "codes_a", "codes_b", "counts", "first",
                      "first_event", "first_migrated_event"))  # None only equals None

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


def _select(a, b, counts, *extra, top):
    """The ``top`` rows first in table order (count descending, then A code, then B code),
    in any order, with their ``extra`` columns, and (pairs, photons) of the rest: a
    partition, not a sort."""
    if len(counts) <= top:
        return (a, b, counts, *extra), 0, 0
    keep = _smallest((-counts, a, b), top)
    rest_photons = int(counts.sum()) - int(counts[keep].sum())
    return tuple(c[keep] for c in (a, b, counts, *extra)), len(counts) - len(keep), rest_photons


def _in_order(a, b, counts, *extra):
    order = np.lexsort((b, a, -counts))
    return tuple(c[order] for c in (a, b, counts, *extra))


def _trim(a, b, counts, *extra, top):
    """The ``top`` rows in table order, and (pairs, photons) of the rest."""
    rows, other_pairs, other_photons = _select(a, b, counts, *extra, top=top)
    return _in_order(*rows), other_pairs, other_photons


def _start_partitions(distinct: int, max_pairs: int) -> list[tuple[int, int]]:
    """The hash partitions (R, p) of a recount: partition (R, p) holds the pairs whose hash
    h has (h >> 32) % R == p, so it splits exactly into (2R, p) and (2R, p + R). From an
    upper bound of the distinct pairs, parts aimed at twice full: the few that overflow split."""
    start = 1 << max(1, math.ceil(math.log2(max(2.0, distinct / (2 * max_pairs)))))
    return [(start, p) for p in range(start)]


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
    seq_a, seq_b, top = _check(seq_a, seq_b, top, max_pairs, first)
    n = len(seq_a)
    res = _count_pass(seq_a, seq_b, max_pairs, 1, 0, first, chunk, n_threads) if counted is None else counted
    n_migrated, lowest = res["n_migrated"], res["lowest"]
    passes = 1
    if not res["overflowed"]:
        (a, b, counts, firsts), other_pairs, other_photons = _trim(
            res["pairs"][:, 0], res["pairs"][:, 1], res["counts"], res["first"], top=top)
    else:
        # the distinct pairs are at most those placed + the entries that found no room
        # (which chunking inflates)
        (a, b, counts, firsts, _), other_pairs, other_photons, recounts = _recount(
            [(seq_a, seq_b)], len(res["pairs"]) + res["unplaced_pairs"], max_pairs, top, chunk, n_threads)
        passes += recounts
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
    (ra, rb, rc, rf), other_pairs, other_photons = _trim(pa[starts], pb[starts], counts, pi[starts], top=top)
    return MigrationTable(len(a), len(idx), idx[:first].astype(np.int64), ra.astype(np.uint64),
                          rb.astype(np.uint64), rc, rf.astype(np.int64), other_pairs, other_photons, era,
                          max_pairs, 1)


def _add_events(parts):
    """Rows (a, b, counts, first, first_event) of the distinct pairs of ``parts`` (tuples of
    those columns, from events or runs of events): counts added, ``first`` and its event
    those of the pair's lowest event, lowest photon there."""
    a, b, counts, first, event = (np.concatenate([p[k] for p in parts]) for k in range(5))
    order = np.lexsort((first, event, b, a))
    a, b, counts, first, event = a[order], b[order], counts[order], first[order], event[order]
    new = np.ones(len(a), dtype=bool)
    new[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    starts = np.flatnonzero(new)
    summed = np.add.reduceat(counts, starts) if len(starts) else counts[:0]
    return a[starts], b[starts], summed.astype(np.int64), first[starts], event[starts]


def _event_rows(event: int, a, b, counts, first):
    return (np.asarray(a, np.uint64), np.asarray(b, np.uint64), np.asarray(counts, np.int64),
            np.asarray(first, np.int64), np.full(len(counts), event, np.int64))


def combine_migrations(tables: list[MigrationTable], columns, *, first: int = DEFAULT_FIRST, pattern=None,
                       chunk: int = SELECT_CHUNK, n_threads=None) -> MigrationTable:
    """One migration table of a run of events: ``tables`` the events' own (in event order,
    as :func:`count_migrations` made them, restricted by ``pattern`` when it is given, as
    :func:`photonab.analysis.select_migrations` does) and ``columns`` their (seq_a, seq_b).

    A row sums a pair's photons over the events; ``first``, ``first_event`` say where
    it appears first (lowest event, lowest photon there); ``first_migrated`` are the
    run's first ``first`` migrated photons in event order (each event's table must keep
    that many), ``first_migrated_event`` their events.
    Exact: when every event's table holds all its pairs, their rows are added (no pass
    over the photons); when one holds only its top ``max_pairs``, every pair of the run
    is counted again, one hash partition of the pairs at a time over every event, a
    partition holding at most ``max_pairs`` distinct pairs of the run (it splits in two
    when it would hold more), as count_migrations does for one event.
    """
    if not tables or len(tables) != len(columns):
        raise InputError(f"a run's migration table needs one table and one pair of seqhis columns per event, "
                         f"got {len(tables)} tables and {len(columns)} column pairs")
    head = tables[0]
    max_pairs, era = head.max_pairs, head.era
    lowest = [(e, i) for e, t in enumerate(tables) for i in t.first_migrated][:first]
    n_migrated = sum(t.n_migrated for t in tables)
    passes = max(t.passes for t in tables)
    if all(t.other_pairs == 0 and t.other_photons == 0 for t in tables):
        rows = _add_events([_event_rows(e, t.codes_a, t.codes_b, t.counts, t.first) for e, t in enumerate(tables)])
        rows, other_pairs, other_photons = _trim(*rows, top=max_pairs)
    else:
        rows, other_pairs, other_photons, recounts = _recount(columns, sum(t.n_pairs for t in tables),
                                                              max_pairs, max_pairs, chunk, n_threads)
        passes += recounts
        if pattern is not None:  # as select_migrations: rows of the matching pairs, the rest summed
            keep = pattern.match(rows[0]) | pattern.match(rows[1])
            rows = tuple(c[keep] for c in rows)
            other_photons = n_migrated - int(rows[2].sum())
            other_pairs = other_pairs if other_photons else 0
    a, b, counts, first, first_event = rows
    return MigrationTable(sum(t.n for t in tables), n_migrated, np.array([i for _, i in lowest], np.int64),
                          a, b, counts, first, int(other_pairs), int(other_photons), era, max_pairs, passes,
                          first_event, np.array([e for e, _ in lowest], np.int64))


def _count_pass(seq_a, seq_b, max_pairs: int, rounds: int, part: int, keep: int, chunk: int, n_threads) -> dict:
    """One compiled pass of cyext.MigrationCounter over an event's seqhis columns: the
    pairs of hash partition (rounds, part), the ``keep`` lowest migrated photons."""
    from .engines.compiled import import_cyext
    counter = import_cyext().MigrationCounter(max_pairs, rounds, part, keep)
    for start in range(0, len(seq_a), chunk):
        counter.add(seq_a, seq_b, start, min(start + chunk, len(seq_a)), n_threads)
    return counter.result()


def _recount(columns, distinct: int, max_pairs: int, top: int, chunk: int, n_threads):
    """Every pair of the events of ``columns`` counted again, partition by partition (at
    most ``distinct`` pairs in all; a part that overflows in an event, or holds more than
    ``max_pairs`` pairs of them all, is split in two, the others are counted once): the
    top ``top`` rows (a, b, counts, first, first_event) in table order, (pairs, photons)
    of the rest, and the partitions counted."""
    kept = (np.zeros(0, np.uint64),) * 2 + (np.zeros(0, np.int64),) * 3
    other_pairs, other_photons, recounts = 0, 0, 0
    todo = _start_partitions(distinct, max_pairs)
    while todo:
        rounds, part = todo.pop()
        recounts += 1
        rows = None
        for event, (sa, sb) in enumerate(columns):
            r = _count_pass(sa, sb, max_pairs, rounds, part, 0, chunk, n_threads)
            if not r["overflowed"]:
                mine = _event_rows(event, r["pairs"][:, 0], r["pairs"][:, 1], r["counts"], r["first"])
                rows = mine if rows is None else _add_events([rows, mine])  # one event's pairs are distinct
            if r["overflowed"] or len(rows[0]) > max_pairs:  # too many for one part: its halves
                todo += [(2 * rounds, part), (2 * rounds, part + rounds)]
                break
        else:
            # the top rows so far, in any order (partitioned, not sorted): sorted once at the end
            kept, op, oph = _select(*(np.concatenate([k, r]) for k, r in zip(kept, rows)), top=top)
            other_pairs, other_photons = other_pairs + op, other_photons + oph
    return _in_order(*kept), other_pairs, other_photons, recounts


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
