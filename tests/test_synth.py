"""The synthetic A/B event generator: layout, physics sanity, B's deviations, arguments."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from photonab import seqhis
from photonab.errors import InputError
from photonab.events import LAYOUT, EventPair
from photonab.synth import (
    DEFAULT_FAULTS,
    TMAX,
    Fault,
    _physics_words,
    _torch,
    parse_fault,
    propagate,
    synthesize,
)

N = 20_000
SEED = 11
MISALIGNED = 0.03
NAN = 7
FAULTS = ("TO BT BR BT SA:pos=0.05", "TO BR SA:time=0.0005", "TO BT BT SD:pol=0.02")
FILES = ("ox", "rx", "ph", "ps", "rs", "fdom", "idom")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    a, b = synthesize(out, N, seed=SEED, misaligned=MISALIGNED, faults=FAULTS, nan=NAN,
                      progress=False)
    return a, b, EventPair.open(a, b)


@pytest.fixture(scope="module")
def pair(run):
    return run[2]


def arrays(pair):
    """Plain in-memory copies of both events' arrays."""
    return {side: {name: np.asarray(getattr(ev, name)) for name in ("ox", "rx", "ph", "ps", "rs")}
            for side, ev in (("a", pair.a), ("b", pair.b))}


@pytest.fixture(scope="module")
def data(pair):
    return arrays(pair)


def valid_slots(seq):
    """(n, 16) bool: slot r is a step of the photon."""
    return np.stack([(seq >> np.uint64(4 * r)) & np.uint64(0xF) != 0 for r in range(16)], axis=1)


def record_bytes(rx):
    return np.ascontiguousarray(rx[:, :, 1, :]).view(np.uint8)  # (n, maxrec, 8)


def deviations(data, kind):
    """Per-photon max |A - B| in stored counts over all slots (section 5 arithmetic)."""
    ra, rb = data["a"]["rx"], data["b"]["rx"]
    if kind == "pos":
        return np.abs(ra[:, :, 0, :3].astype(np.int32) - rb[:, :, 0, :3]).max(axis=(1, 2))
    if kind == "time":
        return np.abs(ra[:, :, 0, 3].astype(np.int32) - rb[:, :, 0, 3]).max(axis=1)
    pa, pb = record_bytes(ra)[..., :3].astype(np.int32), record_bytes(rb)[..., :3]
    return np.abs(pa - pb).max(axis=(1, 2))


# ---------------------------------------------------------------- layout


def test_paths_files_dtypes_shapes(run, pair):
    a, b, _ = run
    assert a.parts[-4:] == ("evt", "box", "torch", "1")
    assert b.parts[-4:] == ("evt", "box", "torch", "-1")
    maxrec = 10
    shapes = {"ox": (N, 4, 4), "rx": (N, maxrec, 2, 4), "ph": (N, 1, 2), "ps": (N, 1, 4),
              "rs": (N, maxrec, 1, 4), "fdom": (3, 1, 4), "idom": (1, 1, 4)}
    for folder in (a, b):
        assert not (folder / "gs.npy").exists()
        for name in FILES:
            arr = np.load(folder / f"{name}.npy", mmap_mode="r")
            assert arr.dtype == LAYOUT[name][0], name
            assert arr.shape == shapes[name], name
    assert pair.n == N and pair.a.maxrec == pair.b.maxrec == maxrec


def test_domains(pair):
    fdom, idom = pair.a.fdom, pair.a.idom
    assert np.array_equal(fdom, pair.b.fdom) and np.array_equal(idom, pair.b.idom)
    assert fdom[0, 0].tolist() == [0, 0, 0, 748]
    assert fdom[1, 0].tolist() == [0, TMAX, TMAX, 0]
    assert fdom[2, 0].tolist() == [60, 820, 20, 760]
    assert idom[0, 0, 3] == 10 and idom[0, 0, 2] == 9
    assert pair.domains.eps_pos == pytest.approx(0.0228275, abs=1e-7)  # contract check value


def test_steps_fill_exactly_the_record_slots(data):
    for side in "ab":
        rx, seq = data[side]["rx"], data[side]["ph"][:, 0, 0]
        steps = valid_slots(seq)[:, :10]
        filled = (rx.reshape(N, 10, -1) != 0).any(axis=2)
        assert np.array_equal(filled, steps)
        # contiguous from slot 0: nstep = highest non-zero nibble + 1
        assert np.array_equal(steps.sum(axis=1), seqhis.nstep_array(seq))
        assert (seq & np.uint64(0xF) == seqhis.NIBBLE["TO"]).all()


