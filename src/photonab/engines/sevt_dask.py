"""The dask path of the SEvt QCF history counts (docs/sevt.md, "Engines").

As :mod:`photonab.engines.distributed` does for the 2019 layout: one task per photon
range carries only the two SEvt folders, the ``--msli`` slice and the range; the worker
opens ``seq.npy`` of both itself (memory-mapped, kept open for its next tasks), counts
the range with ``cyext.History128Counter`` and returns a partial table (lo, hi, counts,
first). The partials are merged in the same tree of merge tasks with
``History128Counter.add_counts`` (counts added, first index = the minimum), so the
counts are exactly the cython engine's. The cluster, client, timeouts, failures
(InputError naming the worker and the file, ClusterError for the cluster) and closing
are the :class:`~photonab.engines.distributed.DaskEngine`'s own.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from ..errors import ClusterError, InputError
from .base import no_progress
from .compiled import import_cyext
from .distributed import PAIR_CACHE_SIZE, _folder_stamp, _where

_events: OrderedDict = OrderedDict()
_events_lock = threading.Lock()


def open_sevt_events(a_path: str, b_path: str, msli):
    """SEvt events A and B (seq.npy required), opened once per worker and reused while unchanged."""
    from ..sevt import SEvtEvent
    key = (a_path, b_path, (msli.start, msli.stop, msli.step))
    stamp = (_folder_stamp(a_path), _folder_stamp(b_path))
    with _events_lock:
        hit = _events.get(key)
        if hit is not None and hit[0] == stamp and None not in stamp:
            _events.move_to_end(key)
            return hit[1]
        _events.pop(key, None)
        events = (SEvtEvent(a_path, msli, ("seq",)), SEvtEvent(b_path, msli, ("seq",)))
        _events[key] = (stamp, events)
        while len(_events) > PAIR_CACHE_SIZE:
            _events.popitem(last=False)
        return events


def count_histories128(a_path: str, b_path: str, msli, start: int, stop: int, *, n_photons=None,
                       n_threads=None, before_task=None) -> dict:
    """Task: 128-bit history counts of photons [start, stop) of an SEvt pair, as a partial table."""
    try:
        if before_task is not None:
            before_task("histories", start, stop)
        a, b = open_sevt_events(a_path, b_path, msli)
        n = min(a.n, b.n)
        if n_photons is not None and n != n_photons:
            raise InputError(f"{a_path}: {n} photons here but {n_photons} on the client; "
                             "the workers must see the same event files as the client")
        counter = import_cyext().History128Counter()
        counter.add(a.seqhis[:n], b.seqhis[:n], start, stop, n_threads)
        lo, hi, counts, first = counter.result()
        return {"ranges": [(start, stop)], "lo": lo, "hi": hi, "counts": counts, "first": first}
    except InputError as exc:
        raise type(exc)(f"{_where()}: {exc}") from None
    except Exception as exc:
        raise RuntimeError(f"{_where()}: histories of photons [{start}, {stop}) of {a_path} and {b_path} "
                           f"failed: {type(exc).__name__}: {exc}") from exc


def merge_histories128(*parts: dict) -> dict:
    """Task: one partial 128-bit history table from several (counts added, first = minimum)."""
    counter = import_cyext().History128Counter()
    for part in parts:
        counter.add_counts(part["lo"], part["hi"], part["counts"], part["first"])
    lo, hi, counts, first = counter.result()
    return {"ranges": [r for p in parts for r in p["ranges"]], "lo": lo, "hi": hi, "counts": counts,
            "first": first}


class _Located:
    """What DaskEngine._run needs of a pair: folders, --msli, photon count."""

    def __init__(self, pair):
        self.a, self.b, self.n = pair.a, pair.b, pair.n

    def check_unchanged(self):  # SEvt folders: the workers check their files' stamps
        return []

    def __str__(self):
        return f"{self.a.path} and {self.b.path}"


def count_dask(pair, engine=None, progress=None, **options):
    """HistoryCounts128 of an SEvtPair on a dask cluster: ``engine`` a DaskEngine (kept open),
    or None to start one with ``options`` (a local cluster unless ``scheduler=``) for this call."""
    from ..qcf import HistoryCounts128
    from .distributed import DaskEngine
    own = engine is None
    if own:
        engine = DaskEngine(**options)
    try:
        result = engine._run(_Located(pair), "histories", count_histories128, (), {}, merge_histories128, None,
                             progress or no_progress)
    finally:
        if own:
            engine.close()
    counts, first = result["counts"].reshape(-1, 2), result["first"].reshape(-1, 2)
    out = HistoryCounts128(result["lo"], result["hi"], counts[:, 0], counts[:, 1], first[:, 0], first[:, 1])
    if int(out.a.sum()) != pair.n or int(out.b.sum()) != pair.n:  # cheap guard against lost photons
        raise ClusterError(f"histories of {pair.a.path} and {pair.b.path}: counted {out.a.sum()} A and "
                           f"{out.b.sum()} B photons of {pair.n}; refusing a wrong table")
    return out
