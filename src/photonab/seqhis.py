"""The seqhis history code: one 4-bit nibble per propagation step, lowest first.

nibble = ffs(flag) = bit position of the step flag + 1; label = the nibbles from
lowest to highest mapped to two-letter abbreviations and joined by spaces
(data contract, section 3).
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

#: (flag name, abbreviation) by bit position; nibble value = bit + 1
FLAGS: tuple[tuple[str, str], ...] = (
    ("CERENKOV", "CK"),
    ("SCINTILLATION", "SI"),
    ("MISS", "MI"),
    ("BULK_ABSORB", "AB"),
    ("BULK_REEMIT", "RE"),
    ("BULK_SCATTER", "SC"),
    ("SURFACE_DETECT", "SD"),
    ("SURFACE_ABSORB", "SA"),
    ("SURFACE_DREFLECT", "DR"),
    ("SURFACE_SREFLECT", "SR"),
    ("BOUNDARY_REFLECT", "BR"),
    ("BOUNDARY_TRANSMIT", "BT"),
    ("TORCH", "TO"),
    ("NAN_ABORT", "NA"),
    ("EFFICIENCY_CULL", "EX"),
)
MAX_STEPS = 16

#: abbreviation -> nibble value
NIBBLE: dict[str, int] = {abbr: bit + 1 for bit, (_, abbr) in enumerate(FLAGS)}
#: nibble value -> abbreviation (nibble 0 means "no step")
ABBR: dict[int, str] = {nib: abbr for abbr, nib in NIBBLE.items()}
#: flag name -> flag bit value (1 << bit)
FLAG_BIT: dict[str, int] = {name: 1 << bit for bit, (name, _) in enumerate(FLAGS)}


def nibbles(code: int) -> list[int]:
    """The step nibbles of a seqhis code, first step first (trailing zeros dropped)."""
    code = int(code)
    out = []
    while code:
        out.append(code & 0xF)
        code >>= 4
    return out


def nstep(code: int) -> int:
    """Number of steps: index of the highest non-zero nibble + 1 (0 for code 0)."""
    return (int(code).bit_length() + 3) // 4


def label(code: int) -> str:
    """``0x8ccd`` -> ``'TO BT BT SA'``; an unknown nibble (0 inside, or 0xF+1) shows as ``?N``."""
    return " ".join(ABBR.get(n, f"?{n:x}") for n in nibbles(code))


def code(text: str) -> int:
    """``'TO BT BT SA'`` -> ``0x8ccd``. Raises InputError on an unknown token or > 16 steps."""
    tokens = text.split()
    if len(tokens) > MAX_STEPS:
        raise InputError(f"history label {text!r} has {len(tokens)} steps; seqhis holds at most {MAX_STEPS}")
    value = 0
    for i, tok in enumerate(tokens):
        nib = NIBBLE.get(tok.upper())
        if nib is None:
            raise InputError(
                f"history label {text!r}: unknown step {tok!r}; known steps are {' '.join(NIBBLE)}"
            )
        value |= nib << (4 * i)
    return value


def nstep_array(codes: np.ndarray) -> np.ndarray:
    """Vectorised :func:`nstep` for a uint64 array."""
    codes = np.asarray(codes, dtype=np.uint64)
    n = np.zeros(codes.shape, dtype=np.int64)
    for i in range(MAX_STEPS):
        n[(codes >> np.uint64(4 * i)) != 0] = i + 1
    return n


def labels_contain(codes, tokens: list[str]) -> np.ndarray:
    """Boolean per code: does its label contain any of ``tokens`` (e.g. ``['SC', 'AB', 'RE']``)."""
    wanted = [NIBBLE[t.upper()] if t.upper() in NIBBLE else code(t) for t in tokens]
    return np.array([any(n in wanted for n in nibbles(c)) for c in codes], dtype=bool)