def test_record_flag_and_material_bytes_match_seqhis_seqmat(data):
    rx, ph = data["a"]["rx"], data["a"]["ph"]
    q = record_bytes(rx)
    steps = valid_slots(ph[:, 0, 0])[:, :10]
    shifts = (4 * np.arange(10)).astype(np.uint64)
    nib = (ph[:, 0, 0][:, None] >> shifts) & np.uint64(0xF)
    mat = (ph[:, 0, 1][:, None] >> shifts) & np.uint64(0xF)
    assert np.array_equal(q[..., 7][steps], nib[steps].astype(np.uint8))
    assert np.array_equal(q[..., 4][steps], mat[steps].astype(np.uint8))


def test_ox_flags_ids_and_final_record(pair, data):
    ox, rx, seq = data["a"]["ox"], data["a"]["rx"], data["a"]["ph"][:, 0, 0]
    q3 = ox.view(np.uint32)[:, 3]
    assert np.array_equal(q3[:, 2], np.arange(N))  # photon id
    flags = np.zeros(N, np.uint32)
    for r in range(10):
        nib = ((seq >> np.uint64(4 * r)) & np.uint64(0xF)).astype(np.uint32)
        flags |= np.where(nib > 0, np.uint32(1) << (nib - 1), 0).astype(np.uint32)
    assert np.array_equal(q3[:, 3], flags)
    last = seqhis.nstep_array(seq) - 1
    last_nib = (seq >> (4 * last).astype(np.uint64)) & np.uint64(0xF)
    assert ((q3[:, 1] > 0) == (last_nib == seqhis.NIBBLE["SD"])).all()  # sensor index
    assert set(np.unique(q3[:, 1])) <= set(range(7))
    # final position and time are the last record slot, within one bin
    rows = np.arange(N)
    pos = pair.a.positions()[rows, last]
    assert np.abs(pos - ox[:, 0, :3]).max() <= pair.domains.pos_bin
    t = pair.a.times()[rows, last]
    inside = rx[rows, last, 0, 3] != -32768
    assert np.abs(t - ox[:, 0, 3])[inside].max() <= pair.domains.time_bin
    assert (ox[~inside, 0, 3] > TMAX).all()
    assert (ox[:, 1, 3] == 1).all()  # weight
    assert ((ox[:, 2, 3] >= 420) & (ox[:, 2, 3] <= 440)).all()  # wavelength


def test_ox_direction_and_polarization_are_unit_and_perpendicular(data):
    ox = data["a"]["ox"].astype(np.float64)
    d, p = ox[:, 1, :3], ox[:, 2, :3]
    assert np.abs(np.linalg.norm(d, axis=1) - 1).max() < 1e-5
    assert np.abs(np.linalg.norm(p, axis=1) - 1).max() < 1e-5
    assert np.abs((d * p).sum(axis=1)).max() < 1e-4


def test_ps_rs_rank_histories(data):
    for side in "ab":
        ps, rs, seq = data[side]["ps"], data[side]["rs"], data[side]["ph"][:, 0, 0]
        assert np.array_equal(rs[:, :, 0, :], np.repeat(ps[:, :, :], 10, axis=1))
        codes, counts = np.unique(seq, return_counts=True)
        order = np.lexsort((codes, -counts))
        rank = {int(codes[i]): r for r, i in enumerate(order)}
        expect = np.array([rank[int(c)] if rank[int(c)] < 32 else 255 for c in seq])
        assert np.array_equal(ps[:, 0, 0], expect)
        assert (ps[:, 0, 2:] == 0).all()
        assert ps[:, 0, 1].min() == 0


# ---------------------------------------------------------------- compression and physics


def test_slot_0_is_the_torch():
    words = _physics_words(5, 0, 3000, 10)
    tr = propagate(words)
    pos, _, pol, _ = _torch(words[:, 0])
    assert np.array_equal(tr.slots[0].pos, pos) and np.array_equal(tr.slots[0].pol, pol)
    assert (pos[2] == -450).all() and (np.hypot(pos[0], pos[1]) <= 150).all()


def test_decoded_records_within_half_a_bin(tmp_path):
    a, b = synthesize(tmp_path, 3000, seed=5, progress=False)
    ev = EventPair.open(a, b).a
    tr = propagate(_physics_words(5, 0, 3000, 10))
    pos, times, pols = ev.positions(), ev.times(), ev.polarizations()
    half_pos, half_t = ev.domains.pos_bin / 2 + 1e-4, ev.domains.time_bin / 2 + 1e-6
    for r, s in enumerate(tr.slots):
        assert np.abs(pos[s.ids, r] - s.pos.T).max() <= half_pos
        ok = s.t <= TMAX * 0.999
        assert np.abs(times[s.ids, r] - s.t)[ok].max() <= half_t
        assert np.abs(pols[s.ids, r] - s.pol.T).max() <= 0.5 / 127 + 1e-6
    wl = ev.wavelengths()[:, 0]
    assert np.abs(wl - tr.wavelength).max() <= 760 / 255 / 2 + 1e-3


