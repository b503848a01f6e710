"""Event folders: memory-mapped loading, --msli, decoders and every bad input."""
import numpy as np
import pytest

from conftest import FDOM, random_pair, write_event
from photonab import Event, EventPair, InputError, parse_msli


@pytest.fixture
def pair_dirs(tmp_path):
    return random_pair(tmp_path, 500, seed=3)


@pytest.mark.parametrize("spec, expect", [
    ("0:100k", slice(0, 100000, None)), (":1M", slice(None, 1000000, None)), ("::10", slice(None, None, 10)),
    ("", slice(None)), ("5k:2M:3", slice(5000, 2000000, 3)), ("100", slice(None, 100, None)),
])
def test_parse_msli(spec, expect):
    assert parse_msli(spec) == expect


@pytest.mark.parametrize("spec, words", [("1x:2", "not a count"), ("1:2:3:4", "start:stop"), ("::0", "positive")])
def test_parse_msli_errors(spec, words):
    with pytest.raises(InputError, match=words):
        parse_msli(spec)


def test_event_is_memory_mapped_and_sliced(pair_dirs):
    a = Event(pair_dirs[0], "10:300:7")
    assert isinstance(a.rx, np.memmap) and isinstance(a.ox, np.memmap) and isinstance(a.ph, np.memmap)
    full = np.load(pair_dirs[0] / "rx.npy")
    assert np.array_equal(a.rx, full[10:300:7])
    assert a.n == len(range(10, 300, 7)) and a.n_total == 500
    assert a.fdom.shape == (3, 1, 4)


def test_decoders_follow_the_contract(tmp_path):
    rx = np.zeros((2, 3, 2, 4), np.int16)
    rx[0, 0, 0] = [32767, -32767, 0, 16384]
    pol = np.zeros((2, 3, 8), np.uint8)
    pol[0, 0, :4] = [0, 127, 254, 255]
    rx[:, :, 1, :] = pol.view(np.int16).reshape(2, 3, 4)
    ph = np.zeros((2, 1, 2), np.uint64)
    ev = Event(write_event(tmp_path / "e", np.zeros((2, 4, 4), np.float32), rx, ph))
    p = ev.positions(slice(0, 1))
    assert p.dtype == np.float32
    assert np.allclose(p[0, 0], [748, -748, 0])
    assert np.isclose(ev.times(slice(0, 1))[0, 0], 16384 * 20 / 32767, rtol=1e-6)
    assert np.allclose(ev.polarizations(slice(0, 1))[0, 0], [-1, 0, 1])
    assert np.isclose(ev.wavelengths(slice(0, 1))[0, 0], 820)


def test_eps_check_value(pair_dirs):
    d = Event(pair_dirs[0]).domains
    assert round(d.eps_pos, 7) == 0.0228275  # extent 748, the contract's check


def test_pair_by_tag(tmp_path):
    random_pair(tmp_path, 20, root=tmp_path / "base" / "p" / "evt" / "box" / "torch")
    pair = EventPair.from_tag(tmp_path / "base", "p", "box", "torch", 1)
    assert pair.a.path.name == "1" and pair.b.path.name == "-1" and pair.n == 20


# ---------------------------------------------------------------- bad input


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="event folder does not exist"):
        Event(tmp_path / "nope")


@pytest.mark.parametrize("name", ["ox", "rx", "ph", "fdom", "idom"])
def test_missing_required_file(pair_dirs, name):
    (pair_dirs[0] / f"{name}.npy").unlink()
    with pytest.raises(InputError, match=f"{name}.npy: missing file"):
        Event(pair_dirs[0])


def test_wrong_dtype(pair_dirs):
    rx = np.load(pair_dirs[0] / "rx.npy")
    np.save(pair_dirs[0] / "rx.npy", rx.astype(np.int32))
    with pytest.raises(InputError, match=r"rx.npy: dtype <i4 but expected <i2"):
        Event(pair_dirs[0])


