"""The SEvt reader: layout and era detection, run folders, metadata, and every bad input."""
import numpy as np
import pytest

from conftest import random_pair
from photonab import InputError, EventPair, sevt
from sevt_folders import random_histories, seq_words, write_pair, write_sevt


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_open_a_pair(tmp_path, rng):
    a, b = write_pair(tmp_path / "ALL0_test", random_histories(rng, 500), random_histories(rng, 500),
                      maxrec=32, hits=40, domain=True)
    pair = sevt.SEvtPair.open(a, b)
    assert pair.n == 500 and pair.layout == "sevt"
    assert pair.a.maxrec == 32 and pair.a.n_hits == 40 and pair.a.domain.shape == (2, 4, 4)
    assert pair.a.seqhis.shape == (500, 2) and isinstance(pair.a.seq, np.memmap)
    assert pair.era == "2025-06" and pair.era_source == "detected" and "TO = 3" in pair.era_evidence
    assert pair.meta_diff == [] and pair.notes == []
    assert pair.a.index == ["seq.npy", "photon.npy", "record.npy", "hit.npy", "domain.npy"]
    assert "n=500" in repr(pair) and "2025-06" in repr(pair)


def test_msli_slices_per_photon_arrays_not_hits(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 100), maxrec=4, hits=30)
    ev = sevt.SEvtEvent(a, msli="10:40:3")
    assert ev.n_total == 100 and ev.n == 10
    assert len(ev.photon) == len(ev.record) == len(ev.seq) == 10
    assert ev.n_hits == 30
    assert list(ev.file_rows) == list(range(10, 40, 3))
    assert np.array_equal(ev.photon[:, 3, 2].view(np.uint32), np.arange(10, 40, 3))


def test_record_float64_is_accepted(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 10))
    np.save(a / "record.npy", np.zeros((10, 5, 4, 4), np.float64))
    assert sevt.SEvtEvent(a).record.dtype == np.float64


# ---------------------------------------------------------------- layouts and folders


def test_detect_layout(tmp_path, rng):
    a, b = random_pair(tmp_path, 20)
    assert sevt.detect_layout(a) == "2019"
    s = write_sevt(tmp_path / "A000", random_histories(rng, 20))
    assert sevt.detect_layout(s) == "sevt"
    assert isinstance(sevt.open_pair(a, b), EventPair)