def test_torch_start(pair):
    pos = pair.a.positions()[:, 0]
    assert np.abs(pos[:, 2] + 450).max() <= pair.domains.pos_bin
    assert np.hypot(pos[:, 0], pos[:, 1]).max() <= 150 + pair.domains.pos_bin
    assert (np.asarray(pair.a.rx[:, 0, 0, 3]) == 0).all()  # torch time 0


def test_steps_end_on_faces_and_time_follows_path(pair, data):
    seq, mat = data["a"]["ph"][:, 0, 0], data["a"]["ph"][:, 0, 1]
    pos, t = pair.a.positions().astype(np.float64), pair.a.times().astype(np.float64)
    bin_ = pair.domains.pos_bin
    rx_t = data["a"]["rx"][:, :, 0, 3]
    for r in range(1, 10):
        nib = ((seq >> np.uint64(4 * r)) & np.uint64(0xF)).astype(int)
        edge = np.abs(pos[:, r]).max(axis=1)
        boundary = np.isin(nib, [seqhis.NIBBLE["BT"], seqhis.NIBBLE["BR"]])
        wall = np.isin(nib, [seqhis.NIBBLE["SA"], seqhis.NIBBLE["SD"]])
        assert np.abs(edge[boundary] - 200).max() <= bin_
        assert np.abs(edge[wall] - 700).max() <= bin_
        # time of flight: path length / (c / n) of the medium travelled (seqmat nibble)
        m = ((mat >> np.uint64(4 * r)) & np.uint64(0xF)).astype(int)
        n_index = np.where(m == 2, 1.5, 1.0)
        step = (nib > 0) & (rx_t[:, r] != -32768) & (rx_t[:, r - 1] != -32768)
        flight = np.linalg.norm(pos[:, r] - pos[:, r - 1], axis=1) * n_index / 299.792458
        assert np.abs((t[:, r] - t[:, r - 1]) - flight)[step].max() < 4 * pair.domains.time_bin


def test_snell_at_cube_entry(pair, data):
    seq = data["a"]["ph"][:, 0, 0]
    rows = np.flatnonzero(seq == seqhis.code("TO BT BT SA"))
    pos = pair.a.positions()[rows].astype(np.float64)
    front = np.abs(pos[:, 1, 2] + 200) < 0.05  # entered through the z = -200 face
    d_in = pos[front, 1] - pos[front, 0]
    d_out = pos[front, 2] - pos[front, 1]
    sin_in = np.hypot(d_in[:, 0], d_in[:, 1]) / np.linalg.norm(d_in, axis=1)
    sin_out = np.hypot(d_out[:, 0], d_out[:, 1]) / np.linalg.norm(d_out, axis=1)
    assert front.sum() > 1000
    assert np.abs(sin_in - 1.5 * sin_out).max() < 2e-3


def test_history_mix(data):
    seq = data["a"]["ph"][:, 0, 0]
    codes, counts = np.unique(seq, return_counts=True)
    frac = dict(zip((seqhis.label(c) for c in codes), counts / N))
    top = max(frac, key=frac.get)
    assert top == "TO BT BT SA" and frac[top] > 0.5
    for label in ("TO BR SA", "TO BT BT SD", "TO BT AB", "TO BT BR BT SA", "TO SA"):
        assert 0.005 < frac.get(label, 0) < 0.2, label
    assert 0.025 < frac["TO BR SA"] + frac["TO BR SD"] < 0.05  # ~4 % Fresnel at the entry face
    assert len(codes) > 80  # long tail
    assert sum(1 for label in frac if "SC" in label) > 10
    assert (counts == 1).sum() > 10


# ---------------------------------------------------------------- B against A


def test_misaligned_fraction(data):
    differ = data["a"]["ph"][:, 0, 0] != data["b"]["ph"][:, 0, 0]
    assert abs(differ.mean() - MISALIGNED) < 5 * np.sqrt(MISALIGNED / N)
    # re-drawn photons keep their torch start (positions differ only by B's noise)
    assert np.array_equal(data["a"]["rx"][differ, 0, 1], data["b"]["rx"][differ, 0, 1])


def test_healthy_aligned_photons_differ_by_at_most_one_count(data):
    seq_a, seq_b = data["a"]["ph"][:, 0, 0], data["b"]["ph"][:, 0, 0]
    faulted = np.isin(seq_a, [parse_fault(f).code for f in FAULTS])
    healthy = (seq_a == seq_b) & ~faulted
    assert healthy.sum() > 0.5 * N
    for kind in ("pos", "time"):
        d = deviations(data, kind)[healthy]
        assert d.max() == 1
        assert 0.01 < (d == 1).mean() < 0.9
    assert deviations(data, "pol")[healthy].max() == 0  # 1 count would already be a WARNING


