"""From a bad row to its photons: the most deviant aligned photons of one history.

:func:`chase` asks the engine (:meth:`photonab.engines.base.Engine.chase`, the same
photons from every engine) and returns a :class:`Chase`: sliced-event indices, file
rows, physical deviations (NaN ranked as inf) and, on demand, decoded A and B records.
"""
from __future__ import annotations

import numpy as np

from . import seqhis
from .cuts import LEVELS, RECORD_TABLES, TABLES, Cuts
from .errors import InputError
from .events import EventPair

#: photons per step when counting a history's photons (bounded memory)
_COUNT_CHUNK = 1 << 20


class Chase:
    """Photons behind a row: sliced-event indices, original file indices, physical
    deviations (NaN ranked as inf) and their decoded A and B records.

    ``found`` counts every aligned photon of the history at or beyond ``level``;
    ``aligned`` every aligned photon of the history (when known)."""

    def __init__(self, pair, table, code, level, index, deviation, found, aligned=None):
        self.pair, self.table, self.code, self.level = pair, table, code, level
        self.index = np.asarray(index, np.int64)
        self.deviation = np.asarray(deviation, np.float64)
        self.found = int(found)
        self.aligned = None if aligned is None else int(aligned)
        rows = pair.a.file_rows
        self.file_index = np.array([rows[i] for i in self.index], np.int64)

    def __len__(self):
        return len(self.index)

    @property
    def history(self) -> str | None:
        return None if self.code is None else seqhis.label(self.code)

    @property
    def unit(self) -> str:
        from .cuts import UNITS
        return UNITS[self.table]

    def records(self, k: int) -> dict:
        """Decoded A and B records of the k-th photon (positions, times, polarizations) and ox."""
        i = int(self.index[k])
        a, b = self.pair.a, self.pair.b
        n = seqhis.nstep(int(a.seqhis[i]))
        out = {}
        for side, ev in (("a", a), ("b", b)):
            out[side] = {"position": ev.positions(slice(i, i + 1))[0, :n], "time": ev.times(slice(i, i + 1))[0, :n],
                         "polarization": ev.polarizations(slice(i, i + 1))[0, :n], "ox": np.asarray(ev.ox[i, :3])}
        return out

    def render(self, records: int = 3) -> str:
        from .render.text import render_chase
        return render_chase(self, records)

    def to_dict(self) -> dict:
        from .render.json import chase_dict
        return chase_dict(self)

    def to_json(self, path=None) -> str | None:
        """Strict JSON text of :meth:`to_dict`; with ``path`` written there instead (None returned)."""
        from .render.json import write_json
        return write_json(self.to_dict(), path)

    def __str__(self):
        return self.render()

    def __repr__(self):
        what = "all histories" if self.code is None else repr(self.history)
        beyond = f">= {self.level}" if self.level else "any deviation"
        head = f"<Chase {self.table} {what} {beyond}: {len(self)} of {self.found} photons"
        if len(self):
            unit = f" {self.unit}" if self.unit else ""
            head += f", worst {self.deviation[0]:.5g}{unit} at photon {self.index[0]} (file row {self.file_index[0]})"
        return head + ">"

    def _repr_pretty_(self, p, cycle):
        p.text(repr(self) if cycle else self.render())


def min_deviation(cuts: Cuts, table: str, level: str | None) -> float:
    """The chase threshold of ``level`` in the engine's units (stored counts for the record
    tables, physical for ox): a photon reaches it exactly when it is beyond that cut."""
    if level is None:
        return 0.0
    if level not in LEVELS[1:]:
        raise InputError(f"level must be one of {', '.join(LEVELS[1:])} or None, got {level!r}")
    k = LEVELS.index(level) - 1
    if table in RECORD_TABLES:
        return float(cuts[table].thresholds()[k])
    return float(np.nextafter(cuts.ox.values[k], np.inf))  # ox: beyond cut when d > cut


def history_counts(pair: EventPair, code: int) -> tuple[int, int, int]:
    """Photons of history ``code`` in A, in B, and aligned (same history in both)."""
    na = nb = both = 0
    c = np.uint64(code)
    for start in range(0, pair.n, _COUNT_CHUNK):
        sa = np.asarray(pair.a.seqhis[start:start + _COUNT_CHUNK]) == c
        sb = np.asarray(pair.b.seqhis[start:start + _COUNT_CHUNK]) == c
        na, nb, both = na + int(sa.sum()), nb + int(sb.sum()), both + int((sa & sb).sum())
    return na, nb, both