def test_detect_layout_neither(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: not an event folder: none of the 2019 layout files \(ox.npy"):
        sevt.detect_layout(tmp_path / "empty")


def test_detect_layout_both(tmp_path, rng):
    a, _ = random_pair(tmp_path, 20)
    write_sevt(a, random_histories(rng, 20))
    with pytest.raises(InputError, match="files of both layouts"):
        sevt.detect_layout(a)


def test_event_folder_missing_or_a_file(tmp_path):
    with pytest.raises(InputError, match="nowhere: event folder is missing"):
        sevt.SEvtEvent(tmp_path / "nowhere")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="f: event folder is a file, not a folder"):
        sevt.detect_layout(tmp_path / "f")


def test_a_and_b_of_different_layouts(tmp_path, rng):
    a, _ = random_pair(tmp_path, 20)
    b = write_sevt(tmp_path / "B000", random_histories(rng, 20))
    with pytest.raises(InputError, match=r"different layouts: .* is the 2019 layout .* is an SEvt folder"):
        sevt.open_pair(a, b)


def test_flags_on_the_2019_layout(tmp_path):
    a, b = random_pair(tmp_path, 20)
    with pytest.raises(InputError, match="2019 layout is decoded with the 2019 flags"):
        sevt.open_pair(a, b, era="2025-06")


def test_run_folder_and_index(tmp_path, rng):
    run = tmp_path / "ALL0_run"
    for i in (0, 1, 12):
        write_sevt(run / f"A{i:03d}", random_histories(rng, 30))
        write_sevt(run / f"B{i:03d}", random_histories(rng, 30))
    (run / "A00x").mkdir()  # not an event name: ignored
    assert sevt.run_indices(run) == [0, 1, 12]
    pair = sevt.open_run(run, index=12)
    assert pair.a.path.name == "A012" and pair.b.path.name == "B012"
    assert sevt.event_dirs(run, 3) == (run / "A003", run / "B003")
    with pytest.raises(InputError, match="A005: event folder is missing .*index 5"):
        sevt.open_run(run, index=5)
    with pytest.raises(InputError, match="index -1 must be >= 0"):
        sevt.open_run(run, index=-1)


def test_run_folder_with_a_lonely_event(tmp_path, rng):
    run = tmp_path / "run"
    write_sevt(run / "A000", random_histories(rng, 30))
    write_sevt(run / "B000", random_histories(rng, 30))
    write_sevt(run / "A001", random_histories(rng, 30))
    with pytest.raises(InputError, match="events without a partner: A001"):
        sevt.run_indices(run)


def test_run_folder_without_pairs(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(InputError, match="no A000/B000 event pairs"):
        sevt.run_indices(tmp_path / "run")
    with pytest.raises(InputError, match="run folder is missing"):
        sevt.run_indices(tmp_path / "nope")


# ---------------------------------------------------------------- bad arrays, one test per kind


def test_photon_wrong_shape(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 10))
    np.save(a / "photon.npy", np.zeros((10, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"photon.npy: shape \(10, 4, 3\) but expected \(N, 4, 4\)"):
        sevt.SEvtEvent(a)


def test_seq_wrong_dtype(tmp_path):
    a = write_sevt(tmp_path / "A000", np.zeros((10, 2), np.uint64))
    np.save(a / "seq.npy", np.zeros((10, 2, 2), np.int64))
    with pytest.raises(InputError, match="seq.npy: dtype <i8 but expected <u8"):
        sevt.SEvtEvent(a)


def test_seq_old_single_word_shape(tmp_path):
    a = write_sevt(tmp_path / "A000", np.zeros((10, 2), np.uint64))
    np.save(a / "seq.npy", np.zeros((10, 1, 2), np.uint64))
    with pytest.raises(InputError, match=r"seq.npy: shape \(10, 1, 2\) but expected \(N, 2, 2\)"):
        sevt.SEvtEvent(a)


def test_truncated_seq(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 100))
    data = (a / "seq.npy").read_bytes()
    (a / "seq.npy").write_bytes(data[:-8])
    with pytest.raises(InputError, match="seq.npy: truncated"):
        sevt.SEvtEvent(a)


def test_not_a_npy_file(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 10))
    (a / "hit.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match="hit.npy: not a valid .npy file"):
        sevt.SEvtEvent(a)


def test_record_maxrec_beyond_seq_slots(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 3))
    np.save(a / "record.npy", np.zeros((3, 33, 4, 4), np.float32))
    with pytest.raises(InputError, match="record.npy: maxrec 33 .* must be in 1..32, the history slots of seq.npy"):
        sevt.SEvtEvent(a)


def test_record_wrong_shape(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 3))
    np.save(a / "record.npy", np.zeros((3, 10, 2, 4), np.int16))
    with pytest.raises(InputError, match="record.npy: dtype <i2 but expected <f4"):
        sevt.SEvtEvent(a)


def test_hit_wrong_shape(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 10))
    np.save(a / "hit.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(InputError, match=r"hit.npy: shape \(5, 4\) but expected \(N, 4, 4\)"):
        sevt.SEvtEvent(a)


def test_more_hits_than_photons(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 10), hits=11)
    with pytest.raises(InputError, match="hit.npy: 11 hits but photon.npy has only 10 photons"):
        sevt.SEvtEvent(a)


def test_domain_wrong_shape(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 10))
    np.save(a / "domain.npy", np.zeros((3, 4, 4), np.float32))
    with pytest.raises(InputError, match=r"domain.npy: shape \(3, 4, 4\) but expected \(2, 4, 4\)"):
        sevt.SEvtEvent(a)


def test_photon_counts_differ_between_arrays(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 10))
    np.save(a / "photon.npy", np.zeros((9, 4, 4), np.float32))
    with pytest.raises(InputError, match="photon.npy: 9 photons but seq.npy has 10"):
        sevt.SEvtEvent(a)


def test_record_count_differs(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 10), photon=False)
    np.save(a / "record.npy", np.zeros((12, 10, 4, 4), np.float32))
    with pytest.raises(InputError, match="record.npy: 12 photons but seq.npy has 10"):
        sevt.SEvtEvent(a)


def test_missing_seq_names_the_event_modes(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", None, n=10, index=False)
    with pytest.raises(InputError, match=r"A000/seq.npy: missing \(needed for the history table\); it is written "
                                         r"when OPTICKS_EVENT_MODE is one of HitPhotonSeq, HitSeq, DebugLite, DebugHeavy"):
        sevt.SEvtEvent(a).seqhis
    with pytest.raises(InputError, match="seq.npy: missing; .*HitPhotonSeq, HitSeq"):
        sevt.SEvtEvent(a, need=("seq",))


def test_listed_in_index_but_missing(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 10))
    (a / "seq.npy").unlink()
    with pytest.raises(InputError, match="seq.npy: missing although NPFold_index.txt lists it"):
        sevt.SEvtEvent(a, need=("seq",))


