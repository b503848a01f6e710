import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from photonab import InputError
from photonab.flags import ERAS, LEGACY_ERA
from photonab.patterns import (ANY, history_label, history_labels, iter_selected, parse_migration,
                               parse_pattern, select_indices)

LEGACY = ERAS[LEGACY_ERA]


def code_of(nibbles):
    return sum(n << (4 * k) for k, n in enumerate(nibbles))


def nibbles_of(code):
    out = []
    while code:
        out.append(code & 0xF)
        code >>= 4
    return out


def brute_match(text, code, table=LEGACY):
    """Per-code reference: compare the code's step list with each alternative's tokens."""
    steps = nibbles_of(int(code))
    for part in text.split(","):
        part = part.strip()
        body = part.removeprefix("0x")
        if " " not in part and all(c in "0123456789abcdef." for c in body) and body.strip("."):
            body = part.removeprefix("0x")
            cont = body.startswith(".")
            want = [None if c == "." else int(c, 16) for c in reversed(body[1:] if cont else body)]
        else:
            toks = part.split()
            cont = toks[-1] == ".."
            toks = toks[:-1] if cont else toks
            want = [None if t == "." else table.nibble[t.strip("[]").upper()] for t in toks]
        padded = steps + [0] * max(0, len(want) - len(steps))
        if not cont and any(padded[len(want):]):
            continue
        if all((w is None and p != 0) or (w is not None and p == w) for w, p in zip(want, padded)):
            return True
    return False


CODES = np.array([0x8ccd, 0x6ccd, 0x86ccd, 0x8cbd, 0x8bcd, 0xccd, 0x4cd, 0x8bd, 0xd, 0], np.uint64)


@pytest.mark.parametrize("text, expect", [
    ("TO BT BT SA", [0x8ccd]),
    ("TO BT BT SC ..", [0x6ccd, 0x86ccd]),
    (".6ccd", [0x6ccd, 0x86ccd]),  # the original's leading '.' = any continuation
    ("6ccd", [0x6ccd]),
    ("0x8ccd", [0x8ccd]),
    ("8.cd", [0x8ccd, 0x8bcd]),  # '.' inside the hex = one step of any kind
    ("TO . . SA", [0x8ccd, 0x8cbd, 0x8bcd]),
    ("TO BT ..", [0x8ccd, 0x6ccd, 0x86ccd, 0x8bcd, 0xccd, 0x4cd]),
    ("TO BR SA, TO BT AB", [0x4cd, 0x8bd]),
    ("to bt bt sa", [0x8ccd]),  # labels are case-insensitive
    ("TO [BT] BT SA", [0x8ccd]),
    ("TO ..", [c for c in CODES.tolist() if c & 0xF == 0xD]),
])
def test_forms(text, expect):
    pat = parse_pattern(text)
    assert CODES[pat.match(CODES)].tolist() == expect
    assert [c for c in CODES.tolist() if brute_match(text, c)] == expect


def test_marked_slot_and_steps():
    assert parse_pattern("TO [BT] BT SA").marked_slot == 1
    assert parse_pattern("TO BT").marked_slot is None
    assert parse_pattern("TO BT, TO BT BT SA ..").max_steps == 4


@pytest.mark.parametrize("bad, words", [
    ("", "empty"), ("TO BT,", "empty"), (" , ", "empty"), ("TO XX SA", "unknown step 'XX'"),
    ("TO .. SA", "may only end"), ("..", "no step"), ("TO [BT] [BT]", "only one slot"),
    (" ".join(["BT"] * 33), "at most 32"), ("." + "c" * 33, "at most 32"),
])
def test_bad_patterns_are_input_errors(bad, words):
    with pytest.raises(InputError, match=words):
        parse_pattern(bad)


def test_unknown_era():
    with pytest.raises(InputError, match="unknown flag era"):
        parse_pattern("TO SA", era="1999")


def test_labels_by_era():
    # nibble f: G4GUN "GN" in 2019, "_N" in Oct 2020, EFFICIENCY_CULL "EX" from Dec 2020
    assert history_label(0xf8d, "2019") == "TO SA GN"
    assert history_label(0xf8d, "2020-10") == "TO SA _N"
    assert history_label(0xf8d, "2020-12") == "TO SA EX"
    assert parse_pattern("TO SA GN").match(np.array([0xf8d], np.uint64)).all()
    with pytest.raises(InputError):
        parse_pattern("TO SA EX")  # not a 2019 step
    # 2025-06: TORCH is bit 2 (nibble 3)
    assert parse_pattern("TO BT SD", era="2025-06").match(np.array([0x7c3], np.uint64)).all()
    assert history_labels(np.array([[0x8ccd, 0], [0xcccccccccccccccd, 0x8]], np.uint64)) == [
        "TO BT BT SA", "TO" + " BT" * 15 + " SA"]
    assert history_label(0x80d) == "TO ?0 SA"  # an empty slot inside a history shows as such


def test_128_bit_codes():
    # 20 steps: 19 x BT then SA; slots 16.. in the high word
    steps = [0xD] + [0xC] * 18 + [0x8]
    code = code_of(steps)
    lo, hi = code & (2**64 - 1), code >> 64
    pairs = np.array([[lo, hi], [lo, 0], [0x8ccd, 0]], np.uint64)
    label = " ".join(LEGACY.abbr[n] for n in steps)
    assert parse_pattern(label).match(pairs).tolist() == [True, False, False]
    assert parse_pattern("TO BT ..").match(pairs).tolist() == [True, True, True]
    assert parse_pattern(f"{code:x}").match(pairs).tolist() == [True, False, False]
    assert parse_pattern("8" + "." * 18 + "d").match(pairs).tolist() == [True, False, False]
    # a 64-bit column never matches a pattern longer than 16 steps
    assert not parse_pattern(label).match(pairs[:, 0]).any()
    assert history_label((lo, hi)) == label