@pytest.mark.parametrize("spec", FAULTS)
def test_fault_rows_show_their_shift(pair, data, spec):
    fault = parse_fault(spec)
    seq_a, seq_b = data["a"]["ph"][:, 0, 0], data["b"]["ph"][:, 0, 0]
    rows = np.flatnonzero((seq_a == fault.code) & (seq_b == fault.code))
    assert rows.size > 100
    steps = valid_slots(seq_a[rows])[:, :10]
    if fault.kind == "pos":
        diff = pair.b.positions(rows) - pair.a.positions(rows)
        bin_ = pair.domains.pos_bin
    elif fault.kind == "time":
        diff = (pair.b.times(rows) - pair.a.times(rows))[..., None]
        bin_ = pair.domains.time_bin
    else:
        diff = pair.b.polarizations(rows) - pair.a.polarizations(rows)
        edge = np.abs(pair.a.polarizations(rows)) > 0.95  # clipped at +-1
        diff = np.where(edge, np.nan, diff)
        bin_ = 1 / 127
    assert np.nanmax(np.abs(diff[steps] - fault.shift)) <= bin_ + 1e-6
    # the torch slot has a fixed z and time 0, so only later slots average the rounding out
    assert np.nanmean(diff[:, 1:][steps[:, 1:]]) == pytest.approx(fault.shift, abs=0.1 * bin_)
    others = (seq_a == seq_b) & (seq_a != fault.code)
    kind_dev = deviations(data, fault.kind)
    assert kind_dev[rows].max() >= 2
    assert kind_dev[others & ~np.isin(seq_a, [parse_fault(f).code for f in FAULTS])].max() <= 1


def test_nan_in_b_final_time_only(data):
    ox_a, ox_b = data["a"]["ox"], data["b"]["ox"]
    assert not np.isnan(ox_a).any()
    nan = np.isnan(ox_b)
    assert nan.sum() == NAN
    assert nan[:, 0, 3].sum() == NAN


def test_b_ox_is_a_ox_plus_noise_for_aligned_photons(pair, data):
    same = data["a"]["ph"][:, 0, 0] == data["b"]["ph"][:, 0, 0]
    same &= ~np.isnan(data["b"]["ox"][:, 0, 3])
    a, b = data["a"]["ox"][same], data["b"]["ox"][same]
    assert np.abs(a[:, 0, :3] - b[:, 0, :3]).max() <= 0.1 * pair.domains.pos_bin + 1e-4
    assert np.array_equal(a[:, 1:3], b[:, 1:3])
    assert np.array_equal(a.view(np.uint32)[:, 3], b.view(np.uint32)[:, 3])


# ---------------------------------------------------------------- determinism


def read_all(a, b):
    return {(side, name): (folder / f"{name}.npy").read_bytes()
            for side, folder in (("a", a), ("b", b)) for name in FILES}


def test_same_seed_same_bytes_whatever_the_chunking(tmp_path):
    kw = dict(seed=3, faults=DEFAULT_FAULTS, nan=2, misaligned=0.05, progress=False)
    first = read_all(*synthesize(tmp_path / "one", 6000, **kw))
    assert read_all(*synthesize(tmp_path / "two", 6000, **kw)) == first
    assert read_all(*synthesize(tmp_path / "three", 6000, chunk=700, **kw)) == first
    # overwriting an existing output gives the same files again
    assert read_all(*synthesize(tmp_path / "one", 6000, **kw)) == first


def test_worker_processes_give_the_same_bytes(tmp_path):
    # 12 blocks of 1000 run on worker processes (where there is more than one core)
    kw = dict(seed=4, faults=DEFAULT_FAULTS, nan=3, progress=False)
    serial = read_all(*synthesize(tmp_path / "serial", 12_000, **kw))
    assert read_all(*synthesize(tmp_path / "blocks", 12_000, chunk=1000, **kw)) == serial


def test_different_seed_different_events(tmp_path):
    a1, _ = synthesize(tmp_path / "s1", 2000, seed=1, progress=False)
    a2, _ = synthesize(tmp_path / "s2", 2000, seed=2, progress=False)
    assert (a1 / "rx.npy").read_bytes() != (a2 / "rx.npy").read_bytes()
    assert (a1 / "ph.npy").read_bytes() != (a2 / "ph.npy").read_bytes()


def test_small_maxrec_and_no_misalignment(tmp_path):
    a, b = synthesize(tmp_path / "m1", 500, maxrec=1, misaligned=0, progress=False)
    pair = EventPair.open(a, b)
    assert (pair.a.seqhis == seqhis.code("TO")).all()
    assert pair.a.idom[0, 0, 2] == 0 and pair.a.rx.shape == (500, 1, 2, 4)
    a, b = synthesize(tmp_path / "m4", 3000, maxrec=4, misaligned=0, progress=False)
    pair = EventPair.open(a, b)
    assert np.array_equal(pair.a.seqhis, pair.b.seqhis)
    assert seqhis.nstep_array(pair.a.seqhis).max() == 4


# ---------------------------------------------------------------- faults and arguments


