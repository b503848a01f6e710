"""The one parser of photon counts with k/M/G suffixes (``--msli``, ``--photons``,
``--sizes``, ``--limit``): ``'100k'`` -> 100000, ``'1M'`` -> 1000000, ``'2.5M'`` -> 2500000."""
from __future__ import annotations

import re
from decimal import Decimal

_COUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)\s*$")
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_count(text: str, what: str = "count") -> int:
    """A whole count >= 0 from ``text`` (k = 1000, M = 10**6, G = 10**9; a decimal such
    as 2.5M must come to a whole number). ValueError saying what is wrong otherwise."""
    m = _COUNT.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"{text!r} is not a {what} like 1000, 100k or 1M")
    value = Decimal(m.group(1)) * _SCALE[m.group(2).lower()]
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole {what}")
    return int(value)
