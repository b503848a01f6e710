"""Streaming beyond RAM: the cython engine over growing pairs, cold and warm page cache.

    python -m profiles.streaming --sizes 1M,10M,100M

For each size, in a fresh process with the inputs opened first: the pair's pages are
dropped from the page cache (``posix_fadvise(DONTNEED)`` after a sync), one comparison
runs cold (read from disk), then one runs warm (from the page cache, when the pair
fits in RAM). Beside the times: the throughput in GB/s of pair bytes read, and the
memory of the cold run (tracemalloc heap peak, peak anonymous RSS, file-backed pages
touched), which must stay flat as N grows while the file-backed pages grow with it.
Pairs come from the harness's cache (``profiles.pairs``); a pair that does not fit on
the disk is reported as skipped, with the space it needs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from photonab.atomic import write_text

from .pairs import PAIR_BYTES_PER_PHOTON, cached_pair, default_cache, pair_root, parse_count, size_label

READ_FILES = ("ph.npy", "rx.npy", "ox.npy")  # what a comparison reads


def drop_from_page_cache(folder: Path) -> None:
    """Evict an event folder's pages so the next read comes from the disk."""
    os.sync()  # dirty pages cannot be dropped
    for path in Path(folder).glob("*.npy"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def pair_bytes(pair) -> int:
    return sum((folder / name).stat().st_size for folder in (pair.a, pair.b) for name in READ_FILES)


def one_case(photons: int, cache: Path, n_threads) -> dict:
    """Cold then warm comparison of one pair, in this process."""
    from photonab import EventPair, compare
    from photonab.engines import get_engine

    from .memory import measure

    pair = cached_pair(photons, cache)
    engine = get_engine("cython", n_threads=n_threads)
    events = EventPair.open(pair.a, pair.b)
    size = pair_bytes(pair)
    for folder in (pair.a, pair.b):
        drop_from_page_cache(folder)
    cold = measure(lambda: compare(events, engine))
    t0 = time.perf_counter()
    compare(events, engine)
    warm = time.perf_counter() - t0
    return {"photons": photons, "bytes_read": size, "cold_s": cold["seconds"], "warm_s": warm,
            "cold_gb_s": size / cold["seconds"] / 1e9, "warm_gb_s": size / warm / 1e9,
            "heap_peak_mb": cold["heap_peak_mb"], "anon_peak_mb": cold["anon_peak_mb"],
            "file_touched_mb": cold["file_touched_mb"], "threads": engine.n_threads}


def render(rows: list[dict], skipped: list[str]) -> str:
    lines = [f"{'size':>6} {'GB read':>8} {'cold s':>8} {'cold GB/s':>9} {'warm s':>8} {'warm GB/s':>9} "
             f"{'heap MB':>8} {'anon MB':>8} {'file MB':>9}"]
    for r in rows:
        lines.append(f"{size_label(r['photons']):>6} {r['bytes_read'] / 1e9:>8.2f} {r['cold_s']:>8.3f} "
                     f"{r['cold_gb_s']:>9.2f} {r['warm_s']:>8.3f} {r['warm_gb_s']:>9.2f} {r['heap_peak_mb']:>8.1f} "
                     f"{r['anon_peak_mb']:>8.1f} {r['file_touched_mb']:>9.0f}")
    lines.append("cold = pages dropped from the page cache first; warm = the run right after (from the page "
                 "cache only when the pair fits in RAM); memory of the cold run, above the baseline with the "
                 "inputs open")
    lines += [f"skipped {s}" for s in skipped]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m profiles.streaming", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1M,10M", help="photons per event, e.g. 1M,10M,100M (default 1M,10M)")
    p.add_argument("--cache", type=Path, default=None, help="pair cache (default the harness's)")
    p.add_argument("--threads", type=int, default=None, help="kernel threads (default all)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    p.add_argument("--case", type=parse_count, default=None, help=argparse.SUPPRESS)  # one size, this process
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cache = args.cache or default_cache()
    if args.case is not None:
        print(json.dumps(one_case(args.case, cache, args.threads)))
        return 0
    rows, skipped = [], []
    for text in args.sizes.split(","):
        photons = parse_count(text)
        need = PAIR_BYTES_PER_PHOTON * photons
        root = pair_root(photons, cache)
        cache.mkdir(parents=True, exist_ok=True)
        if not root.exists() and shutil.disk_usage(cache).free < need * 1.05:
            skipped.append(f"{size_label(photons)}: the pair needs {need / 1e9:.0f} GB, "
                           f"{shutil.disk_usage(cache).free / 1e9:.0f} GB free in {cache}")
            continue
        cmd = [sys.executable, "-m", "profiles.streaming", "--case", str(photons), "--cache", str(cache)]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            skipped.append(f"{size_label(photons)}: failed: {done.stderr.strip()[-500:]}")
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(render(rows[-1:], []).splitlines()[1], flush=True)
    print(render(rows, skipped))
    if args.json:
        write_text(args.json, json.dumps({"rows": rows, "skipped": skipped}, indent=1))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
