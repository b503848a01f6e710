"""synthesize(): blocks of photons simulated and written, on a process pool for big runs.

Both event folders are built under temporary sibling names (photonab.atomic) and
renamed into place only once complete, so an interrupted or failed run leaves the
previous folders as they were and no partial folder behind.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import atomic, seqhis
from ..errors import InputError
from ..events import tag_folders
from .checks import check_fraction, check_int
from .compress import domains
from .faults import Fault, parse_fault
from .migrations import MANIFEST, migration_rows, parse_migrations
from .pair import _apply_faults, _event_b, _with_noise
from .physics import _noise_codes, _physics_words, _raw_words, _unit24, propagate
from .writer import _create_event, _finish_event, _index_chunk, _Output, _rank_lookup

#: where synthesize() puts the pair: {out}/{PFX}/evt/{DET}/{SRC}/{TAG} and -{TAG}
PFX, DET, SRC, TAG = "", "box", "torch", 1
_MAX_BLOCK = 1 << 16  # photons simulated at once: bigger blocks only run out of cache
_MIGRATION_STREAM = 3  # random stream choosing the photons of explicit migrations


def pair_folders(out) -> tuple[Path, Path]:
    """The A and B folders synthesize() writes under ``out`` (events.tag_folders)."""
    return tag_folders(out, PFX, DET, SRC, TAG)


def usable_cores() -> int:
    """Cores this process may run on (os.sched_getaffinity where available)."""
    from ..engines.distributed import usable_cores as cores
    return cores()


def _workers(blocks: int) -> int:
    # starting a process costs about as much as a few blocks
    return max(1, min(usable_cores(), 8, blocks // 4))


@dataclass(frozen=True)
class _Plan:
    """What a (possibly separate) worker process needs to simulate and write a block."""

    a_dir: Path
    b_dir: Path
    seed: int
    maxrec: int
    misaligned: float
    faults: tuple
    block: int  # photons per block at most
    migrations: tuple = ()


_PROCESS_OUTPUT: dict = {}  # in a worker process: plan -> its _Output


def _migration_targets(plan: _Plan, lo: int, a) -> np.ndarray:
    """Per photon the B history an explicit migration asks for (0 = none)."""
    u = _unit24(_raw_words(plan.seed, _MIGRATION_STREAM, lo, a.n, 1).view(np.uint32)[:, 0])
    want = np.zeros(a.n, np.uint64)
    for m in plan.migrations:
        want[(a.seqhis == m.a_code) & (u < np.float32(m.fraction))] = m.b_code
    return want


def _migrated(a, b, want) -> dict:
    """(kind, A code, B code) -> photons of this block whose history B changed."""
    moved = np.flatnonzero(a.seqhis != b.seqhis)
    kinds = np.where(want[moved] != 0, "explicit", "misaligned") if want is not None else \
        np.full(moved.size, "misaligned")
    keys = Counter(zip(kinds.tolist(), a.seqhis[moved].tolist(), b.seqhis[moved].tolist()))
    return dict(keys)


def _simulate_block(plan: _Plan, lo: int, hi: int, nan_rows, output: _Output = None) -> tuple:
    """Photons lo..hi of A and B: propagate, derive B, write both; returns the counts
    (seqhis, seqmat per event), the migrations and the photons chosen per migration."""
    if output is None:
        output = _PROCESS_OUTPUT.get(plan) or _PROCESS_OUTPUT.setdefault(
            plan, _Output(plan.a_dir, plan.b_dir, plan.maxrec, plan.block))
    dom = domains(plan.maxrec)
    words = _physics_words(plan.seed, lo, hi - lo, plan.maxrec)
    a = propagate(words)
    mis = _unit24(words[:, 0, 1]) < np.float32(plan.misaligned)
    want, chosen = None, {}
    if plan.migrations:
        want = _migration_targets(plan, lo, a)
        mis = mis | (want != 0)
        chosen = {m: int(np.count_nonzero(want == m.b_code)) for m in plan.migrations}
    b = _event_b(words, a, mis, want)
    moved = _migrated(a, b, want)
    b = _with_noise(b, _noise_codes(plan.seed, lo, hi - lo, plan.maxrec), dom)
    _apply_faults(b, a, plan.faults)  # records only: B's final photon (ox) keeps its values
    return output.write(0, lo, a, dom), output.write(1, lo, b, dom, nan_rows), moved, chosen


def synthesize(out, photons: int, seed: int = 0, *, misaligned: float = 0.005,
               faults=(), nan: int = 0, maxrec: int = 10, chunk: int = 1 << 18,
               progress: bool = True, migrations=()) -> tuple[Path, Path]:
    """Write event A to out/evt/box/torch/1 and B to out/evt/box/torch/-1; return (a_dir, b_dir).

    ``misaligned`` is the fraction of photons whose random numbers B re-draws (until its
    history differs from A's); ``faults`` are specs for :func:`parse_fault` (or Faults);
    ``nan`` photons, chosen by the seed, get NaN as B's final time ox[:, 0, 3];
    ``migrations`` are specs ``'A LABEL->B LABEL:FRACTION'`` (see
    :mod:`photonab.synth.migrations`; none by default, so the events stay as they were).
    Photons are simulated in blocks of ``min(chunk, 65536)`` (on all cores for big runs)
    and indexed in chunks of ``chunk``; the output depends only on the other arguments.
    Each folder is written under a temporary name and renamed into place when complete.
    Every migrated photon is counted in ``out/synth.json`` (:func:`read_manifest`).
    """
    photons = check_int("photons", photons, 1)
    seed = check_int("seed", seed, 0)
    maxrec = check_int("maxrec", maxrec, 1, 16)
    nan = check_int("nan", nan, 0, photons)
    chunk = check_int("chunk", chunk, 1)
    misaligned = check_fraction("misaligned", misaligned)
    if isinstance(faults, (str, Fault)):
        faults = (faults,)
    faults = tuple(parse_fault(f) for f in faults)
    for f in faults:
        if seqhis.nstep(f.code) > maxrec:
            raise InputError(f"fault {f}: history has {seqhis.nstep(f.code)} steps but maxrec is "
                             f"{maxrec}, so no photon can have it")
    migrations = parse_migrations(migrations, maxrec)

    a_dir, b_dir = pair_folders(out)
    size = min(chunk, _MAX_BLOCK)
    with contextlib.ExitStack() as folders:
        try:
            tmp_a = folders.enter_context(atomic.atomic_folder(a_dir))
            tmp_b = folders.enter_context(atomic.atomic_folder(b_dir))
            for path in (tmp_a, tmp_b):
                _create_event(path, photons, maxrec)
        except OSError as exc:
            raise InputError(f"{out}: cannot write the event folders ({exc})") from None
        plan = _Plan(tmp_a, tmp_b, seed, maxrec, misaligned, faults, size, migrations)
        moved, chosen = _run(plan, photons, nan, chunk, progress)
        for path in (tmp_a, tmp_b):
            _finish_event(path, maxrec)
    manifest = {
        "generator": "photonab.synth.synthesize", "layout": "2019", "photons": photons, "seed": seed,
        "maxrec": maxrec, "misaligned": misaligned, "nan": nan, "faults": [str(f) for f in faults],
        "a": str(a_dir.relative_to(out)), "b": str(b_dir.relative_to(out)),
        "migrations": migration_rows(moved, chosen, migrations),
    }
    atomic.write_text(Path(out) / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return a_dir, b_dir


def _run(plan: _Plan, photons: int, nan: int, chunk: int, progress: bool) -> tuple[Counter, Counter]:
    """Simulate and index every block of ``plan``; returns the migration counts."""
    nan_ids = np.sort(np.random.default_rng([plan.seed, 2]).choice(photons, size=nan, replace=False))
    size = plan.block
    blocks = [(lo, min(lo + size, photons)) for lo in range(0, photons, size)]
    cuts = np.searchsorted(nan_ids, [lo for lo, _ in blocks] + [photons])
    jobs = [(plan, lo, hi, nan_ids[cuts[i]:cuts[i + 1]] - lo) for i, (lo, hi) in enumerate(blocks)]
    counts = [(Counter(), Counter()), (Counter(), Counter())]  # per event: seqhis, seqmat
    moved, chosen = Counter(), Counter()

    workers = _workers(len(blocks))
    pool = None
    if workers > 1:
        # processes, not threads: numpy's fancy indexing holds the GIL. fork (where there
        # is one) needs no `if __name__ == "__main__"` guard in the caller's script; the
        # workers start here, before the progress bar's thread exists.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context)
        pool.submit(int).result()

    def run(function, jobs, **in_process):
        """Yield (job, function(*job)) in order: on the pool with a bounded number of jobs
        in flight, or here (with the extra keyword arguments) when there is no pool."""
        if pool is None:
            yield from ((job, function(*job, **in_process)) for job in jobs)
            return
        pending = deque()
        for i, job in enumerate(jobs):
            pending.append((job, pool.submit(function, *job)))
            while len(pending) > 2 * workers or (pending and i == len(jobs) - 1):
                job, future = pending.popleft()
                yield job, future.result()

    try:
        with tqdm(total=photons, unit="photon", unit_scale=True, desc="synthesize A/B",
                  disable=not progress) as bar:
            in_process = {} if pool else {"output": _Output(plan.a_dir, plan.b_dir, plan.maxrec, plan.block)}
            for (_, lo, hi, _), (*result, block_moved, block_chosen) in run(_simulate_block, jobs, **in_process):
                for event_counts, block_counts in zip(counts, result):
                    for total, (codes, num) in zip(event_counts, block_counts):
                        total.update(dict(zip(codes.tolist(), num.tolist())))
                moved.update(block_moved)
                chosen.update(block_chosen)
                bar.update(hi - lo)
            del in_process
        # ranks need the final counts, hence a second, cheap pass over ph
        index_jobs = [(path, [_rank_lookup(c) for c in event_counts], lo, min(lo + chunk, photons))
                      for path, event_counts in zip((plan.a_dir, plan.b_dir), counts)
                      for lo in range(0, photons, chunk)]
        with tqdm(total=2 * photons, unit="photon", unit_scale=True, desc="index histories",
                  disable=not progress) as bar:
            for (_, _, lo, hi), _ in run(_index_chunk, index_jobs):
                bar.update(hi - lo)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return moved, chosen