def test_wrong_shape(pair_dirs):
    ox = np.load(pair_dirs[0] / "ox.npy")
    np.save(pair_dirs[0] / "ox.npy", ox[:, :3, :])
    with pytest.raises(InputError, match=r"ox.npy: shape \(500, 3, 4\) but expected \(N, 4, 4\)"):
        Event(pair_dirs[0])


def test_maxrec_disagrees_with_records(pair_dirs):
    np.save(pair_dirs[0] / "idom.npy", np.array([[[0, 0, 8, 9]]], np.int32))
    with pytest.raises(InputError, match=r"rx.npy: shape .* but expected \(N, 9, 2, 4\)"):
        Event(pair_dirs[0])


def test_photon_count_differs_within_event(pair_dirs):
    ox = np.load(pair_dirs[0] / "ox.npy")
    np.save(pair_dirs[0] / "ox.npy", ox[:-1])
    with pytest.raises(InputError, match="ox.npy: 499 photons but ph.npy has 500"):
        Event(pair_dirs[0])


def test_truncated_file(pair_dirs):
    path = pair_dirs[0] / "rx.npy"
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(InputError, match="rx.npy: truncated"):
        Event(pair_dirs[0])


def test_corrupt_file(pair_dirs):
    (pair_dirs[0] / "ph.npy").write_bytes(b"this is not numpy")
    with pytest.raises(InputError, match="ph.npy: not a valid .npy file"):
        Event(pair_dirs[0])


def test_fortran_ordered(pair_dirs):
    ox = np.load(pair_dirs[0] / "ox.npy")
    np.save(pair_dirs[0] / "ox.npy", np.asfortranarray(ox))
    with pytest.raises(InputError, match="ox.npy: array is Fortran-ordered"):
        Event(pair_dirs[0])


def test_bad_domain(pair_dirs):
    fdom = FDOM.copy()
    fdom[0, 0, 3] = 0
    np.save(pair_dirs[0] / "fdom.npy", fdom)
    with pytest.raises(InputError, match=r"fdom.npy: extent .* must be finite and > 0"):
        Event(pair_dirs[0])


def test_pair_photon_count_differs(tmp_path):
    a, _ = random_pair(tmp_path / "x", 50)
    _, b = random_pair(tmp_path / "y", 60)
    with pytest.raises(InputError, match="differ in photon count"):
        EventPair.open(a, b)


def test_pair_maxrec_differs(tmp_path):
    a, _ = random_pair(tmp_path / "x", 50, maxrec=10)
    _, b = random_pair(tmp_path / "y", 50, maxrec=9)
    with pytest.raises(InputError, match="differ in maxrec"):
        EventPair.open(a, b)


def test_pair_fdom_differs(pair_dirs):
    fdom = FDOM.copy()
    fdom[0, 0, 3] = 700
    np.save(pair_dirs[1] / "fdom.npy", fdom)
    with pytest.raises(InputError, match="differ in domains"):
        EventPair.open(*pair_dirs)


def test_pair_photon_count_differs_behind_a_slice(tmp_path):
    a, _ = random_pair(tmp_path / "x", 100)
    _, b = random_pair(tmp_path / "y", 120)
    with pytest.raises(InputError, match="differ in photon count.*ph.npy has 100.*ph.npy has 120"):
        EventPair.open(a, b, msli=":50")


def test_corrupt_header_with_a_huge_shape(pair_dirs):
    path = pair_dirs[0] / "ox.npy"
    data = path.read_bytes()
    # the header claims 2**60 photons: the size must not wrap around to "fits"
    path.write_bytes(data.replace(b"(500, 4, 4)", b"(1152921504606846976, 4, 4)"))
    with pytest.raises(InputError, match="ox.npy"):
        Event(pair_dirs[0])


def test_identical_domains_with_nan_are_equal(pair_dirs):
    fdom = FDOM.copy()
    fdom[1, 0, 3] = np.nan  # an unused slot
    for d in pair_dirs:
        np.save(d / "fdom.npy", fdom)
    assert EventPair.open(*pair_dirs).n == 500
