"""The ``dask`` engine: the cyext range kernels as tasks on a dask cluster.

Photons are cut into chunks on SUM_BLOCK boundaries, one task per chunk. A task gets
only the event folders, the ``--msli`` slice and its photon range; the worker opens the
files itself (memory-mapped, kept open for the worker's next tasks), so no photon array
goes through the scheduler. The partial tables come back through a tree of merge tasks,
combined the same way the cython engine combines its threads' partials, and the ox sums
are added in block order at the end, so the tables are bit-identical to the cython
engine's for any chunking and any number of workers.

The task functions (:func:`count_histories`, :func:`deviate` and the merges) are plain
module-level functions of (a_path, b_path, msli, start, stop, ...), so runs over many
events can submit them too. See ``distributed.md`` beside this module for running it on a cluster.
"""
from __future__ import annotations

import logging
import mmap
import os
import socket
import threading
import weakref
from collections import OrderedDict

import numpy as np

from ..cuts import RECORD_TABLES, TABLES, Cuts
from ..errors import ClusterError, InputError
from ..events import EventPair
from . import reference
from .base import DeviationAggregate, HistoryCounts, no_progress, photon_chunks
from .compiled import aggregates_from_result, import_cyext

#: partial tables merged per merge task: pairwise keeps a merge's memory at about five
#: partial tables (its inputs, their stacked copy, the output)
FAN_IN = 2
#: opened event pairs a worker keeps memory-mapped for its next tasks
PAIR_CACHE_SIZE = 8
#: fraction of a worker's memory limit that the pages of its open events may take in its
#: resident set; beyond it, each task drops the pages it read (see release_pages). Dask
#: config ``photonab.keep-mapped`` (env DASK_PHOTONAB__KEEP_MAPPED) overrides it.
KEEP_MAPPED = 0.5
#: seconds to wait for the scheduler when connecting (and before a lost one is given up)
CONNECT_TIMEOUT = 10
#: seconds without any finished task after which a run is given up (frozen workers)
STALL_TIMEOUT = 300
#: seconds closing the client or the local cluster may take after a failure
CLOSE_TIMEOUT = 3


# ---------------------------------------------------------------- worker side

_pairs: OrderedDict = OrderedDict()
_pairs_lock = threading.Lock()


def _where() -> str:
    """The worker running this task, for error messages."""
    try:
        from distributed import get_worker
        return f"dask worker {get_worker().address} on {socket.gethostname()}"
    except (ImportError, ValueError):  # called outside a worker
        return f"process {os.getpid()} on {socket.gethostname()}"


def _folder_stamp(path: str):
    """Identity of a folder's .npy files, to notice files replaced or removed since they were opened."""
    try:
        return tuple(sorted((e.name, e.inode(), e.stat().st_size, e.stat().st_mtime_ns)
                            for e in os.scandir(path) if e.name.endswith(".npy")))
    except OSError:
        return None


def open_pair(a_path: str, b_path: str, msli) -> EventPair:
    """The event pair, opened once per worker process and reused while its files are unchanged."""
    key = (a_path, b_path, (msli.start, msli.stop, msli.step))
    stamp = (_folder_stamp(a_path), _folder_stamp(b_path))
    with _pairs_lock:
        hit = _pairs.get(key)
        if hit is not None and hit[0] == stamp and None not in stamp:
            _pairs.move_to_end(key)
            return hit[1]
        _pairs.pop(key, None)
        pair = EventPair.open(a_path, b_path, msli)  # InputError naming the file when it is bad
        _pairs[key] = (stamp, pair)
        while len(_pairs) > PAIR_CACHE_SIZE:
            _pairs.popitem(last=False)
        return pair


def _mapping_of(arr):
    """The mmap behind a memory-mapped array (or a view of one), None for in-memory arrays."""
    while arr is not None and not isinstance(arr, mmap.mmap):
        arr = getattr(arr, "base", None)
    return arr


