import numpy as np
import pytest
from hypothesis import given, strategies as st

from photonab import InputError, seqhis
from photonab.flags import CURRENT_ERA, ERAS, LEGACY_ERA


@pytest.mark.parametrize("label, code", [("TO BT BT SA", 0x8ccd), ("TO BR SA", 2237), ("TO BT AB", 1229)])
def test_contract_checks(label, code):
    assert seqhis.code(label) == code
    assert seqhis.label(code) == label
    assert seqhis.nstep(code) == len(label.split())


def test_flag_table():
    assert seqhis.NIBBLE["CK"] == 1 and seqhis.NIBBLE["TO"] == 0xD and seqhis.NIBBLE["GN"] == 0xF
    assert seqhis.FLAG_BIT["BOUNDARY_TRANSMIT"] == 1 << 11
    assert seqhis.FLAG_BIT["G4GUN"] == 1 << 14
    assert len(seqhis.FLAGS) == 15


def test_nibble_f_is_gn_in_the_2019_layout():
    """Nibble f meant G4GUN in 2019; EFFICIENCY_CULL ("EX") took it only in 2020-12."""
    assert seqhis.label(0xfcd) == "TO BT GN"
    assert seqhis.code("TO BT GN") == 0xfcd
    with pytest.raises(InputError, match="unknown step 'EX' in the 2019 flags"):
        seqhis.code("TO BT EX")
    assert seqhis.label(0xfcd, "2020-10") == "TO BT _N"
    assert seqhis.label(0xfcd, "2020-12") == "TO BT EX"
    assert seqhis.code("TO BT EX", "2020-12") == 0xfcd


def test_labels_by_era():
    # the same label has different codes before and after 2025-06
    assert seqhis.code("TO BT SD", "2020-12") == 0x7cd
    assert seqhis.code("TO BT SD", "2025-06") == 0x7c3
    assert seqhis.label(0x7c3, "2025-06") == "TO BT SD"
    assert seqhis.label(0x7c3, "2020-12") == "MI BT SD"
    assert seqhis.label(0xed3, "2025-06") == "TO NA EC"


def test_unknown_era():
    with pytest.raises(InputError, match="unknown flag era '1999'.*2019"):
        seqhis.label(1, "1999")


@given(st.lists(st.sampled_from(sorted(seqhis.NIBBLE)), min_size=1, max_size=16))
def test_label_round_trip(tokens):
    label = " ".join(tokens)
    code = seqhis.code(label)
    assert seqhis.label(code) == label
    assert seqhis.nstep(code) == len(tokens)
    assert seqhis.nstep_array(np.array([code], np.uint64))[0] == len(tokens)


@given(st.sampled_from(sorted(ERAS)), st.data())
def test_label2_round_trip(era, data):
    tokens = data.draw(st.lists(st.sampled_from(sorted(ERAS[era].nibble)), min_size=1, max_size=32))
    label = " ".join(tokens)
    lo, hi = seqhis.code2(label, era)
    assert 0 <= lo < 2 ** 64 and 0 <= hi < 2 ** 64
    assert (hi == 0) == (len(tokens) <= 16)
    assert seqhis.label2(lo, hi, era) == label
    assert seqhis.nstep2(lo, hi) == len(tokens)
    n = seqhis.nstep2_array(np.array([lo], np.uint64), np.array([hi], np.uint64))
    assert n[0] == len(tokens)
    assert int(seqhis.hex128(lo, hi, strip=False), 16) == seqhis.join2(lo, hi)


def test_code2_words_and_hex():
    # the example of docs/sevt.md: 25 points, TO first, SA last (2020-12 flags)
    lo, hi = 0xccac9cccccbccccd, 0x8cacccccc
    label = seqhis.label2(lo, hi, "2020-12")
    assert label.startswith("TO BT") and label.endswith("SA") and len(label.split()) == 25
    assert seqhis.code2(label, "2020-12") == (lo, hi)
    assert seqhis.hex128(lo, hi) == "8cacccccc" + "ccac9cccccbccccd"
    assert seqhis.hex128(lo, hi, strip=False) == "00000008cacccccc" + "ccac9cccccbccccd"
    assert seqhis.hex128(0, 0) == "0" and len(seqhis.hex128(0, 0, strip=False)) == 32
    assert seqhis.label2(0x3, 0x8, CURRENT_ERA) == "TO " + " ".join(["?0"] * 15) + " SA"


