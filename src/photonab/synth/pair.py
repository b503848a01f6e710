"""Event B from event A: re-drawn (misaligned) photons, explicit history migrations,
float noise and deliberate faults."""
from __future__ import annotations

import numpy as np

from ..events import Domains
from .compress import _short
from .physics import Slot, Tracks, _remix, propagate
from .scene import NOISE_BINS, REDRAW_BATCH, REDRAW_ROUNDS


def _event_b(words, a: Tracks, mis: np.ndarray, want: np.ndarray | None = None) -> Tracks:
    """B's tracks: A's, except re-drawn photons re-propagated with new numbers.

    ``mis`` marks the photons to re-draw. ``want`` (uint64 per photon, or None) is the B
    history a re-drawn photon must reach: 0 = any history other than A's (a misaligned
    photon: after REDRAW_ROUNDS calls it keeps its last variant even if that equals A's),
    else exactly that code (an explicit migration: a photon that never reaches it keeps
    A's track, so it does not migrate).
    """
    pending = np.flatnonzero(mis)
    parts = []
    for round_ in range(REDRAW_ROUNDS):
        if pending.size == 0:
            break
        p = pending.size
        w = np.concatenate([words[pending]] * REDRAW_BATCH)
        attempts = np.arange(round_ * REDRAW_BATCH, (round_ + 1) * REDRAW_BATCH) + 1
        # same torch photon (slot 0), new propagation numbers for every variant
        w[:, 1:] = _remix(w[:, 1:], np.repeat(attempts, p)[:, None, None])
        redo = propagate(w)
        variants = redo.seqhis.reshape(REDRAW_BATCH, p)
        differ = (variants != a.seqhis[pending]).T
        if want is not None:
            target = want[pending]
            explicit = target != 0
            differ[explicit] = (variants[:, explicit] == target[explicit]).T
        last = round_ == REDRAW_ROUNDS - 1
        found = differ.any(axis=1)
        done = found | last
        pick = np.where(found, differ.argmax(axis=1), REDRAW_BATCH - 1)
        keep = found if want is None else found | (want[pending] == 0)
        k = np.flatnonzero(done & keep)
        parts.append((pending[k], redo.take(pick[k] * p + k)))
        pending = pending[~done]
    return a.replaced(parts)


def _with_noise(b: Tracks, noise: np.ndarray, dom: Domains) -> Tracks:
    """B with float noise within +-NOISE_BINS of a bin on record x, y, z, t (new arrays)."""
    scale = [np.float32(NOISE_BINS / 127.5 * bin) for bin in [dom.pos_bin] * 3 + [dom.time_bin]]
    per_photon = noise.shape[1]

    def jitter(codes, c):
        byte = ((codes >> np.uint32(8 * c)) & 0xFF).astype(np.float32)
        return (byte - np.float32(127.5)) * scale[c]

    slots = []
    for r, s in enumerate(b.slots):
        codes = noise.reshape(-1)[s.ids * per_photon + r]
        pos = np.stack([s.pos[c] + jitter(codes, c) for c in range(3)])
        slots.append(Slot(s.ids, pos, _keep_side(s.t, s.t + jitter(codes, 3), dom), s.pol, s.meta))
    codes = noise.reshape(-1)[np.arange(b.n) * per_photon + b.nstep - 1]  # the last slot's
    end = np.stack([b.end[c] + jitter(codes, c) for c in range(4)])
    return Tracks(slots, *(end if f == "end" else getattr(b, f) for f in Tracks._PER_PHOTON))


def _keep_side(t_a, t_b, dom: Domains):
    """``t_b``, except where noise moved a time across the end of the time domain.

    There the stored value would jump to -32768 and a healthy photon look FATAL.
    Positions need no such care: the container lies well inside the position domain.
    """
    t0, tmax = float(dom.t0), float(dom.tmax)
    k = np.flatnonzero(t_a > np.float32(t0 + 0.999 * tmax))  # noise is ~3e-6 tmax
    if k.size:
        outside_a = _short(t_a[k], t0, tmax) == 0x8000
        outside_b = _short(t_b[k], t0, tmax) == 0x8000
        flip = k[outside_a != outside_b]
        t_b[flip] = t_a[flip]
    return t_b


def _apply_faults(b: Tracks, a: Tracks, faults) -> None:
    """Shift B's records of photons whose history is the fault's label in A and B.

    Runs after _with_noise, so B's position arrays are its own; polarization arrays are
    still shared with A and get replaced, not modified.
    """
    for f in faults:
        hit = (a.seqhis == f.code) & (b.seqhis == f.code)
        if not hit.any():
            continue
        for s in b.slots:
            k = np.flatnonzero(hit[s.ids])
            if k.size == 0:
                continue
            if f.kind == "pos":
                s.pos[:, k] += np.float32(f.shift)
            elif f.kind == "time":
                s.t[k] += np.float32(f.shift)
            else:  # keep components in the encodable range -1..1
                s.pol = s.pol.copy()
                s.pol[:, k] = np.clip(s.pol[:, k] + np.float32(f.shift), -1, 1)