def release_pages(arrays, start: int, stop: int) -> None:
    """Drop photons [start, stop) of memory-mapped arrays from this process's resident set.

    The pages stay in the page cache, but no longer count in the worker's RSS, which
    dask's nanny compares with the worker's memory limit: without this, a worker that
    has streamed more of an event than its limit gets restarted although it holds
    nothing.
    """
    for arr in arrays:
        mm = _mapping_of(arr)
        if mm is None or stop <= start:
            continue
        origin = np.frombuffer(mm, np.uint8).ctypes.data
        row = arr.strides[0]  # > 0: --msli steps are positive
        lo = arr.ctypes.data - origin + start * row
        hi = min(len(mm), arr.ctypes.data - origin + (stop - 1) * row + arr[0].nbytes)
        lo -= lo % mmap.PAGESIZE
        if hi > lo:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def _photon_arrays(pair: EventPair) -> list:
    return [pair.a.ox, pair.a.rx, pair.a.ph, pair.b.ox, pair.b.rx, pair.b.ph]


def _keep_mapped() -> bool:
    """Whether the pages tasks touch may stay mapped (fast repeated runs): only while all
    the events this worker keeps open fit in KEEP_MAPPED of its memory limit."""
    try:
        import dask
        from distributed import get_worker
        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):  # outside a worker: nobody watches the RSS
        return True
    if not limit:
        return True
    with _pairs_lock:
        mapped = sum(arr.nbytes for _stamp, pair in _pairs.values() for arr in _photon_arrays(pair))
    return mapped <= float(dask.config.get("photonab.keep-mapped", KEEP_MAPPED)) * limit


def _run_chunk(kind, a_path, b_path, msli, start, stop, n_photons, before_task, work):
    """Open the pair on this worker, check it is the event the client saw, run ``work``
    on it; every failure names the worker (and, from photonab, the file)."""
    try:
        if before_task is not None:
            before_task(kind, start, stop)
        pair = open_pair(a_path, b_path, msli)
        if n_photons is not None and pair.n != n_photons:
            raise InputError(f"{a_path}: {pair.n} photons here but {n_photons} on the client; "
                             "the workers must see the same event files as the client")
        try:
            result = work(pair)
            pair.check_readable()  # a map shrank under the kernels: not this result
            return result
        finally:
            if not _keep_mapped():
                release_pages(_photon_arrays(pair), start, stop)
    except InputError as exc:
        raise type(exc)(f"{_where()}: {exc}") from None  # InputChangedError stays one
    except Exception as exc:
        raise RuntimeError(f"{_where()}: {kind} of photons [{start}, {stop}) of {a_path} and {b_path} "
                           f"failed: {type(exc).__name__}: {exc}") from exc


def count_histories(a_path: str, b_path: str, msli, start: int, stop: int, *, n_photons=None,
                    n_threads=None, before_task=None) -> dict:
    """Task: history counts of photons [start, stop) as a partial table."""
    def work(pair):
        counter = import_cyext().HistoryCounter()
        counter.add(pair.a.seqhis, pair.b.seqhis, start, stop, n_threads)
        codes, counts = counter.result()
        return {"ranges": [(start, stop)], "codes": codes, "counts": counts}

    return _run_chunk("histories", a_path, b_path, msli, start, stop, n_photons, before_task, work)


def deviate(a_path: str, b_path: str, msli, start: int, stop: int, groups: np.ndarray, thresholds: np.ndarray,
            ox_cuts: np.ndarray, *, records: bool = True, finals: bool = True, n_photons=None, n_threads=None,
            before_task=None) -> dict:
    """Task: deviation aggregates of photons [start, stop) as a partial table, with the ox
    block sums kept for :func:`finish_deviations`."""
    def work(pair):
        cy = import_cyext()  # inside the task's error handling: a worker without it says so
        acc = cy.DeviationAccumulator(cy.GroupIndex(groups), thresholds, ox_cuts, n_threads,
                                      records=records, finals=finals, keep_blocks=True, maxrec=pair.a.rx.shape[1])
        a, b = pair.a, pair.b
        acc.add(a.rx, b.rx, a.ox, b.ox, a.seqhis, b.seqhis, start, stop)
        return {"ranges": [(start, stop)], **acc.result(copy=False)}

    return _run_chunk("deviations", a_path, b_path, msli, start, stop, n_photons, before_task, work)