def test_nstep2_array():
    lo = np.array([0, 0x3, 0xcccccccccccccccc, 0], np.uint64)
    hi = np.array([0, 0, 0x8, 0x8], np.uint64)
    assert list(seqhis.nstep2_array(lo, hi)) == [0, 1, 17, 17]


def test_unknown_token_is_an_input_error():
    with pytest.raises(InputError, match="unknown step 'XX'"):
        seqhis.code("TO XX SA")


def test_too_many_steps():
    with pytest.raises(InputError, match="at most 16"):
        seqhis.code(" ".join(["BT"] * 17))
    with pytest.raises(InputError, match="at most 32"):
        seqhis.code2(" ".join(["BT"] * 33))


def test_labels_contain():
    codes = [seqhis.code("TO BT BT SA"), seqhis.code("TO SC BT SA"), seqhis.code("TO BT AB")]
    assert list(seqhis.labels_contain(codes, ["SC", "AB"])) == [False, True, True]


@pytest.mark.parametrize("era", sorted(ERAS))
def test_label_sort_rank_is_byte_order(era):
    rank = seqhis.label_sort_rank(era)
    tokens = [b"   "] + [(ERAS[era].abbr[n] + " ").encode() for n in range(1, 16)]
    assert sorted(range(16), key=lambda n: tokens[n]) == list(np.argsort(rank))
    assert rank[0] == 0 and LEGACY_ERA in ERAS


@given(st.lists(st.integers(0, 2**64 - 1), max_size=60), st.sampled_from(sorted(ERAS)))
def test_labels_are_label_of_each_code(codes, era):
    """The vectorised labels equal label() code by code: empty slots inside (?0), code 0, every era."""
    codes = codes + [0, 1, 0x8ccd, 0x10d, 2**64 - 1]
    assert seqhis.labels(np.array(codes, np.uint64), era) == [seqhis.label(c, era) for c in codes]


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=40),
       st.sampled_from(sorted(ERAS)))
def test_labels_of_two_words_are_label2(pairs, era):
    pairs = pairs + [(0, 0), (0x3, 0), (0x3, 0x5), (2**64 - 1, 0x1)]
    lo, hi = (np.array(w, np.uint64) for w in zip(*pairs))
    assert seqhis.labels(lo, era, hi=hi) == [seqhis.label2(a, b, era) for a, b in pairs]


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**20)), max_size=30),
       st.lists(st.sampled_from(["SC", "AB", "TO", "?0", "BT", "sc", "XX", "SA"]), min_size=1, max_size=3),
       st.sampled_from(sorted(ERAS)), st.booleans())
def test_labels_share_is_the_label_token_test(pairs, tokens, era, two_words):
    pairs = pairs + [(0, 0), (0x3, 0), (0x3, 0x5), (0x103, 0)]
    lo, hi = (np.array(w, np.uint64) for w in zip(*pairs))
    got = seqhis.labels_share(lo, tokens, era, hi=hi if two_words else None)
    labels = seqhis.labels(lo, era, hi=hi if two_words else None)
    assert got.tolist() == [bool(set(tokens) & set(label.split())) for label in labels]


def test_labels_edge_arguments():
    """Two-word labels default to label2's era; labels_share takes a string of tokens and
    refuses second words of another length; float_texts writes null at exactly the bad cells."""
    from photonab.render.json import float_texts
    assert seqhis.labels([3], hi=[0]) == [seqhis.label2(3, 0)]
    assert seqhis.labels_share([0x3], "TO SC", hi=[0]).tolist() == [True]
    with pytest.raises(ValueError, match="1 codes but 2 second words"):
        seqhis.labels_share([3], ["TO"], hi=[0, 0])
    assert float_texts(np.array([[0, 1, np.nan], [np.inf, 3, -0.0]])) == ["0.0", "1.0", "null", "null", "3.0", "-0.0"]