def test_parse_fault():
    f = parse_fault("to bt br bt sa : pos = 0.05")
    assert f == Fault("TO BT BR BT SA", 0x8CBCD, "pos", 0.05)
    assert str(f) == "TO BT BR BT SA:pos=0.05"
    assert parse_fault(f) is f
    assert parse_fault("TO BR SA:time=-1e-3").shift == -0.001
    for spec in DEFAULT_FAULTS:
        assert parse_fault(spec).code != 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(sorted(seqhis.NIBBLE)), min_size=1, max_size=16),
       st.sampled_from(["pos", "time", "pol"]),
       st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_parse_fault_round_trip(tokens, kind, shift):
    label = " ".join(tokens)
    f = parse_fault(f"{label}:{kind}={shift!r}")
    assert (f.label, f.code, f.kind, f.shift) == (label, seqhis.code(label), kind, shift)
    assert parse_fault(str(f)) == f


@pytest.mark.parametrize("spec, message", [
    ("TO BT BT SA", "LABEL:KIND=VALUE"),
    (":pos=1", "LABEL:KIND=VALUE"),
    ("TO BT XX SA:pos=1", "unknown step 'XX'"),
    ("TO BT BT SA:size=1", "KIND one of pos, time, pol"),
    ("TO BT BT SA:pos", "KIND one of pos, time, pol"),
    ("TO BT BT SA:pos=abc", "'abc' is not a number"),
    ("TO BT BT SA:pos=inf", "finite"),
    (" ".join(["BT"] * 17) + ":pos=1", "at most 16"),
    (42, "expected a string"),
])
def test_bad_fault_specs(spec, message):
    with pytest.raises(InputError, match=message):
        parse_fault(spec)


