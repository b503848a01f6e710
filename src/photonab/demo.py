"""The built-in demo's event pair: generated once into a cache folder that processes share.

Several demos may start at once on a fresh cache (a batch of jobs, two terminals). One of
them generates the pair, under a lock, into a hidden sibling folder that is renamed into
place when it is complete; the others wait for the lock and then use that folder. A
generator killed half-way leaves no folder, its lock dies with it, and the next generator
removes the hidden sibling it left (docs/reliability.md).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .atomic import atomic_folder, file_lock

#: the faults and NaNs the demo injects, and its seed
DEMO_SEED = 0
DEMO_NAN = 5


def demo_folder(cache, photons: int) -> Path:
    """The cache folder of the demo pair of ``photons`` photons."""
    return Path(cache) / f"demo-v2-{photons}"  # v2: explicit migrations (DEFAULT_MIGRATIONS)


def _event_dirs(folder: Path) -> tuple[Path, Path]:
    root = folder / "evt" / "box" / "torch"
    return root / "1", root / "-1"


def _complete(folder: Path) -> bool:
    # the folder appears whole (atomic_folder); the domain files, written last by synth,
    # also tell a complete folder from one left by a version without the rename
    return all((d / "idom.npy").is_file() for d in _event_dirs(folder))


def ensure_demo_pair(cache, photons: int, progress: bool = True) -> tuple[Path, Path]:
    """(A folder, B folder) of the demo pair in ``cache``, generated first if it is not there."""
    folder = demo_folder(cache, photons)
    if not _complete(folder):
        def waiting():
            print(f"waiting for another photonab generating the demo pair in {folder} ...", file=sys.stderr)

        with file_lock(Path(cache) / f".{folder.name}.lock", waiting=waiting):
            if not _complete(folder):  # whoever held the lock may have made it meanwhile
                from .synth import DEFAULT_FAULTS, DEFAULT_MIGRATIONS, synthesize
                for pattern in (f".{folder.name}.tmp-*", f".{folder.name}.old-*"):  # a killed generator's
                    for stale in Path(cache).glob(pattern):
                        shutil.rmtree(stale, ignore_errors=True)
                print(f"generating the demo pair ({photons} photons) into {folder} ...", file=sys.stderr)
                with atomic_folder(folder) as tmp:
                    synthesize(tmp, photons, seed=DEMO_SEED, faults=DEFAULT_FAULTS, nan=DEMO_NAN,
                               progress=progress, migrations=DEFAULT_MIGRATIONS)
    return _event_dirs(folder)