def chase(pair: EventPair, cuts: Cuts, table: str, history=None, *, limit: int = 10,
          level: str | None = "WARNING", engine="cython", n_threads=None) -> Chase:
    """The at most ``limit`` most deviant aligned photons of ``history`` (a label such as
    ``'TO BT BR BT SA'``, a code, or None for every history) in ``table``, at or beyond
    cut ``level`` (None = any deviation), found by ``engine`` (a name or an engine).

    A history that no aligned photon has is an InputError saying how many photons of it
    A and B have: there is nothing to chase."""
    from .engines import get_engine
    if not isinstance(table, str) or table not in TABLES:
        raise InputError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
    if isinstance(history, str):
        code = seqhis.code(history)
    elif history is None:
        code = None
    elif isinstance(history, (int, np.integer)) and not isinstance(history, bool):
        code = int(history)
    else:
        raise InputError(f"history must be a label like 'TO BT SA', a seqhis code or None, not {history!r}")
    if not isinstance(limit, (int, np.integer)) or isinstance(limit, bool) or limit < 0:
        raise InputError(f"chase limit must be a whole number >= 0, got {limit!r}")
    min_dev = min_deviation(cuts, table, level)
    eng = get_engine(engine, n_threads=n_threads) if isinstance(engine, str) else engine
    index, dev, found = eng.chase(pair, table, code, min_dev, int(limit))
    pair.check_readable()  # a map shrank under the kernel: its photons are not the data
    aligned = None
    if code is not None and found == 0:
        na, nb, aligned = history_counts(pair, code)
        if aligned == 0:
            label = seqhis.label(code)
            if na == 0 and nb == 0:
                raise InputError(f"history {label!r} ({code:x}) does not occur in A or B "
                                 f"({pair.a.path}, {pair.b.path}): nothing to chase")
            raise InputError(f"history {label!r} ({code:x}) has {na} photons in A and {nb} in B but none aligned "
                             "(same history in both): nothing to chase")
    return Chase(pair, table, code, level, index, dev * cuts[table].bin, found, aligned)


def chase_pattern(pair: EventPair, cuts: Cuts, table: str, pattern, *, limit: int = 10,
                  level: str | None = "WARNING", engine="cython", n_threads=None) -> Chase:
    """:func:`chase` for every history matching a pattern (``'TO BT ..'``, ``'.6ccd'``,
    ``'TO BR SA, TO BT BT SA'``; docs/analysis.md): the pattern is matched on the
    distinct codes of A and B (one compiled counting pass), the engine chases each
    matching history present in both, and the lists are merged: most deviant first
    (NaN as +inf), lowest photon index on ties, ``found`` summed. The result's
    ``pattern`` is the text and ``codes`` the histories chased.

    A pattern that matches no history of A or B, or none that both have, is an InputError."""
    from .engines import get_engine
    from .engines.compiled import import_cyext
    from .patterns import parse_pattern
    if not isinstance(table, str) or table not in TABLES:
        raise InputError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
    if not isinstance(limit, (int, np.integer)) or isinstance(limit, bool) or limit < 0:
        raise InputError(f"chase limit must be a whole number >= 0, got {limit!r}")
    pat = parse_pattern(pattern)
    counter = import_cyext().HistoryCounter()
    for start in range(0, pair.n, _COUNT_CHUNK):
        counter.add(pair.a.seqhis, pair.b.seqhis, start, min(start + _COUNT_CHUNK, pair.n), n_threads)
    codes, counts = counter.result()
    match = pat.match(codes)
    if not match.any():
        raise InputError(f"history pattern {pat.text!r} matches no history of A or B "
                         f"({pair.a.path}, {pair.b.path}): nothing to chase")
    both = match & (counts[:, 0] > 0) & (counts[:, 1] > 0)
    if not both.any():
        raise InputError(f"history pattern {pat.text!r} matches {int(match.sum())} histories, none of them in both "
                         "A and B, so no photon of them is aligned: nothing to chase")
    chosen = np.sort(codes[both])
    min_dev = min_deviation(cuts, table, level)
    eng = get_engine(engine, n_threads=n_threads) if isinstance(engine, str) else engine
    idx, dev, found = [], [], 0
    for code in chosen:
        i, d, f = eng.chase(pair, table, int(code), min_dev, int(limit))
        idx.append(np.asarray(i, np.int64))
        dev.append(np.asarray(d, np.float64))
        found += int(f)
    pair.check_readable()
    index, deviation = np.concatenate(idx), np.concatenate(dev)
    rank = np.where(np.isnan(deviation), np.inf, deviation)
    order = np.lexsort((index, -rank))[:limit]
    out = Chase(pair, table, None, level, index[order], deviation[order] * cuts[table].bin, found)
    out.pattern, out.codes = pat.text, chosen
    return out
