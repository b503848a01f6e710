"""The seqhis history code: one 4-bit nibble per propagation step, lowest first.

nibble = ffs(flag) = bit position of the step flag + 1; label = the nibbles from
lowest to highest mapped to two-letter abbreviations and joined by spaces
(docs/event-format.md, section 3). Which flag a nibble means depends on the era of the
Opticks source that wrote the event (:mod:`photonab.flags`, docs/sevt.md section 2):
every function takes an ``era``; the 64-bit functions default to the era of the 2019
layout (:data:`photonab.flags.LEGACY_ERA`), where nibble f is G4GUN ("GN").

SEvt events keep up to 32 steps in two uint64 words (``seq.npy[:, 0]``): slots 0-15
in word 0 ("lo"), slots 16-31 in word 1 ("hi"). The ``*2`` functions take such pairs.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .flags import CURRENT_ERA, ERAS, LEGACY_ERA, FlagTable

#: steps of a 64-bit code (2019 layout) and of a two-word code (SEvt)
MAX_STEPS = 16
MAX_STEPS_128 = 32


def flag_table(era: str | FlagTable | None = None) -> FlagTable:
    """The flag table of ``era`` (a name in :data:`photonab.flags.ERAS`); None = LEGACY_ERA."""
    if isinstance(era, FlagTable):
        return era
    name = LEGACY_ERA if era is None else str(era)
    try:
        return ERAS[name]
    except KeyError:
        raise InputError(f"unknown flag era {name!r}; known eras are {', '.join(ERAS)}") from None


_LEGACY = ERAS[LEGACY_ERA]
#: (flag name, abbreviation) by bit position in the 2019 layout; nibble value = bit + 1
FLAGS: tuple[tuple[str, str], ...] = tuple((name, _LEGACY.abbr[bit + 1]) for bit, name in enumerate(_LEGACY.names))
#: abbreviation -> nibble value (2019 layout)
NIBBLE: dict[str, int] = dict(_LEGACY.nibble)
#: nibble value -> abbreviation (nibble 0 means "no step") (2019 layout)
ABBR: dict[int, str] = dict(_LEGACY.abbr)
#: flag name -> flag bit value (1 << bit) (2019 layout)
FLAG_BIT: dict[str, int] = dict(_LEGACY.flag_bit)


# ---------------------------------------------------------------- 64-bit codes


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


def _tokens(nibs, table: FlagTable) -> str:
    return " ".join(table.abbr.get(n, f"?{n:x}") for n in nibs)


def label(code: int, era: str | None = None) -> str:
    """``0x8ccd`` -> ``'TO BT BT SA'``; an empty slot inside a history shows as ``?0``."""
    return _tokens(nibbles(code), flag_table(era))


def _parse(text: str, era, max_steps: int) -> int:
    table = flag_table(era)
    tokens = text.split()
    if len(tokens) > max_steps:
        raise InputError(f"history label {text!r} has {len(tokens)} steps; "
                         f"{'seqhis' if max_steps == MAX_STEPS else 'seq.npy'} holds at most {max_steps}")
    value = 0
    for i, tok in enumerate(tokens):
        nib = table.nibble.get(tok.upper())
        if nib is None:
            raise InputError(f"history label {text!r}: unknown step {tok!r} in the {table.era} flags; "
                             f"known steps are {' '.join(table.nibble)}")
        value |= nib << (4 * i)
    return value


def code(text: str, era: str | None = None) -> int:
    """``'TO BT BT SA'`` -> ``0x8ccd``. Raises InputError on an unknown token or > 16 steps."""
    return _parse(text, era, MAX_STEPS)


#: 16**k for k = 0..15: a code has k steps when it is >= the first k of them
_STEP_FLOORS = np.uint64(1) << (np.uint64(4) * np.arange(MAX_STEPS, dtype=np.uint64))


def nstep_array(codes: np.ndarray) -> np.ndarray:
    """Vectorised :func:`nstep` for a uint64 array (int64): one binary search per code in
    the 16 step thresholds, exact for every 64-bit value."""
    codes = np.asarray(codes, dtype=np.uint64)
    return np.searchsorted(_STEP_FLOORS, codes.ravel(), side="right").astype(np.int64).reshape(codes.shape)


def labels(codes, era: str | None = None, hi=None) -> list[str]:
    """``[label(c, era) for c in codes]`` (with ``hi``, the second words: ``label2``),
    made with numpy: the step tokens (two letters each in every era) are gathered for
    all codes at once, 10x faster than one label at a time (a JSON report of a million
    histories labels every row). ``era`` None is label's default, or label2's with ``hi``."""
    table = flag_table(CURRENT_ERA if era is None and hi is not None else era)
    tokens = [table.abbr.get(n, f"?{n:x}") for n in range(16)]
    codes = np.asarray(codes, np.uint64).ravel()
    words = [codes] if hi is None else [codes, np.asarray(hi, np.uint64).ravel()]
    if any(len(t) != 2 for t in tokens):  # not the case in any era: the general way
        if hi is None:
            return [label(c, era) for c in codes.tolist()]
        return [label2(lo, h, era) for lo, h in zip(codes.tolist(), words[1].tolist())]
    lut = np.frombuffer("".join(t + " " for t in tokens).encode("ascii"), np.uint8).reshape(16, 3)
    shifts = np.uint64(4) * np.arange(MAX_STEPS, dtype=np.uint64)
    slots = MAX_STEPS * len(words)
    out: list[str] = []
    for s in range(0, len(codes), 1 << 16):  # bounded scratch: 3 bytes a slot of a code
        part = [w[s:s + (1 << 16)] for w in words]
        nib = np.concatenate([(w[:, None] >> shifts) & np.uint64(0xF) for w in part], axis=1)
        text = lut[nib.astype(np.intp)]
        steps = nstep_array(part[0]) if hi is None else nstep2_array(*part)
        text[np.arange(slots)[None, :] >= steps[:, None]] = ord(" ")  # past the last step
        flat, w = text.tobytes().decode("ascii"), 3 * slots
        out += [flat[i:i + w].rstrip() for i in range(0, len(flat), w)]
    return out


def labels_share(codes, tokens, era: str | None = None, hi=None) -> np.ndarray:
    """Boolean per code: ``set(label(c).split()) & set(tokens)`` is not empty (tokens
    compared as text, as written; ``hi``: the second words, label2), without making the
    labels: each slot up to the code's steps is compared with the tokens' nibbles. ``tokens``
    as one string are its words; ``era`` None as in :func:`labels`."""
    table = flag_table(CURRENT_ERA if era is None and hi is not None else era)
    tokens = set(tokens.split() if isinstance(tokens, str) else tokens)
    wanted = [n for n in range(16) if table.abbr.get(n, f"?{n:x}") in tokens]
    words = [np.asarray(codes, np.uint64).ravel()] + ([] if hi is None else [np.asarray(hi, np.uint64).ravel()])
    if len(words) == 2 and len(words[1]) != len(words[0]):
        raise ValueError(f"labels_share: {len(words[0])} codes but {len(words[1])} second words")
    steps = nstep_array(words[0]) if hi is None else nstep2_array(*words)
    out = np.zeros(len(words[0]), bool)
    for k, w in enumerate(words):
        for i in range(MAX_STEPS):
            nib = (w >> np.uint64(4 * i)) & np.uint64(0xF)
            hit = np.isin(nib, np.array(wanted, np.uint64)) if wanted else np.zeros(len(w), bool)
            out |= hit & (steps > k * MAX_STEPS + i)
    return out


def labels_contain(codes, tokens: list[str], era: str | None = None) -> np.ndarray:
    """Boolean per code: does its label contain any of ``tokens`` (e.g. ``['SC', 'AB', 'RE']``)."""
    table = flag_table(era)
    wanted = [table.nibble[t.upper()] if t.upper() in table.nibble else code(t, table) for t in tokens]
    codes = np.asarray(codes, dtype=np.uint64)
    out = np.zeros(codes.shape, bool)
    for i in range(MAX_STEPS):  # a nibble is a step up to the code's highest non-zero one
        nib = (codes >> np.uint64(4 * i)) & np.uint64(0xF)
        step = (codes >> np.uint64(4 * i)) != 0
        for w in wanted:
            out |= step & (nib == np.uint64(w))
    return out


# ---------------------------------------------------------------- two-word (128-bit) codes

_MASK64 = (1 << 64) - 1


def join2(lo: int, hi: int) -> int:
    """The 128-bit history as one Python int: ``hi << 64 | lo``."""
    return (int(hi) << 64) | int(lo)


def split2(value: int) -> tuple[int, int]:
    """A 128-bit Python int -> (lo, hi) words."""
    value = int(value)
    return value & _MASK64, value >> 64


def label2(lo: int, hi: int, era: str | None = CURRENT_ERA) -> str:
    """The label of a two-word history (up to 32 steps), slots 0-15 from ``lo``, 16-31 from ``hi``.

    An empty slot inside the history (e.g. ``lo`` with fewer than 16 steps and a
    non-zero ``hi``) shows as ``?0``.
    """
    return _tokens(nibbles(join2(lo, hi)), flag_table(era))


def code2(text: str, era: str | None = CURRENT_ERA) -> tuple[int, int]:
    """``'TO BT SA'`` -> ``(lo, hi)`` words; up to 32 steps. Raises InputError like :func:`code`."""
    return split2(_parse(text, era, MAX_STEPS_128))


def nstep2(lo: int, hi: int) -> int:
    """Number of steps of a two-word history."""
    return nstep(join2(lo, hi))


def nstep2_array(lo, hi) -> np.ndarray:
    """Vectorised :func:`nstep2` for uint64 arrays ``lo`` and ``hi`` (or an (N, 2) array as ``lo``)."""
    lo = np.asarray(lo, dtype=np.uint64)
    hi = np.asarray(hi, dtype=np.uint64)
    return np.where(hi != 0, MAX_STEPS + nstep_array(hi), nstep_array(lo))


def hex128(lo: int, hi: int, strip: bool = True) -> str:
    """Hex of the 128-bit history, hi word then lo word: 32 digits, or without leading zeros."""
    text = f"{int(hi):016x}{int(lo):016x}"
    return (text.lstrip("0") or "0") if strip else text


def first_nibble_counts(lo) -> np.ndarray:
    """Photons per value (0..15) of the first history slot: the source flag (CK, SI, TO...)."""
    lo = np.asarray(lo, dtype=np.uint64)
    return np.bincount((lo & np.uint64(0xF)).astype(np.intp).ravel(), minlength=16)


def label_sort_rank(era: str | None = None) -> np.ndarray:
    """Rank (0..15) of each nibble's 3-byte label token ("   " for 0, "TO ", ...) in byte order.

    Comparing two histories slot by slot on these ranks gives the byte order of their
    QCF label strings (``|S96``), without building the strings (docs/sevt.md, QCF).
    """
    table = flag_table(era)
    tokens = [b"   "] + [(table.abbr[n] + " ").encode() for n in range(1, 16)]
    rank = np.empty(16, np.uint8)
    rank[np.argsort(np.array(tokens, dtype="S3"), kind="stable")] = np.arange(16, dtype=np.uint8)
    return rank
