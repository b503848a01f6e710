"""History patterns: name a set of histories the way the original analysis did.

Forms (docs/analysis.md, section 1), several joined by ``,`` (any of them matches):

- an exact label, ``TO BT BT SA``;
- a label prefix with a trailing ``..``: ``TO BT BT SC ..`` matches that start followed
  by any continuation, none included;
- a hex code, written like the code itself, highest nibble (last step) first:
  ``8ccd`` is ``TO BT BT SA``. A leading ``.`` is the continuation (``.6ccd`` is
  ``TO BT BT SC ..``, as in the original); a ``.`` elsewhere is one step of any kind
  (``8.cd`` = ``TO BT ? SA``). Hex is lowercase with at least one digit (``0x``
  allowed), so it never reads as a label; a label token may also be ``.`` for one step
  of any kind.
- ``[TO]``: brackets around one label token mark a slot (the original's way of naming
  the slot to histogram); they do not change what matches.

A pattern is parsed once into a :class:`HistoryPattern`, which is matched vectorised on
an array of distinct codes (the history table's codes, never the photons one by one):
64-bit codes of the 2019 layout, or 128-bit codes as (lo, hi) uint64 pairs (slots 0-15
in lo, 16-31 in hi; docs/sevt.md). Labels use the flag table of an era
(:data:`photonab.flags.ERAS`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .flags import ERAS, LEGACY_ERA

#: the longest history a pattern may describe (128-bit codes)
MAX_PATTERN_STEPS = 32
_HEX = re.compile(r"^(0x)?[0-9a-f.]*[0-9a-f][0-9a-f.]*$")  # at least one hex digit
_ONES = 0x1111111111111111  # bit 0 of every nibble of one word
_ALL = 0xFFFFFFFFFFFFFFFF


def _flag_table(era: str):
    try:
        return ERAS[era]
    except KeyError:
        raise InputError(f"unknown flag era {era!r}; known eras are {', '.join(ERAS)}") from None


@dataclass(frozen=True)
class Alternative:
    """One ``,``-separated part of a pattern, as masks over the 32 history slots.

    A code matches when ``code & mask == value`` (both as 128-bit integers) and every
    nibble in ``any_mask`` is non-zero. ``steps`` is the number of slots it names,
    ``continuation`` whether later steps may follow.
    """

    text: str
    steps: int
    continuation: bool
    value: int
    mask: int
    any_mask: int
    marked_slot: int | None = None

    def matches(self, code: int) -> bool:
        """Match one Python-int code (used by tests and for single codes)."""
        code = int(code)
        if code & self.mask != self.value:
            return False
        return all((code >> (4 * k)) & 0xF for k in range(MAX_PATTERN_STEPS) if (self.any_mask >> (4 * k)) & 0xF)


def _alternative(slots: list[int | None], continuation: bool, text: str, marked=None) -> Alternative:
    """``slots``: nibble per step, first step first; None = any step."""
    if not slots:
        raise InputError(f"history pattern {text!r} names no step")
    if len(slots) > MAX_PATTERN_STEPS:
        raise InputError(f"history pattern {text!r} has {len(slots)} steps; histories hold at most "
                         f"{MAX_PATTERN_STEPS}")
    value = mask = any_mask = 0
    for k, nib in enumerate(slots):
        if nib is None:
            any_mask |= 0xF << (4 * k)
        else:
            value |= nib << (4 * k)
            mask |= 0xF << (4 * k)
    if not continuation:  # every slot after the last named one must be empty
        mask |= ((1 << (4 * MAX_PATTERN_STEPS)) - 1) & ~((1 << (4 * len(slots))) - 1)
    return Alternative(text, len(slots), continuation, value, mask, any_mask, marked)


def _parse_hex(text: str) -> Alternative:
    body = text[2:] if text.startswith("0x") else text
    continuation = body.startswith(".")
    if continuation:
        body = body[1:]
    slots = [None if ch == "." else int(ch, 16) for ch in reversed(body)]
    return _alternative(slots, continuation, text)


def _parse_label(text: str, table) -> Alternative:
    tokens = text.split()
    continuation = bool(tokens) and tokens[-1] == ".."
    if continuation:
        tokens = tokens[:-1]
    slots: list[int | None] = []
    marked = None
    for k, tok in enumerate(tokens):
        if tok.startswith("[") and tok.endswith("]") and len(tok) > 2:
            if marked is not None:
                raise InputError(f"history pattern {text!r}: only one slot may be marked with [..]")
            marked, tok = k, tok[1:-1]
        if tok == "..":
            raise InputError(f"history pattern {text!r}: '..' (any continuation) may only end a pattern")
        if tok == ".":
            slots.append(None)
            continue
        nib = table.nibble.get(tok.upper())
        if nib is None:
            raise InputError(f"history pattern {text!r}: unknown step {tok!r}; known steps "
                             f"({table.era} flags) are {' '.join(table.nibble)}, '.' for any step, "
                             "and a final '..' for any continuation")
        slots.append(nib)
    return _alternative(slots, continuation, text, marked)


def _words(value: int) -> tuple[np.uint64, np.uint64]:
    return np.uint64(value & _ALL), np.uint64(value >> 64)


def _nonzero_nibbles(x: np.ndarray) -> np.ndarray:
    """Bit 4k of the result is set where nibble k of ``x`` is non-zero."""
    y = x | (x >> np.uint64(1)) | (x >> np.uint64(2)) | (x >> np.uint64(3))
    return y & np.uint64(_ONES)


class HistoryPattern:
    """A parsed history pattern: one or more :class:`Alternative`, any of which matches.

    ``match(codes)`` takes distinct codes (uint64 (G,), or (G, 2) uint64 lo/hi pairs for
    128-bit histories) and returns a bool array; the cost is O(G x alternatives).
    """

    def __init__(self, text: str, alternatives: tuple[Alternative, ...], era: str):
        self.text, self.alternatives, self.era = text, alternatives, era

    def __repr__(self):
        return f"HistoryPattern({self.text!r}, era={self.era!r})"

    def __str__(self):
        return self.text

    @property
    def marked_slot(self) -> int | None:
        """The slot marked with ``[..]`` in the first alternative that marks one."""
        return next((a.marked_slot for a in self.alternatives if a.marked_slot is not None), None)

    @property
    def max_steps(self) -> int:
        return max(a.steps for a in self.alternatives)

    def match(self, codes) -> np.ndarray:
        """Which of ``codes`` match: (G,) uint64 (64-bit histories) or (G, 2) uint64 (lo, hi)."""
        codes = np.asarray(codes)
        if codes.ndim == 2 and codes.shape[1] == 2:
            return self.match128(codes[:, 0], codes[:, 1])
        if codes.dtype != np.uint64:
            if codes.size and (codes.dtype.kind not in "ui" or codes.min() < 0):
                raise InputError(f"history codes must be unsigned 64-bit integers, got {codes.dtype}")
            codes = codes.astype(np.uint64)
        return self.match128(codes, None)

    def match128(self, lo, hi=None) -> np.ndarray:
        """Match 128-bit codes given as two uint64 arrays (``hi=None``: all upper words zero)."""
        lo = np.asarray(lo, dtype=np.uint64)
        out = np.zeros(lo.shape, dtype=bool)
        hi = None if hi is None else np.asarray(hi, dtype=np.uint64)
        nz_lo = nz_hi = None
        for alt in self.alternatives:
            v_lo, v_hi = _words(alt.value)
            m_lo, m_hi = _words(alt.mask)
            a_lo, a_hi = _words(alt.any_mask)
            if hi is None and (v_hi or a_hi):
                continue  # needs steps beyond slot 15: no 64-bit code has them
            ok = (lo & m_lo) == v_lo
            if hi is not None:
                ok &= (hi & m_hi) == v_hi
            if a_lo:
                nz_lo = _nonzero_nibbles(lo) if nz_lo is None else nz_lo
                want = a_lo & np.uint64(_ONES)
                ok &= (nz_lo & want) == want
            if a_hi:
                nz_hi = _nonzero_nibbles(hi) if nz_hi is None else nz_hi
                want = a_hi & np.uint64(_ONES)
                ok &= (nz_hi & want) == want
            out |= ok
        return out

    def matching(self, codes) -> np.ndarray:
        """The codes that match (same form as given)."""
        codes = np.asarray(codes)
        return codes[self.match(codes)]


def parse_pattern(text: str | HistoryPattern, era: str = LEGACY_ERA) -> HistoryPattern:
    """Parse a history pattern (module docstring) with the flag labels of ``era``.

    Raises :class:`InputError` naming the bad part. A :class:`HistoryPattern` is
    returned as it is.
    """
    if isinstance(text, HistoryPattern):
        return text
    if not isinstance(text, str):
        raise InputError(f"history pattern must be text, got {type(text).__name__}")
    table = _flag_table(era)
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise InputError(f"history pattern {text!r}: empty pattern (patterns are joined by ',')")
    alternatives = []
    for part in parts:
        if " " not in part and _HEX.match(part):
            alternatives.append(_parse_hex(part))
        else:
            alternatives.append(_parse_label(part, table))
    return HistoryPattern(text, tuple(alternatives), era)


def parse_migration(text: str, era: str = LEGACY_ERA) -> tuple[HistoryPattern, HistoryPattern]:
    """``"A-PATTERN -> B-PATTERN"`` -> the two patterns (either side may be ``*`` = any)."""
    if not isinstance(text, str) or text.count("->") != 1:
        raise InputError(f"migration {text!r}: expected 'A-PATTERN -> B-PATTERN', e.g. "
                         "'TO BT BT SA -> TO BT BR BT SA'")
    a, b = (s.strip() for s in text.split("->"))
    return tuple(ANY if s == "*" else parse_pattern(s, era) for s in (a, b))


class _AnyHistory(HistoryPattern):
    """Matches every code (``*`` in a migration)."""

    def __init__(self):
        super().__init__("*", (), LEGACY_ERA)

    def match128(self, lo, hi=None):
        return np.ones(np.shape(lo), dtype=bool)

    @property
    def max_steps(self):
        return MAX_PATTERN_STEPS


#: the pattern that matches any history
ANY = _AnyHistory()


# ---------------------------------------------------------------- labels by era


def history_label(code, era: str = LEGACY_ERA) -> str:
    """Label of one code (a Python int of up to 128 bits, or a (lo, hi) pair) in the
    flag labels of ``era``; an unknown nibble shows as ``?N``."""
    if isinstance(code, (tuple, list, np.ndarray)) and np.size(code) == 2:
        code = int(code[0]) | (int(code[1]) << 64)
    code = int(code)
    abbr = _flag_table(era).abbr
    out = []
    while code:
        nib = code & 0xF
        out.append(abbr.get(nib, f"?{nib:x}"))
        code >>= 4
    return " ".join(out)


def history_labels(codes, era: str = LEGACY_ERA) -> list[str]:
    """Labels of distinct codes ((G,) uint64 or (G, 2) lo/hi)."""
    codes = np.asarray(codes)
    if codes.ndim == 2:
        return [history_label((int(lo), int(hi)), era) for lo, hi in codes]
    return [history_label(int(c), era) for c in codes]


# ---------------------------------------------------------------- selecting photons

#: photons per kernel call when streaming a selection
SELECT_CHUNK = 1 << 22


def distinct_codes(*seqs, chunk: int = SELECT_CHUNK, n_threads=None) -> np.ndarray:
    """The distinct codes of one or two seqhis (or seqmat) columns, ascending: one
    compiled counting pass (memory O(distinct codes)). Give the history table's codes
    instead when they are at hand."""
    from .engines.compiled import import_cyext
    cyext = import_cyext()
    if not 1 <= len(seqs) <= 2:
        raise ValueError("distinct_codes takes one or two code columns")
    sa = seqs[0]
    sb = seqs[1] if len(seqs) == 2 else seqs[0]
    counter = cyext.HistoryCounter()
    for start in range(0, len(sa), chunk):
        counter.add(sa, sb, start, min(start + chunk, len(sa)), n_threads)
    return np.sort(counter.result()[0])


def _index_of(pattern, codes, cyext):
    if pattern is None or pattern is ANY:
        return None
    return cyext.GroupIndex(np.unique(np.asarray(codes, np.uint64)[pattern.match(codes)]))


def iter_selected(seq_a, pattern_a=None, seq_b=None, pattern_b=None, *, migrated: int = 0, codes=None,
                  era: str = LEGACY_ERA, start: int = 0, stop: int | None = None,
                  chunk: int = SELECT_CHUNK, n_threads=None):
    """Yield, chunk by chunk, the indices (int64, ascending) of the photons selected by
    history patterns: A code matching ``pattern_a`` (None = any), and when ``seq_b`` is
    given B code matching ``pattern_b`` and ``migrated`` (1 = A != B, -1 = A == B, 0 = any).

    The patterns are matched once on ``codes``, the distinct codes of the columns
    (found with :func:`distinct_codes` when not given), and the photons are then marked
    by a compiled kernel (``cyext.select_photons``, no Python loop per photon), so
    memory is one chunk's byte mask.
    """
    from .engines.compiled import import_cyext
    cyext = import_cyext()
    pa = None if pattern_a is None else parse_pattern(pattern_a, era)
    pb = None if pattern_b is None else parse_pattern(pattern_b, era)
    n = len(seq_a)
    stop = n if stop is None else stop
    if codes is None and (pa not in (None, ANY) or pb not in (None, ANY)):
        codes = distinct_codes(*((seq_a,) if seq_b is None else (seq_a, seq_b)), n_threads=n_threads)
    ga, gb = _index_of(pa, codes, cyext), _index_of(pb, codes, cyext)
    mask = np.zeros(min(chunk, max(stop - start, 0)), dtype=np.uint8)
    for s in range(start, stop, chunk):
        e = min(s + chunk, stop)
        cyext.select_photons(mask, seq_a, ga, seq_b, gb, migrated, s, e, n_threads)
        yield np.flatnonzero(mask[:e - s]).astype(np.int64) + s


def select_indices(seq_a, pattern_a=None, seq_b=None, pattern_b=None, *, limit: int | None = None, **kw):
    """(indices of the first ``limit`` selected photons, number selected in all): see
    :func:`iter_selected` for the arguments."""
    kept, found = [], 0
    for idx in iter_selected(seq_a, pattern_a, seq_b, pattern_b, **kw):
        found += len(idx)
        room = None if limit is None else limit - sum(len(k) for k in kept)
        if room is None or room > 0:
            kept.append(idx if room is None else idx[:room])
    return (np.concatenate(kept) if kept else np.zeros(0, np.int64)), found
