"""The 128-bit history kernel (cyext.History128Counter) against a numpy reference."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import _unshadow_cyext

cyext = _unshadow_cyext()


def reference(seq_a, seq_b):
    """np.unique over (lo, hi) void views: {(lo, hi): (a, b, first_a, first_b)}."""
    out = {}
    for side, seq in enumerate((seq_a, seq_b)):
        words = np.ascontiguousarray(seq, dtype=np.uint64).reshape(-1, 2)
        keys = words.view(np.dtype((np.void, 16))).ravel()
        u, first, n = np.unique(keys, return_index=True, return_counts=True)
        for w, x, k in zip(u, first, n):
            lo, hi = np.frombuffer(w.tobytes(), np.uint64)
            row = out.setdefault((int(lo), int(hi)), [0, 0, -1, -1])
            row[side], row[2 + side] = int(k), int(x)
    return out


def as_dict(result):
    lo, hi, counts, first = result
    return {(int(l), int(h)): [int(c[0]), int(c[1]), int(f[0]), int(f[1])]
            for l, h, c, f in zip(lo, hi, counts, first)}


def count(seq_a, seq_b, n_threads=None, chunk=None):
    c = cyext.History128Counter()
    n = len(seq_a)
    chunk = chunk or max(n, 1)
    for start in range(0, n, chunk):
        c.add(seq_a, seq_b, start, min(start + chunk, n), n_threads)
    return c.result()


words = st.sampled_from([0, 1, 0x8ccd, 0xcccccccccccccccc, 2 ** 64 - 1, 0x3])


@settings(max_examples=60, deadline=None)
@given(st.data(), st.integers(0, 300), st.integers(1, 5), st.sampled_from([1, 2]))
def test_counts_and_first_indices_match_numpy(data, n, n_codes, n_threads):
    pool = data.draw(st.lists(st.tuples(words | st.integers(0, 2 ** 64 - 1), words), min_size=n_codes,
                              max_size=n_codes))
    pick = data.draw(st.lists(st.integers(0, n_codes - 1), min_size=2 * n, max_size=2 * n))
    seq = np.array([pool[i] for i in pick], np.uint64).reshape(2, n, 2) if n else np.zeros((2, 0, 2), np.uint64)
    chunk = data.draw(st.sampled_from([None, 1, 7, 4096]))
    got = count(seq[0], seq[1], n_threads, chunk)
    assert as_dict(got) == reference(seq[0], seq[1])
    lo, hi = got[0], got[1]
    assert list(zip(hi, lo)) == sorted(zip(hi, lo))  # sorted by (hi, lo)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2 ** 32), st.integers(1, 60000))
def test_many_distinct_histories(seed, n):
    rng = np.random.default_rng(seed)
    seq = rng.integers(0, 2 ** 64, (2, n, 2), dtype=np.uint64)
    seq[1, ::3] = seq[0, ::3]  # some shared histories
    ref = reference(seq[0], seq[1])
    for n_threads in (1, 2):
        assert as_dict(count(seq[0], seq[1], n_threads)) == ref


def test_every_photon_its_own_history_stays_bounded():
    """More distinct histories than a private table holds: rounds, and exact results."""
    n = 5 * cyext.HISTORY128_ROOM + 17
    seq = np.zeros((2, n, 2), np.uint64)
    seq[0, :, 0] = np.arange(n)
    seq[0, :, 1] = np.arange(n) // 7
    seq[1] = seq[0][::-1]
    results = []
    for n_threads in (1, 2):
        c = cyext.History128Counter()
        c.add(seq[0], seq[1], n_threads=n_threads)
        assert c.rounds > 1 and len(c) == n
        results.append(c.result())
    for x, y in zip(*results):
        assert np.array_equal(x, y)
    lo, hi, counts, first = results[0]
    assert (counts == 1).all()
    assert np.array_equal(first[:, 0], np.arange(n)) and np.array_equal(first[:, 1], n - 1 - np.arange(n))


def test_strided_read_only_views_of_seq_npy(tmp_path):
    rng = np.random.default_rng(1)
    seq = np.zeros((2, 5000, 2, 2), np.uint64)
    seq[..., 0, 0] = rng.integers(0, 9, (2, 5000)) * 16 + 3
    seq[..., 0, 1] = rng.integers(0, 2, (2, 5000))
    seq[..., 1, :] = 99  # seqbnd words must not be read
    for side in (0, 1):
        np.save(tmp_path / f"seq{side}.npy", seq[side])
    a, b = (np.load(tmp_path / f"seq{s}.npy", mmap_mode="r") for s in (0, 1))
    assert as_dict(count(a[:, 0], b[:, 0])) == reference(seq[0, :, 0], seq[1, :, 0])


def test_offset_and_add_counts_merge_exactly():
    rng = np.random.default_rng(2)
    seq = rng.integers(0, 4, (2, 3000, 2)).astype(np.uint64)
    whole = count(seq[0], seq[1])
    merged = cyext.History128Counter()
    for start in (0, 1000, 2000):
        part = cyext.History128Counter()
        part.add(np.ascontiguousarray(seq[0, start:start + 1000]), np.ascontiguousarray(seq[1, start:start + 1000]),
                 offset=start)
        merged.add_counts(*part.result())
    for x, y in zip(whole, merged.result()):
        assert np.array_equal(x, y)


def test_bad_arguments():
    c = cyext.History128Counter()
    with pytest.raises(ValueError, match="differ in length"):
        c.add(np.zeros((3, 2), np.uint64), np.zeros((4, 2), np.uint64))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        c.add(np.zeros((3, 3), np.uint64), np.zeros((3, 3), np.uint64))
    with pytest.raises(ValueError, match="outside"):
        c.add(np.zeros((3, 2), np.uint64), np.zeros((3, 2), np.uint64), 2, 5)
    c.add(np.zeros((0, 2), np.uint64), np.zeros((0, 2), np.uint64))
    assert len(c) == 0 and all(len(x) == 0 for x in c.result())
