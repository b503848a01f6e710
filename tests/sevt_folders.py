"""Small SEvt folders for the tests (np.save of photon, record, seq, hit, domain, metadata)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from photonab import seqhis


def seq_words(labels, era="2025-06") -> np.ndarray:
    """(N, 2) uint64 history words of a list of labels."""
    return np.array([seqhis.code2(l, era) for l in labels], np.uint64).reshape(-1, 2)


def random_histories(rng, n, era="2025-06", source="TO", n_codes=12, long_fraction=0.1) -> np.ndarray:
    """(n, 2) words: n_codes plausible histories (some beyond 16 steps), Zipf-like frequencies."""
    pool = []
    mid = ["BT", "BR", "SC", "RE", "BT", "BT"]
    for k in range(n_codes):
        steps = 2 + (k % 5) + (20 if rng.random() < long_fraction else 0)
        body = [mid[i] for i in rng.integers(0, len(mid), steps - 2)]
        pool.append(" ".join([source] + body + [["SA", "SD", "AB"][k % 3]]))
    pool = list(dict.fromkeys(pool))
    p = 1.0 / np.arange(1, len(pool) + 1)
    words = seq_words(pool, era)
    return words[rng.choice(len(pool), n, p=p / p.sum())]


def write_sevt(path, seqhis=None, *, n=None, photon=True, maxrec=0, hits=None, meta=None, index=True,
               domain=False) -> Path:
    """An SEvt folder; ``seqhis`` (N, 2) words becomes seq.npy (seqbnd zero)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    n = len(seqhis) if seqhis is not None else (n or 0)
    keys = []
    if seqhis is not None:
        seq = np.zeros((n, 2, 2), np.uint64)
        seq[:, 0] = seqhis
        np.save(path / "seq.npy", seq)
        keys.append("seq.npy")
    if photon:
        ph = np.zeros((n, 4, 4), np.float32)
        ph[:, 3, 2].view(np.uint32)[:] = np.arange(n, dtype=np.uint32)
        np.save(path / "photon.npy", ph)
        keys.append("photon.npy")
    if maxrec:
        np.save(path / "record.npy", np.zeros((n, maxrec, 4, 4), np.float32))
        keys.append("record.npy")
    if hits is not None:
        np.save(path / "hit.npy", np.zeros((hits, 4, 4), np.float32))
        keys.append("hit.npy")
    if domain:
        np.save(path / "domain.npy", np.zeros((2, 4, 4), np.float32))
        keys.append("domain.npy")
    meta = {"NumPhotonCollected": n, "MaxBounce": 31, "site": "SEvt::endMeta", "hitmask": 8192,
            "index": 0, "t_BeginOfEvent": 1745996063332040, **(meta or {})}
    (path / "NPFold_meta.txt").write_text("".join(f"{k}:{v}\n" for k, v in meta.items()))
    if index:
        (path / "NPFold_index.txt").write_text("".join(k + "\n" for k in keys))
    return path


def write_pair(root, seq_a, seq_b, **kw) -> tuple[Path, Path]:
    root = Path(root)
    return write_sevt(root / "A000", seq_a, **kw), write_sevt(root / "B000", seq_b, **kw)
