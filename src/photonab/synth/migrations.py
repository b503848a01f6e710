"""History migrations that the 2019 generator injects into event B, and their record.

A migration moves a photon from history X in A to history Y in B. The generator makes
two kinds (docs/synth.md, "Migrations"):

- ``misaligned``: a fraction of all photons re-draw B's propagation numbers until
  B's history differs from A's; where they land is up to the physics.
- ``explicit``: for a spec ``'X->Y:F'``, a fraction F of the photons with history X
  in A (chosen by the seed) re-draw until B's history is exactly Y. A photon that
  does not reach Y within the re-draws keeps A's track and does not migrate, so the
  number that migrated is reported beside the number chosen.

Every migrated photon, of either kind, is counted per (kind, A history, B history)
in the run's manifest ``OUT/synth.json`` (:func:`read_manifest`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import seqhis
from ..errors import InputError
from .checks import check_fraction

MANIFEST = "synth.json"


@dataclass(frozen=True)
class Migration:
    """Photons with history ``a_label`` in A that B moves to ``b_label``, a ``fraction`` of them."""

    a_label: str
    a_code: int
    b_label: str
    b_code: int
    fraction: float

    def __str__(self) -> str:
        return f"{self.a_label}->{self.b_label}:{self.fraction!r}"


#: Explicit migrations for the demo: at 100k photons (seed 0) 274 and 115 photons move.
DEFAULT_MIGRATIONS: tuple[str, ...] = (
    "TO BT BT SA->TO BT BT SD:0.004",  # a detection that A misses
    "TO BR SA->TO BT BT SA:0.04",  # B transmits at the entry face where A reflected
)


def parse_migration(spec) -> Migration:
    """``'TO BT BT SA->TO BR SA:0.01'`` -> Migration (fraction of A's photons with the first history)."""
    if isinstance(spec, Migration):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"migration {spec!r}: expected a string like 'TO BT BT SA->TO BR SA:0.01'")
    histories, sep, fraction = spec.rpartition(":")
    a_text, arrow, b_text = histories.partition("->")
    if not sep or not arrow or not a_text.strip() or not b_text.strip():
        raise InputError(f"migration {spec!r}: expected A_LABEL->B_LABEL:FRACTION, "
                         "e.g. 'TO BT BT SA->TO BR SA:0.01'")
    try:
        a_code, b_code = seqhis.code(a_text), seqhis.code(b_text)
    except InputError as exc:
        raise InputError(f"migration {spec!r}: {exc}") from None
    if a_code == b_code:
        raise InputError(f"migration {spec!r}: A and B histories are the same")
    if a_code & 0xF != seqhis.NIBBLE["TO"] or b_code & 0xF != seqhis.NIBBLE["TO"]:
        raise InputError(f"migration {spec!r}: the toy's histories start with TO")
    fraction = check_fraction(f"migration {spec!r}: fraction", fraction.strip() or "x")
    return Migration(seqhis.label(a_code), a_code, seqhis.label(b_code), b_code, fraction)


def parse_migrations(specs, maxrec: int) -> tuple[Migration, ...]:
    if isinstance(specs, (str, Migration)):
        specs = (specs,)
    out = tuple(parse_migration(s) for s in specs)
    seen = set()
    for m in out:
        if m.a_code in seen:
            raise InputError(f"migration {m}: a second migration of A history {m.a_label!r}")
        seen.add(m.a_code)
        for code in (m.a_code, m.b_code):
            if seqhis.nstep(code) > maxrec:
                raise InputError(f"migration {m}: history {seqhis.label(code)!r} has {seqhis.nstep(code)} "
                                 f"steps but maxrec is {maxrec}, so no photon can have it")
    return out


def migration_rows(counts: dict, chosen: dict, migrations) -> list[dict]:
    """Manifest rows: ``counts`` (kind, a code, b code) -> photons; ``chosen`` Migration -> photons."""
    rows = []
    for m in migrations:
        rows.append({"kind": "explicit", "a": m.a_label, "b": m.b_label, "fraction": m.fraction,
                     "chosen": chosen.get(m, 0), "photons": counts.get(("explicit", m.a_code, m.b_code), 0)})
    rest = sorted(((n, a, b) for (kind, a, b), n in counts.items() if kind == "misaligned"),
                  key=lambda r: (-r[0], r[1], r[2]))
    rows += [{"kind": "misaligned", "a": seqhis.label(a), "b": seqhis.label(b), "photons": n}
             for n, a, b in rest]
    return rows


def read_manifest(out) -> dict:
    """The manifest ``OUT/synth.json`` a synthesize() run wrote: arguments, faults, migrations."""
    path = Path(out) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: missing file (written by photonab.synth.synthesize)") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
