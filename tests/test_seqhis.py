import numpy as np
import pytest
from hypothesis import given, strategies as st

from photonab import InputError, seqhis


@pytest.mark.parametrize("label, code", [("TO BT BT SA", 0x8ccd), ("TO BR SA", 2237), ("TO BT AB", 1229)])
def test_contract_checks(label, code):
    assert seqhis.code(label) == code
    assert seqhis.label(code) == label
    assert seqhis.nstep(code) == len(label.split())


def test_flag_table():
    assert seqhis.NIBBLE["CK"] == 1 and seqhis.NIBBLE["TO"] == 0xD and seqhis.NIBBLE["EX"] == 0xF
    assert seqhis.FLAG_BIT["BOUNDARY_TRANSMIT"] == 1 << 11
    assert len(seqhis.FLAGS) == 15


@given(st.lists(st.sampled_from(sorted(seqhis.NIBBLE)), min_size=1, max_size=16))
def test_label_round_trip(tokens):
    label = " ".join(tokens)
    code = seqhis.code(label)
    assert seqhis.label(code) == label
    assert seqhis.nstep(code) == len(tokens)
    assert seqhis.nstep_array(np.array([code], np.uint64))[0] == len(tokens)


def test_unknown_token_is_an_input_error():
    with pytest.raises(InputError, match="unknown step 'XX'"):
        seqhis.code("TO XX SA")


def test_too_many_steps():
    with pytest.raises(InputError, match="at most 16"):
        seqhis.code(" ".join(["BT"] * 17))


def test_labels_contain():
    codes = [seqhis.code("TO BT BT SA"), seqhis.code("TO SC BT SA"), seqhis.code("TO BT AB")]
    assert list(seqhis.labels_contain(codes, ["SC", "AB"])) == [False, True, True]