def test_migration_text():
    a, b = parse_migration("TO BT BT SA -> TO BT BR BT SA")
    assert a.match(np.array([0x8ccd], np.uint64)).all() and b.match(np.array([0x8cbcd], np.uint64)).all()
    assert parse_migration("* -> TO ..")[0] is ANY
    for bad in ("TO BT", "A -> B -> C"):
        with pytest.raises(InputError, match="A-PATTERN -> B-PATTERN"):
            parse_migration(bad)


# ---------------------------------------------------------------- hypothesis vs brute force

TOKENS = sorted(LEGACY.nibble)
nibble_lists = st.lists(st.integers(1, 15), min_size=1, max_size=32)


def _label_part(draw, steps):
    toks = [LEGACY.abbr[n] if draw(st.integers(0, 5)) else "." for n in steps]
    return " ".join(toks) + (" .." if draw(st.booleans()) else "")


def _hex_part(draw, steps):
    digits = "".join(f"{n:x}" if draw(st.integers(0, 5)) else "." for n in reversed(steps))
    if not digits.strip("."):
        return _label_part(draw, steps)  # all wildcards: hex needs a digit
    return ("." if draw(st.booleans()) else "") + digits


@st.composite
def patterns_and_codes(draw):
    pool = draw(st.lists(nibble_lists, min_size=1, max_size=6))
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        base = draw(st.sampled_from(pool))
        base = base[:draw(st.integers(1, len(base)))]
        parts.append((_label_part if draw(st.booleans()) else _hex_part)(draw, base))
    # codes: the pool, their prefixes and extensions, and random ones
    codes = [code_of(p) for p in pool] + [code_of(p[:-1]) for p in pool if len(p) > 1]
    codes += [code_of(p + [draw(st.integers(1, 15))]) for p in pool if len(p) < 32]
    codes += draw(st.lists(nibble_lists.map(code_of), max_size=5))
    return ", ".join(parts), sorted(set(codes))


@settings(max_examples=200, deadline=None)
@given(patterns_and_codes())
def test_match_equals_brute_force(case):
    text, codes = case
    pat = parse_pattern(text)
    pairs = np.array([[c & (2**64 - 1), c >> 64] for c in codes], np.uint64)
    want = [brute_match(text, c) for c in codes]
    assert pat.match(pairs).tolist() == want
    assert [alt_any for alt_any in (any(a.matches(c) for a in pat.alternatives) for c in codes)] == want
    short = [i for i, c in enumerate(codes) if c < 2**64]
    if short:
        lo = np.array([codes[i] for i in short], np.uint64)
        assert pat.match(lo).tolist() == [want[i] for i in short]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=16))
def test_label_hex_agree(tokens):
    code = code_of([LEGACY.nibble[t] for t in tokens])
    codes = np.array([code, code | (0x6 << (4 * len(tokens))) if len(tokens) < 16 else code], np.uint64)
    label = " ".join(tokens)
    assert history_label(code) == label
    assert parse_pattern(label).match(codes).tolist() == parse_pattern(f"{code:x}").match(codes).tolist()
    assert parse_pattern(label + " ..").match(codes).tolist() == parse_pattern(f".{code:x}").match(codes).tolist()


# ---------------------------------------------------------------- selecting photons


def test_select_photons_against_isin(cyext):
    rng = np.random.default_rng(3)
    pool = np.array([0x8ccd, 0x6ccd, 0x86ccd, 0x8cbd, 0x4cd, 0x8bd], np.uint64)
    n = 50_000
    ph = np.zeros((n, 1, 2), np.uint64)
    ph[:, 0, 0] = pool[rng.integers(0, len(pool), n)]
    seq_b = np.where(rng.random(n) < 0.7, ph[:, 0, 0], pool[rng.integers(0, len(pool), n)])
    seq_a = ph[:, 0, 0]  # strided view
    pat = parse_pattern("TO BT ..")
    want = pool[pat.match(pool)]
    idx, found = select_indices(seq_a, pat, chunk=7_000)
    assert np.array_equal(idx, np.flatnonzero(np.isin(seq_a, want))) and found == len(idx)
    idx, found = select_indices(seq_a, "TO BT BT SA", seq_b, "TO BT ..", migrated=1, limit=10, chunk=4096)
    ref = np.flatnonzero((seq_a == 0x8ccd) & np.isin(seq_b, want) & (seq_a != seq_b))
    assert found == len(ref) and np.array_equal(idx, ref[:10])
    aligned = np.concatenate(list(iter_selected(seq_a, None, seq_b, None, migrated=-1, chunk=10_000)))
    assert np.array_equal(aligned, np.flatnonzero(seq_a == seq_b))
    # a pattern matching no history selects nothing
    assert select_indices(seq_a, "CK SI")[1] == 0


def test_select_photons_kernel_threads(cyext):
    from threadpoolctl import threadpool_limits  # noqa: F401  (kernels take n_threads)
    rng = np.random.default_rng(5)
    seq = rng.integers(0, 50, 100_000).astype(np.uint64)
    index = cyext.GroupIndex(np.arange(0, 50, 3, dtype=np.uint64))
    outs = []
    for t in (1, 2, 3):
        out = np.zeros(len(seq), np.uint8)
        cyext.select_photons(out, seq, index, n_threads=t)
        outs.append(out)
    assert all(np.array_equal(outs[0], o) for o in outs)
    assert np.array_equal(outs[0].astype(bool), seq % 3 == 0)
    with pytest.raises(ValueError, match="bytes"):
        cyext.select_photons(np.zeros(3, np.uint8), seq, index)
