"""Synthetic A/B pairs for the harness, generated once per size into a cache folder.

A pair folder is reused when its marker file says it was completed with the same
arguments; an interrupted generation leaves no marker and is redone.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from photonab.atomic import file_lock, write_text
from photonab.counts import parse_count as _photonab_count
from photonab.synth import pair_folders

SEED = 1
NAN_PHOTONS = 5
MARKER = "complete.json"
#: bytes on disk per photon of one pair (both events: ox 64, rx 160, ph 16, ps 4, rs 40)
PAIR_BYTES_PER_PHOTON = 2 * 284

def parse_count(text: str) -> int:
    """A positive photon count: ``'100k'`` -> 100000, ``'1M'``, ``'2.5M'`` (photonab's one
    count grammar, photonab.counts)."""
    value = _photonab_count(text, "photon count")
    if value <= 0:
        raise ValueError(f"{text!r}: the photon count must be positive")
    return value


def parse_sizes(text: str, example: str = "1M") -> list[int]:
    """``'100k,1M'`` -> [100000, 1000000] (sorted, each once), for ``--sizes``."""
    import argparse
    try:
        counts = sorted({parse_count(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not counts:
        raise argparse.ArgumentTypeError(f"give at least one photon count, e.g. {example}")
    return counts


def size_label(photons: int) -> str:
    """100000 -> '100k', 1000000 -> '1M', 1500 -> '1500'."""
    for suffix, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if photons >= scale and photons % (scale // 10) == 0:
            value = photons / scale
            return f"{value:g}{suffix}"
    return str(photons)


def default_cache() -> Path:
    """``$PHOTONAB_CACHE/profiles`` (or ``~/.cache/photonab/profiles``)."""
    from photonab.cli import default_cache as photonab_cache
    return photonab_cache() / "profiles"


def pair_root(photons: int, cache) -> Path:
    """The folder of the cached pair of ``photons`` photons (synthesize's ``out``)."""
    return Path(cache) / f"pair-{size_label(photons)}-seed{SEED}"


@dataclass(frozen=True)
class Pair:
    photons: int
    root: Path
    recipe: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def a(self) -> Path:
        return pair_folders(self.root)[0]

    @property
    def b(self) -> Path:
        return pair_folders(self.root)[1]

    @property
    def label(self) -> str:
        return size_label(self.photons)


def generator_digest() -> str:
    """Short sha256 of the generator's source files (the whole photonab.synth package)."""
    from photonab import synth
    h = hashlib.sha256()
    for path in sorted(Path(synth.__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _recipe(photons: int) -> dict:
    """Everything the pair depends on, including the generator's source (a changed
    generator writes different photons, so its pairs are generated again)."""
    from photonab import synth
    return {"photons": photons, "seed": SEED, "faults": list(synth.DEFAULT_FAULTS), "nan": NAN_PHOTONS,
            "synth_sha256": generator_digest()}


def cached_folder(root: Path, recipe: dict, make, *, regenerate: bool = False, need_bytes: int = 0) -> bool:
    """Make folder ``root`` with ``make(root)`` unless its marker holds ``recipe`` (what the
    folder's data depend on, compared as JSON reads it back); returns True when it was made.

    Processes that share a cache take turns (a lock per folder), so two harness runs never
    make one at once; the marker is written (atomically) only after ``make`` returned, so
    an interrupted one is made again. ``need_bytes``: fail first when the disk has less.
    """
    cache = root.parent
    cache.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    with file_lock(cache / f".{root.name}.lock"):
        if not regenerate and marker.is_file():
            try:
                if json.loads(marker.read_text()) == recipe:
                    return False
            except ValueError:
                pass  # a damaged marker: make it again
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        free = shutil.disk_usage(root).free
        if free < need_bytes * 1.05:
            raise OSError(f"{root}: needs {need_bytes / 1e9:.1f} GB on disk, {free / 1e9:.1f} GB free "
                          "(choose another folder with --cache)")
        make(root)
        write_text(marker, json.dumps(recipe))
    return True


def cached_pair(photons: int, cache: Path, *, regenerate: bool = False, progress: bool = True) -> Pair:
    """The pair of ``photons`` photons in ``cache``, synthesized first when missing or stale
    (cached_folder)."""
    from photonab.synth import synthesize

    recipe = _recipe(photons)
    pair = Pair(photons, pair_root(photons, cache), recipe)
    cached_folder(pair.root, recipe, lambda root: synthesize(root, photons, seed=SEED, faults=recipe["faults"],
                                                             nan=NAN_PHOTONS, progress=progress),
                  regenerate=regenerate, need_bytes=PAIR_BYTES_PER_PHOTON * photons)
    return pair