@pytest.mark.parametrize("kwargs, message", [
    (dict(photons=0), "photons = 0 must be >= 1"),
    (dict(photons=-5), "photons = -5 must be >= 1"),
    (dict(photons=2.5), "photons must be an integer"),
    (dict(photons=True), "photons must be an integer"),
    (dict(misaligned=-0.1), r"misaligned = -0.1 must be a fraction in \[0, 1\]"),
    (dict(misaligned=1.5), r"misaligned = 1.5 must be a fraction in \[0, 1\]"),
    (dict(misaligned=float("nan")), "must be a fraction"),
    (dict(misaligned="lots"), "must be a fraction"),
    (dict(maxrec=0), r"maxrec = 0 must be in 1..16"),
    (dict(maxrec=17), r"maxrec = 17 must be in 1..16"),
    (dict(nan=11), r"nan = 11 must be in 0..10"),
    (dict(nan=-1), r"nan = -1 must be in 0..10"),
    (dict(chunk=0), "chunk = 0 must be >= 1"),
    (dict(seed=-1), "seed = -1 must be >= 0"),
    (dict(faults=["TO BT QQ:pos=1"]), "unknown step 'QQ'"),
    (dict(faults="TO BT BT SA:pos"), "KIND one of"),
    (dict(faults=["TO BT BT BT BT SA:pos=1"], maxrec=4), "6 steps but maxrec is 4"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    args = dict(out=tmp_path / "bad", photons=10, progress=False) | kwargs
    with pytest.raises(InputError, match=message):
        synthesize(**args)
    assert not (tmp_path / "bad").exists()  # nothing written on bad arguments


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot write the event folders"):
        synthesize(blocker, 10, progress=False)


def test_interrupted_run_leaves_the_previous_pair_and_no_partial_folder(tmp_path, monkeypatch):
    import photonab.synth.scheduler as scheduler

    a, b = synthesize(tmp_path, 1000, progress=False)
    before = read_all(a, b)

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scheduler, "_simulate_block", broken)
    with pytest.raises(KeyboardInterrupt):
        synthesize(tmp_path, 1000, seed=9, progress=False)  # overwriting the finished pair
    assert read_all(a, b) == before  # the old pair, untouched
    assert sorted(p.name for p in a.parent.iterdir()) == ["-1", "1"]  # no temporary folder left
    EventPair.open(a, b)


def test_interrupted_first_run_leaves_nothing(tmp_path, monkeypatch):
    import photonab.synth.scheduler as scheduler

    monkeypatch.setattr(scheduler, "_simulate_block", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        synthesize(tmp_path, 1000, progress=False)
    folder = tmp_path / "evt" / "box" / "torch"
    assert list(folder.iterdir()) == []
    assert not (tmp_path / "synth.json").exists()


# ---------------------------------------------------------------- migrations (2019 layout)


def test_explicit_migrations_and_the_manifest(tmp_path):
    from photonab.synth import DEFAULT_MIGRATIONS, parse_migration, read_manifest
    a, b = synthesize(tmp_path, N, seed=SEED, misaligned=0.01, migrations=DEFAULT_MIGRATIONS, progress=False)
    pair = EventPair.open(a, b)
    sa, sb = np.asarray(pair.a.seqhis), np.asarray(pair.b.seqhis)
    manifest = read_manifest(tmp_path)
    rows = manifest["migrations"]
    # every photon whose history differs is listed once, by kind
    assert sum(r["photons"] for r in rows) == np.count_nonzero(sa != sb)
    pairs = {}
    for r in rows:
        key = (seqhis.code(r["a"]), seqhis.code(r["b"]))
        pairs[key] = pairs.get(key, 0) + r["photons"]
    for (ca, cb), count in pairs.items():
        assert np.count_nonzero((sa == ca) & (sb == cb)) == count
    for spec, row in zip(DEFAULT_MIGRATIONS, [r for r in rows if r["kind"] == "explicit"]):
        m = parse_migration(spec)
        assert (row["a"], row["b"], row["fraction"]) == (m.a_label, m.b_label, m.fraction)
        expect = m.fraction * np.count_nonzero(sa == m.a_code)
        assert abs(row["chosen"] - expect) < 5 * np.sqrt(expect) + 1
        assert 0.7 * row["chosen"] <= row["photons"] <= row["chosen"]  # most reach the target history
    # no migrations asked: the same bytes as before (the migration stream is not drawn)
    plain = read_all(*synthesize(tmp_path / "plain", 3000, seed=2, progress=False))
    assert read_all(*synthesize(tmp_path / "again", 3000, seed=2, migrations=(), progress=False)) == plain


@pytest.mark.parametrize("spec, message", [
    ("TO BT BT SA", "A_LABEL->B_LABEL:FRACTION"),
    ("TO BT BT SA->TO BR SA", "A_LABEL->B_LABEL:FRACTION"),
    ("TO BT BT SA->TO QQ SA:0.1", "unknown step 'QQ'"),
    ("TO BT BT SA->TO BT BT SA:0.1", "are the same"),
    ("TO BT BT SA->TO BR SA:2", "fraction in"),
    ("BT SA->TO BR SA:0.1", "start with TO"),
])
def test_bad_migrations(tmp_path, spec, message):
    with pytest.raises(InputError, match=message):
        synthesize(tmp_path / "bad", 10, migrations=[spec], progress=False)
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------- SEvt folders

from photonab.flags import ERAS  # noqa: E402
from photonab.synth.sevt import SLOTS, event_folders, synthesize_sevt  # noqa: E402

SEVT_N = 12_000
SEVT_FILES = ("photon", "record", "seq", "hit", "domain", "genstep")


@pytest.fixture(scope="module")
def sevt_aligned(tmp_path_factory):
    out = tmp_path_factory.mktemp("sevt")
    [(a, b)] = synthesize_sevt(out, SEVT_N, seed=4, progress=False)
    return out, a, b


@pytest.fixture(scope="module")
def sevt_unaligned(tmp_path_factory):
    out = tmp_path_factory.mktemp("sevt_u")
    [(a, b)] = synthesize_sevt(out, SEVT_N, seed=4, aligned=False, progress=False)
    return out, a, b


def load(folder):
    return {name: np.load(folder / f"{name}.npy") for name in SEVT_FILES}


def meta(folder):
    return dict(line.split(":", 1) for line in (folder / "NPFold_meta.txt").read_text().splitlines())


def reference_nibbles(flags):
    """Slot nibbles straight from the flag values: FFS(flag) & 0xF, 0 for no point."""
    f = flags.astype(np.int64)
    with np.errstate(divide="ignore"):
        ffs = np.where(f > 0, np.log2(np.where(f > 0, f & -f, 1)).astype(np.int64) + 1, 0)
    return ffs & 0xF


def reference_words(nibbles):
    """(n, 2) words by Python integers: slot s in word s // 16 at bits 4 (s % 16)."""
    out = np.zeros((len(nibbles), 2), np.uint64)
    for i, row in enumerate(nibbles):
        words = [0, 0]
        for s, nib in enumerate(row):
            words[s // 16] |= int(nib) << (4 * (s % 16))
        out[i] = words
    return out


def labels(seq, era="2025-06"):
    abbr = ERAS[era].abbr
    out = []
    for w0, w1 in seq[:, 0]:
        nibs = [(int(w0) >> 4 * s) & 0xF for s in range(16)] + [(int(w1) >> 4 * s) & 0xF for s in range(16)]
        out.append(" ".join(abbr[n] for n in nibs if n))
    return np.array(out)


def test_sevt_layout_shapes_dtypes(sevt_aligned):
    out, a, b = sevt_aligned
    assert a == out / "ALL0_synth" / "A000" and b == out / "ALL0_synth" / "B000"
    assert (a, b) == event_folders(out)
    for folder in (a, b):
        arrays = load(folder)
        n_hit = len(arrays["hit"])
        shapes = {"photon": (SEVT_N, 4, 4), "record": (SEVT_N, SLOTS, 4, 4), "seq": (SEVT_N, 2, 2),
                  "hit": (n_hit, 4, 4), "domain": (2, 4, 4), "genstep": (1, 6, 4)}
        for name, arr in arrays.items():
            assert arr.shape == shapes[name], name
            assert arr.dtype == (np.uint64 if name == "seq" else np.float32), name
        index = (folder / "NPFold_index.txt").read_text().splitlines()
        assert sorted(index) == sorted(f"{name}.npy" for name in SEVT_FILES)
        m = meta(folder)
        assert int(m["NumPhotonCollected"]) == SEVT_N and int(m["NumHit"]) == n_hit
        assert int(m["hitmask"]) == ERAS["2025-06"].flag_bit["SURFACE_DETECT"]
        assert m["era"] == "2025-06" and int(m["MaxBounce"]) == SLOTS - 1 and m["index"] == "0"
        cfg = arrays["domain"][1].view(np.uint32)
        assert cfg[1, 0] == SLOTS and cfg[2, 2] == SEVT_N and cfg[2, 3] == n_hit
        assert arrays["domain"][0, 1].tolist() == [1000, 1000, 1000, 10]
    assert meta(a)["simulator"] != meta(b)["simulator"]


def test_sevt_seq_matches_the_record_flags_beyond_16_steps(sevt_aligned):
    _, a, _ = sevt_aligned
    arrays = load(a)
    q3 = arrays["record"].view(np.uint32)[:, :, 3]
    flags, boundary = q3[..., 0] & 0xFFFF, (q3[..., 0] >> 16) & 0x7FFF
    nibbles = reference_nibbles(flags)
    nstep = (nibbles != 0).sum(axis=1)
    long = np.flatnonzero(nstep > 16)
    assert long.size > 20  # TIR-trapped photons bounce beyond the first word
    assert nstep.max() == SLOTS
    pick = np.concatenate([long, np.arange(500)])
    assert np.array_equal(arrays["seq"][pick, 0], reference_words(nibbles[pick]))
    assert np.array_equal(arrays["seq"][pick, 1], reference_words(boundary[pick] & 0xF))
    assert (arrays["seq"][nstep <= 16, 0, 1] == 0).all()
    # the first point of every photon is the torch, in this era's code
    assert ((arrays["seq"][:, 0, 0] & np.uint64(0xF)) == ERAS["2025-06"].nibble["TO"]).all()
    # points are contiguous from slot 0 and the record is zero beyond the last
    assert np.array_equal(nibbles != 0, np.arange(SLOTS) < nstep[:, None])
    assert not arrays["record"][np.arange(SLOTS) >= nstep[:, None]].any()
    assert "BR BR BR BR" in " ".join(labels(arrays["seq"][long]))


def test_sevt_photon_is_the_last_point_and_flagmask_the_or(sevt_aligned):
    _, a, _ = sevt_aligned
    arrays = load(a)
    rec, ph = arrays["record"], arrays["photon"]
    q3 = rec.view(np.uint32)[:, :, 3]
    nstep = ((q3[..., 0] & 0xFFFF) != 0).sum(axis=1)
    last = rec[np.arange(SEVT_N), nstep - 1]
    assert np.array_equal(ph[:, (0, 2)], last[:, (0, 2)])
    assert np.array_equal(ph[:, 1, :3], last[:, 1, :3])
    pu = ph.view(np.uint32)
    assert np.array_equal(pu[:, 3, 0], last.view(np.uint32)[:, 3, 0])
    assert np.array_equal(pu[:, 3, 2], np.arange(SEVT_N))  # photon index
    assert np.array_equal(pu[:, 3, 3], np.bitwise_or.reduce(q3[..., 0] & 0xFFFF, axis=1))
    mom = ph[:, 1, :3].astype(np.float64)
    assert np.abs(np.linalg.norm(mom, axis=1) - 1).max() < 1e-5


def test_sevt_hits_are_the_flagmask_selection(sevt_aligned):
    _, a, b = sevt_aligned
    sd = ERAS["2025-06"].flag_bit["SURFACE_DETECT"]
    for folder in (a, b):
        arrays = load(folder)
        fm = arrays["photon"].view(np.uint32)[:, 3, 3]
        expect = arrays["photon"][(fm & sd) == sd]
        assert 0.05 * SEVT_N < len(expect) < 0.2 * SEVT_N
        assert arrays["hit"].tobytes() == expect.tobytes()
        hu = arrays["hit"].view(np.uint32)
        assert (hu[:, 1, 3] >> 16 == 1).all() and ((hu[:, 3, 1] & 0xFFFFFF) >= 1).all()  # hit count, sensor


def test_sevt_dropouts_on_each_side(sevt_aligned, sevt_unaligned):
    for _, a, b in (sevt_aligned, sevt_unaligned):
        la, lb = labels(np.load(a / "seq.npy")), labels(np.load(b / "seq.npy"))
        assert np.count_nonzero(la == "TO BT BT EX") == 15 and np.count_nonzero(lb == "TO BT BT EX") == 0
        assert np.count_nonzero(lb == "TO BT BT NA") == 15 and np.count_nonzero(la == "TO BT BT NA") == 0


def test_sevt_aligned_and_unaligned(sevt_aligned, sevt_unaligned):
    from photonab.synth import read_manifest
    out, a, b = sevt_aligned
    A, B = load(a), load(b)
    same = (A["seq"][:, 0] == B["seq"][:, 0]).all(axis=1)
    assert 0.99 < same.mean() < 1.0  # the dropouts and a few re-drawn photons differ
    manifest = read_manifest(out / "ALL0_synth")
    moved = manifest["events"][0]["migrations"]
    assert sum(r["photons"] for r in moved) == np.count_nonzero(~same)
    assert {"a": "TO BT BT EX", "b": "TO BT BT SD", "photons": 15} in moved
    d = np.abs(A["record"][same] - B["record"][same])
    # B's float noise, plus the float32 rounding of the sum (ulp 6e-5 mm at 700 mm, 1e-6 ns at 10 ns)
    assert d[..., 0, :3].max() <= 1e-3 + 1.3e-4 and d[..., 0, 3].max() <= 1e-5 + 2e-6
    assert d[..., 0, :3].max() > 0
    assert np.array_equal(A["record"][same][..., 2, :], B["record"][same][..., 2, :])  # pol, wavelength
    # unaligned: photon by photon the histories agree only by chance, the frequencies agree
    _, a, b = sevt_unaligned
    A, B = load(a), load(b)
    same = (A["seq"][:, 0] == B["seq"][:, 0]).all(axis=1)
    assert same.mean() < 0.7
    la, lb = labels(A["seq"]), labels(B["seq"])
    top = "TO BT BT SA"
    fa, fb = np.count_nonzero(la == top), np.count_nonzero(lb == top)
    assert abs(fa - fb) < 5 * np.sqrt(fa + fb)
    assert np.array_equal(A["record"][:, 0, 0, 2], np.full(SEVT_N, -450, np.float32))  # torch plane


def test_sevt_same_seed_same_bytes_and_era_codes(tmp_path, sevt_aligned):
    out, a, b = sevt_aligned
    [(a2, b2)] = synthesize_sevt(tmp_path, SEVT_N, seed=4, progress=False)
    for x, y in ((a, a2), (b, b2)):
        for name in SEVT_FILES:
            assert (x / f"{name}.npy").read_bytes() == (y / f"{name}.npy").read_bytes(), name
        strip = lambda m: {k: v for k, v in m.items() if not k.startswith("t_")}  # noqa: E731
        assert strip(meta(x)) == strip(meta(y))
    [(a3, _)] = synthesize_sevt(tmp_path / "s5", 2000, seed=5, progress=False)
    assert (a3 / "seq.npy").read_bytes() != (a / "seq.npy").read_bytes()[:len((a3 / "seq.npy").read_bytes())]
    # another era: the same photons, other codes (TORCH is nibble d before 2025-06)
    [(a4, _)] = synthesize_sevt(tmp_path / "e", 2000, seed=4, era="2020-12", progress=False)
    seq4 = np.load(a4 / "seq.npy")
    assert ((seq4[:, 0, 0] & np.uint64(0xF)) == ERAS["2020-12"].nibble["TO"]).all()
    assert list(labels(seq4, "2020-12")) == list(labels(np.load(a / "seq.npy")[:2000]))
    pairs = synthesize_sevt(tmp_path / "many", 500, seed=4, events=3, maxrec=8, progress=False)
    assert [p[0].name for p in pairs] == ["A000", "A001", "A002"]
    assert np.load(pairs[0][0] / "record.npy").shape == (500, 8, 4, 4)
    assert (np.load(pairs[0][0] / "seq.npy") != np.load(pairs[1][0] / "seq.npy")).any()


@pytest.mark.parametrize("kwargs, message", [
    (dict(era="2019"), "flag table of 2020-12 or 2025-06"),
    (dict(maxrec=33), "maxrec = 33 must be in 1..32"),
    (dict(photons=0), "photons = 0 must be >= 1"),
    (dict(misaligned=2), "fraction"),
    (dict(noise_mm=float("nan")), "finite"),
])
def test_sevt_bad_arguments(tmp_path, kwargs, message):
    args = dict(photons=10, progress=False) | kwargs
    with pytest.raises(InputError, match=message):
        synthesize_sevt(tmp_path / "bad", **args)
    assert not (tmp_path / "bad").exists()


def test_sevt_interrupted_run_leaves_no_folder(tmp_path, monkeypatch):
    import photonab.synth.sevt as sevt

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sevt, "_encode", broken)
    with pytest.raises(KeyboardInterrupt):
        synthesize_sevt(tmp_path, 100, progress=False)
    assert list((tmp_path / "ALL0_synth").iterdir()) == []