def merge_histories(*parts: dict) -> dict:
    """Task: one partial history table from several."""
    counter = import_cyext().HistoryCounter()
    for part in parts:
        counter.add_counts(part["codes"], part["counts"])
    codes, counts = counter.result()
    return {"ranges": [r for p in parts for r in p["ranges"]], "codes": codes, "counts": counts}


def merge_deviations(*parts: dict) -> dict:
    """Task: one partial deviation table from several (same groups); block sums are only
    collected, their order-fixed addition waits for :func:`finish_deviations`."""
    cy = import_cyext()
    out = {"ranges": [r for p in parts for r in p["ranges"]]}
    if "records" in parts[0]:
        out["records"] = cy.merge_record_partials(np.stack([p["records"] for p in parts]))
        out["slots"] = np.stack([p["slots"] for p in parts]).max(axis=0)  # per-slot maxima: exact in any order
    if "finals" in parts[0]:
        out["finals"] = cy.merge_final_partials(np.stack([p["finals"] for p in parts]))
        out["blocks"] = [blk for p in parts for blk in p["blocks"]]
    return out


def finish_deviations(merged: dict, n_groups: int) -> dict:
    """Task: the ox sums from the kept block partials, added in block order."""
    out = dict(merged)
    if "blocks" in out:
        out["sums"] = import_cyext().merge_block_sums(n_groups, out.pop("blocks"))
    return out


def check_ranges(ranges, n: int, what: str) -> None:
    """A merged table must cover photons 0..n exactly once: anything else would be a wrong table."""
    covered = sorted(ranges)
    expected = 0
    for start, stop in covered:
        if start != expected:
            break
        expected = stop
    else:
        if expected == n or (n == 0 and covered == [(0, 0)]):
            return
    raise ClusterError(f"{what}: the merged partial tables cover photon ranges {covered[:8]}"
                       f"{' ...' if len(covered) > 8 else ''}, not 0..{n} exactly once; refusing a wrong table")


# ---------------------------------------------------------------- client side


