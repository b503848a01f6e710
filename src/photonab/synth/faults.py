"""Deliberate B-side deviations (faults) of the 2019 generator, and their spec strings."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .. import seqhis
from ..errors import InputError

@dataclass(frozen=True)
class Fault:
    """A deliberate B-side deviation for photons whose history is ``label`` in A and B.

    kind ``pos`` shifts recorded x,y,z (mm), ``time`` recorded t (ns), ``pol`` recorded
    polarization components, all by ``shift`` before compression, in every record slot.
    """

    label: str
    code: int
    kind: str
    shift: float

    def __str__(self) -> str:
        return f"{self.label}:{self.kind}={self.shift!r}"  # repr: parses back exactly


FAULT_KINDS = {"pos": "mm", "time": "ns", "pol": "polarization units"}

#: Faults of the demo run, with the level each gives at 1M photons. A photon's stored
#: deviation d (counts) against the cuts of section 5: rpost/rtime d=1 INFO, d=2 ERROR,
#: d>=3 FATAL (no WARNING-only d exists there: the 1.1 and 1.6 bin cuts fall between the
#: same two integers); rpol d=1 WARNING, d>=2 FATAL. Healthy photons have d <= 1 in
#: rpost/rtime (B's float noise) and d = 0 in rpol, so they stay INFO.
DEFAULT_FAULTS: tuple[str, ...] = (
    "TO BT BR BT SA:pos=0.06",  # 2.6 position bins: d 2..3 -> rpost FATAL
    "TO BT AB:pos=0.032",  # 1.4 position bins: d 1..2 -> rpost ERROR
    "TO BT SC BT SA:time=0.001",  # 2.7 time bins: d 2..3 -> rtime FATAL
    "TO BR SA:time=0.0005",  # 1.4 time bins: d 1..2 -> rtime ERROR
    "TO BT BT SD:pol=0.005",  # 0.64 polarization bins: d 0..1 -> rpol WARNING
)


def parse_fault(spec) -> Fault:
    """``'TO BT BR BT SA:pos=0.05'`` -> Fault; ``LABEL:time=NS``, ``LABEL:pol=DP`` likewise."""
    if isinstance(spec, Fault):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"fault {spec!r}: expected a string like 'TO BT BT SA:pos=0.05'")
    label, sep, change = spec.rpartition(":")
    if not sep or not label.strip():
        raise InputError(f"fault {spec!r}: expected LABEL:KIND=VALUE, e.g. 'TO BT BT SA:pos=0.05'")
    kind, sep, value = change.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in FAULT_KINDS:
        raise InputError(f"fault {spec!r}: expected KIND=VALUE after the label with KIND one of "
                         f"{', '.join(FAULT_KINDS)} (e.g. pos=0.05)")
    try:
        shift = float(value)
    except ValueError:
        raise InputError(f"fault {spec!r}: {value.strip()!r} is not a number") from None
    if not math.isfinite(shift):
        raise InputError(f"fault {spec!r}: shift must be finite")
    try:
        code = seqhis.code(label)
    except InputError as exc:  # unknown step or too long: say which fault
        raise InputError(f"fault {spec!r}: {exc}") from None
    return Fault(seqhis.label(code), code, kind, shift)