def test_seq_path_is_a_directory(tmp_path, rng):
    a = write_sevt(tmp_path / "A000", random_histories(rng, 10))
    (a / "seq.npy").unlink()
    (a / "seq.npy").mkdir()
    with pytest.raises(InputError, match="seq.npy"):
        sevt.SEvtEvent(a)


def test_photon_counts_of_a_and_b_differ(tmp_path, rng):
    a, b = write_pair(tmp_path, random_histories(rng, 100), random_histories(rng, 90))
    pair = sevt.SEvtPair.open(a, b)
    assert pair.n == 90 and "first 90 of each, as QCF does" in pair.notes[0]
    sa, sb = pair.seqhis()
    assert len(sa) == len(sb) == 90


# ---------------------------------------------------------------- eras


@pytest.mark.parametrize("era, source", [("2025-06", "TO"), ("2020-12", "TO"), ("2025-06", "CK"), ("2020-12", "SI")])
def test_era_detection(tmp_path, rng, era, source):
    words = random_histories(rng, 2000, era=era, source=source)
    detected, evidence = sevt.detect_era(words[:, 0])
    if source == "TO":
        assert detected == era and "100.0% of 2000 photons" in evidence
    else:  # CK and SI have the same nibble in every era: the data cannot tell
        assert detected is None and "CK/SI only" in evidence
    a, b = write_pair(tmp_path, words, random_histories(rng, 2000, era=era, source=source))
    pair = sevt.SEvtPair.open(a, b)
    assert pair.era == (era if source == "TO" else "2025-06")
    assert pair.era_source == ("detected" if source == "TO" else "default")


def test_era_detection_tolerates_a_few_odd_photons(rng):
    words = random_histories(rng, 200_000, era="2020-12")
    odd = rng.random(len(words)) < 0.02  # MI first: not a source flag in 2020-12, TORCH in 2025-06
    words[odd, 0] = (words[odd, 0] & ~np.uint64(0xF)) | np.uint64(3)
    era, evidence = sevt.detect_era(words[:, 0])
    assert era == "2020-12" and "% of 65536 sampled photons" in evidence
    assert 97 < float(evidence.split("for ")[1].split("%")[0]) < 99


def test_era_override(tmp_path, rng):
    a, b = write_pair(tmp_path, random_histories(rng, 100), random_histories(rng, 100))
    pair = sevt.SEvtPair.open(a, b, era="2020-12")
    assert pair.era == "2020-12" and pair.era_source == "given"
    with pytest.raises(InputError, match="unknown flag era 'nope'"):
        sevt.SEvtPair.open(a, b, era="nope")


def test_a_and_b_of_different_eras(tmp_path, rng):
    a, b = write_pair(tmp_path, random_histories(rng, 100, era="2025-06"),
                      random_histories(rng, 100, era="2020-12"))
    with pytest.raises(InputError, match="different flag eras: .*A000/seq.npy 2025-06 .*B000/seq.npy 2020-12.*--flags"):
        sevt.SEvtPair.open(a, b)
    assert sevt.SEvtPair.open(a, b, era="2025-06").era == "2025-06"


def test_era_without_histories(tmp_path):
    a, b = write_pair(tmp_path, np.zeros((5, 2), np.uint64), np.zeros((5, 2), np.uint64))
    pair = sevt.SEvtPair.open(a, b)
    assert pair.era == "2025-06" and pair.era_source == "default" and "no recorded histories" in pair.era_evidence


# ---------------------------------------------------------------- metadata


def test_parse_meta():
    meta = sevt.parse_meta("NumPhotonCollected:1000000\nsite:SEvt::endMeta\n\nbare\nGEOM: J_2025 \n")
    assert meta == {"NumPhotonCollected": "1000000", "site": "SEvt::endMeta", "bare": "", "GEOM": "J_2025"}


def test_meta_differences_skip_timestamps(tmp_path, rng):
    words = random_histories(rng, 50)
    a = write_sevt(tmp_path / "A000", words, meta={"MaxBounce": 31, "t_Launch": 0.25, "GEOM": "J",
                                                   "SEvt__beginOfEvent_0": "1745996063332040,4000,200"})
    b = write_sevt(tmp_path / "B000", words, meta={"MaxBounce": 9, "t_Launch": 9.5, "t_BeginOfEvent": 5,
                                                   "SEvt__beginOfEvent_0": "1745996063999999,4100,220",
                                                   "U4Recorder": "yes"})
    pair = sevt.SEvtPair.open(a, b)
    assert pair.meta_diff == [("MaxBounce", "31", "9"), ("GEOM", "J", None), ("U4Recorder", None, "yes")]
    assert sevt.is_timestamp_key("t_PreLaunch") and not sevt.is_timestamp_key("hitmask", "8192")