def usable_cores() -> int:
    """Cores this process may run on (the local cluster's default size)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def local_cluster(n_workers: int, threads_per_worker: int = 1):
    """A dask cluster of worker processes on loopback, without a dashboard."""
    import distributed
    # without a dashboard the scheduler still serves health checks over HTTP, by
    # default on port 8787: take any free loopback port instead of a well-known one
    from ..interrupt import without_sigint  # workers leave a Ctrl-C to photonab (docs/reliability.md)
    # photonab reports a failing cluster itself in one line (ClusterError): the workers'
    # own log lines (e.g. cancelled tasks after Ctrl-C) would only bury it
    return without_sigint(lambda: distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True, host="127.0.0.1",
        dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.CRITICAL))


def _shutdown(client, cluster):
    for thing in (client, cluster):
        if thing is not None:
            try:
                thing.close(timeout=CLOSE_TIMEOUT)
            except Exception:  # closing at exit or after a failure: nothing left to do
                pass


_CLIENT = None


def _client_class():
    """distributed.Client, but a Client whose start fails is closed at once within
    CLOSE_TIMEOUT (left to its ``__del__``, it hangs for twice its timeout)."""
    global _CLIENT
    if _CLIENT is None:
        import distributed

        class Client(distributed.Client):
            def start(self, **kwargs):
                try:
                    return super().start(**kwargs)
                except BaseException:
                    try:
                        self.close(timeout=CLOSE_TIMEOUT)
                    except Exception:  # nothing more to do for a client that never started
                        pass
                    raise

        _CLIENT = Client
    return _CLIENT


def check_address(scheduler: str) -> str:
    """A scheduler address that distributed can connect to, or an InputError saying why
    not (checked before a Client exists: a Client failing on a malformed address hangs
    for a minute in its own teardown)."""
    from distributed.comm.addressing import parse_address, parse_host_port
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise InputError(f"dask scheduler address {scheduler!r}: expected tcp://host:port")
    try:
        protocol, location = parse_address(scheduler.strip())
        if protocol in ("tcp", "tls", "ucx"):
            host, port = parse_host_port(location)
            if not 0 < int(port) < 65536:
                raise ValueError(f"port {port} outside 1..65535")
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"dask scheduler address {scheduler!r}: unknown host ({exc.strerror})") from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"dask scheduler address {scheduler!r}: {exc} (expected tcp://host:port)") from None
    return scheduler.strip()


class DaskEngine:
    """The cyext kernels on a dask cluster, bit-identical to the cython engine.

    scheduler          address of a running dask scheduler (``tcp://host:8786``) or a
                       cluster object (e.g. dask_jobqueue.SLURMCluster); None starts a
                       local cluster of worker processes on loopback, closed with the
                       engine (``close()``, ``with``, or when collected)
    chunk              most photons per task, a multiple of cyext.SUM_BLOCK; smaller events
                       are cut finer so that every worker thread gets about two tasks
    n_threads          OpenMP threads per task on the workers (None: the worker's default,
                       which dask sets to 1 per worker thread through OMP_NUM_THREADS)
    n_workers          local cluster only: worker processes (default: the usable cores)
    threads_per_worker local cluster only: tasks one worker process runs at once
    before_task        callable ``(kind, start, stop)`` run on the worker before each chunk
                       task, kind "histories" or "deviations": a hook for fault injection
                       in tests (it is pickled to the workers)
    timeout            seconds to wait for the scheduler when connecting, and for a lost
                       scheduler to come back before the run is given up
    stall_timeout      seconds without any finished task after which the run is given up
                       (frozen workers); None waits for ever

    A malformed or unreachable scheduler address raises InputError; a run the cluster
    cannot finish (scheduler or workers lost, workers dying or frozen) raises
    :class:`photonab.errors.ClusterError`. Both come within about ``timeout`` seconds.
    """

    name = "dask"

    def __init__(self, n_threads=None, scheduler=None, chunk: int = 1 << 20, n_workers=None, *,
                 threads_per_worker: int = 1, before_task=None, timeout: float = CONNECT_TIMEOUT,
                 stall_timeout: float | None = STALL_TIMEOUT):
        try:
            import distributed
        except ImportError:
            raise InputError("the dask engine needs dask and distributed: pip install 'photonab[dask]'") from None
        self.cyext = import_cyext()
        if chunk <= 0 or chunk % self.cyext.SUM_BLOCK:
            raise ValueError(f"chunk must be a positive multiple of {self.cyext.SUM_BLOCK}")
        if stall_timeout is not None and not stall_timeout > 0:
            raise InputError(f"the dask stall timeout must be > 0 seconds, got {stall_timeout}")
        self.chunk, self.n_threads, self.before_task = chunk, n_threads, before_task
        self.stall_timeout = stall_timeout
        self.cluster = None
        if isinstance(scheduler, str):
            scheduler = check_address(scheduler)
        if scheduler is None:
            n_workers = n_workers or usable_cores()
            self.cluster = local_cluster(n_workers, threads_per_worker)
            scheduler = self.cluster.scheduler_address
        try:
            self.client = _client_class()(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            _shutdown(None, self.cluster)
            raise InputError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
        except Exception as exc:  # something answered, but not as a dask scheduler does
            _shutdown(None, self.cluster)
            raise InputError(f"cannot talk to a dask scheduler at {scheduler} (is one listening there?): "
                             f"{type(exc).__name__}: {exc}") from None
        self.scheduler, self.timeout = scheduler, timeout
        self._finalizer = weakref.finalize(self, _shutdown, self.client, self.cluster)

    def close(self):
        """Disconnect from the scheduler; stop the local cluster if this engine started it."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"<DaskEngine {self.scheduler} chunk={self.chunk}>"

    def chase(self, pair: EventPair, table: str, code, min_dev: float, limit: int):
        """See :meth:`photonab.engines.base.Engine.chase`: numpy on the client, in bounded
        chunks (a chase reads one history's photons once; it needs no cluster, so it
        also works after :meth:`close`)."""
        return reference.chase_photons(pair, table, code, min_dev, limit)

    # -- planning

    def worker_threads(self) -> int:
        """Tasks the cluster runs at once (the workers' threads)."""
        return sum(self.client.nthreads().values())

    def chunks(self, n: int) -> list[tuple[int, int]]:
        """Photon ranges, one task each: at most ``chunk`` photons, on SUM_BLOCK boundaries,
        about two per worker thread when the event is small."""
        block = self.cyext.SUM_BLOCK
        per_thread = -(-n // (2 * max(1, self.worker_threads())))
        size = min(self.chunk, max(block, -(-per_thread // block) * block))
        return list(photon_chunks(n, size)) or [(0, 0)]  # an empty event still gives (empty) tables

    @staticmethod
    def _location(pair: EventPair):
        # absolute paths: workers do not share the client's working directory
        return os.path.abspath(pair.a.path), os.path.abspath(pair.b.path), pair.a.msli

    # -- running

    def _run(self, pair: EventPair, desc: str, task, args: tuple, kwargs: dict, merge, finish, progress):
        """Submit one ``task`` per chunk, merge the partials in a tree of FAN_IN-way merge
        tasks, apply ``(finish, *finish_args)`` to the root; the result."""
        futures = []  # every task of this run, released together at the end

        def submit(fn, *fn_args, **fn_kwargs):
            futures.append(self.client.submit(fn, *fn_args, **fn_kwargs, pure=False))
            return futures[-1]

        a, b, msli = self._location(pair)
        kwargs = dict(kwargs, n_photons=pair.n, n_threads=self.n_threads, before_task=self.before_task)
        try:
            try:
                chunks = {submit(task, a, b, msli, start, stop, *args, **kwargs): (start, stop)
                          for start, stop in self.chunks(pair.n)}
                level = list(chunks)
                while len(level) > 1:
                    level = [submit(merge, *level[i:i + FAN_IN]) if len(level[i:i + FAN_IN]) > 1 else level[i]
                             for i in range(0, len(level), FAN_IN)]
                root = level[0] if finish is None else submit(finish[0], level[0], *finish[1:])
                with progress(pair.n, desc) as bar:
                    self._wait(list(chunks), lambda done: (pair.check_unchanged(),
                                                           bar.update(chunks[done][1] - chunks[done][0])), desc)
                self._wait([root], lambda done: None, desc)
                result = root.result()
            except Exception as exc:
                explained = self._explain(exc, desc, a, b)
                if explained is exc:
                    raise
                raise explained from exc
        finally:
            # releasing (not cancelling: the scheduler asserts on some cancels of merge trees)
            # drops whatever is still queued and frees the partial tables on the workers
            for future in futures:
                try:
                    future.release()
                except Exception:  # a lost client: nothing left to release
                    pass
        check_ranges(result.pop("ranges"), pair.n, f"{desc} of {a} and {b}")
        return result

    def _wait(self, pending: list, on_done, desc: str) -> None:
        """Wait for every future of ``pending``, calling ``on_done(future)`` as each
        finishes; a failed one raises its error. Gives up with ClusterError when the
        client has lost its scheduler for longer than the connect timeout or when no
        future finishes for ``stall_timeout`` seconds."""
        import queue
        import time

        finished: queue.Queue = queue.Queue()
        pending = set(pending)
        for future in pending:
            future.add_done_callback(finished.put)
        last = lost = time.monotonic()
        while pending:
            try:
                done = [finished.get(timeout=0.5)]
            except queue.Empty:
                done = []
            now = time.monotonic()
            for future in done:
                pending.discard(future)
                if future.status != "finished":
                    future.result()  # raises the task's error
                on_done(future)
                last = now
            status = getattr(self.client.status, "value", self.client.status)
            if status == "running":
                lost = now
            elif now - lost > self.timeout:
                raise ClusterError(f"lost the dask scheduler {self.scheduler} (client {status} for more than "
                                   f"{self.timeout:g} s)")
            if self.stall_timeout is not None and pending and now - last > self.stall_timeout:
                raise ClusterError(f"no dask task finished in {self.stall_timeout:g} s: the workers of "
                                   f"{self.scheduler} seem frozen or gone (--timeout to wait longer)")

    def _explain(self, exc: Exception, desc: str, a: str, b: str) -> Exception:
        """The error to raise for a failed run: the task's own clear errors as they are,
        cluster failures as a ClusterError saying what happened."""
        from distributed import CancelledError, KilledWorker
        if isinstance(exc, (InputError, ClusterError)):
            if isinstance(exc, ClusterError) and f"{desc} of" not in str(exc):
                return ClusterError(f"{desc} of {a} and {b}: {exc}; no table was computed")
            return exc
        if isinstance(exc, RuntimeError):  # a task's own failure (naming its worker), or the cluster's
            text = " ".join(str(exc).split())
            where = "" if a in text else f"{desc} of {a} and {b} failed on the dask cluster: "
            return ClusterError(f"{where}{text}; no table was computed")
        if isinstance(exc, KilledWorker):
            return ClusterError(f"{desc} of {a} and {b}: dask workers kept dying while running a task, so "
                                f"the run was given up and no table was computed. {exc} (A worker dies from its "
                                "memory limit, a crash in the kernels or the batch system ending its job.)")
        if isinstance(exc, CancelledError):
            return ClusterError(f"{desc} of {a} and {b}: the dask run was cancelled ({exc}); the scheduler "
                                f"{self.scheduler} may have gone away; no table was computed")
        if isinstance(exc, (OSError, TimeoutError)):
            return ClusterError(f"{desc} of {a} and {b}: lost the dask scheduler {self.scheduler} ({exc}); "
                                "no table was computed")
        return ClusterError(f"{desc} of {a} and {b} failed on the dask cluster: {type(exc).__name__}: {exc}")

    def histories(self, pair: EventPair, progress=no_progress) -> HistoryCounts:
        result = self._run(pair, "histories", count_histories, (), {}, merge_histories, None, progress)
        counts = result["counts"].reshape(-1, 2)
        out = HistoryCounts.from_unsorted(result["codes"], counts[:, 0], counts[:, 1])
        if int(out.a.sum()) != pair.n or int(out.b.sum()) != pair.n:  # cheap guard against lost photons
            raise ClusterError(f"histories of {pair}: counted {out.a.sum()} A and {out.b.sum()} B photons "
                               f"of {pair.n}; refusing a wrong table")
        return out

    def deviations(self, pair: EventPair, groups: np.ndarray, cuts: Cuts, tables=TABLES,
                   progress=no_progress) -> dict[str, DeviationAggregate]:
        groups = np.ascontiguousarray(groups, np.uint64)
        # the groups go with every task (8 bytes a history): as a shared dependency they
        # would pin all the tasks to the one worker holding it
        args = (groups, cuts.record_thresholds(), np.asarray(cuts.ox.values, np.float64))
        kwargs = {"records": [t for t in RECORD_TABLES if t in tables], "finals": "ox" in tables}
        result = self._run(pair, "deviations", deviate, args, kwargs, merge_deviations,
                           (finish_deviations, len(groups)), progress)
        return aggregates_from_result(result, groups, cuts, tables)


# ---------------------------------------------------------------- local scaling
