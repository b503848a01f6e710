"""Photon step flags and their two-letter abbreviations, by era of the Opticks source.

A history nibble is ``ffs(flag) & 0xF``: the bit position of the step's flag plus one,
0 for an empty slot. Which flag sits at which bit changed over the years, so the same
label has different codes in different eras and a history must be decoded with the
table of its own era (docs/sevt.md, section 2).
"""
from __future__ import annotations

# flag names by bit position 0..14 (bit 15 gives nibble 0: it cannot be recorded)
_BITS_2019 = ("CERENKOV", "SCINTILLATION", "MISS", "BULK_ABSORB", "BULK_REEMIT", "BULK_SCATTER",
              "SURFACE_DETECT", "SURFACE_ABSORB", "SURFACE_DREFLECT", "SURFACE_SREFLECT",
              "BOUNDARY_REFLECT", "BOUNDARY_TRANSMIT", "TORCH", "NAN_ABORT", "G4GUN")
_BITS_2020_12 = _BITS_2019[:14] + ("EFFICIENCY_CULL",)
# 2025-06 on: MISS moved to bit 15 (unrecordable) so that TORCH could take bit 2
_BITS_2025_06 = ("CERENKOV", "SCINTILLATION", "TORCH") + _BITS_2019[3:12] + (
    "NAN_ABORT", "EFFICIENCY_COLLECT", "EFFICIENCY_CULL")

_ABBREVIATIONS = {
    "CERENKOV": "CK", "SCINTILLATION": "SI", "MISS": "MI", "BULK_ABSORB": "AB", "BULK_REEMIT": "RE",
    "BULK_SCATTER": "SC", "SURFACE_DETECT": "SD", "SURFACE_ABSORB": "SA", "SURFACE_DREFLECT": "DR",
    "SURFACE_SREFLECT": "SR", "BOUNDARY_REFLECT": "BR", "BOUNDARY_TRANSMIT": "BT", "TORCH": "TO",
    "NAN_ABORT": "NA", "G4GUN": "GN", "EFFICIENCY_CULL": "EX", "EFFICIENCY_COLLECT": "EC",
}


class FlagTable:
    """The flags of one era: name and abbreviation of each history nibble 1..15."""

    def __init__(self, era: str, bits: tuple[str, ...], abbreviations: dict[str, str]):
        self.era = era
        self.names = bits  # index = bit position = nibble - 1
        self.abbr = {nib: abbreviations[name] for nib, name in enumerate(bits, start=1)}
        self.nibble = {a: nib for nib, a in self.abbr.items()}
        self.flag_bit = {name: 1 << bit for bit, name in enumerate(bits)}

    def __repr__(self):
        return f"<FlagTable {self.era}>"


#: era name -> its table, oldest first; the name is the month the table came into use
ERAS: dict[str, FlagTable] = {
    "2019": FlagTable("2019", _BITS_2019, _ABBREVIATIONS),
    # Oct 2020: G4GUN was renamed __G4GUN, which the Python labels abbreviate as "_N"
    "2020-10": FlagTable("2020-10", _BITS_2019, {**_ABBREVIATIONS, "G4GUN": "_N"}),
    "2020-12": FlagTable("2020-12", _BITS_2020_12, _ABBREVIATIONS),
    "2025-06": FlagTable("2025-06", _BITS_2025_06, _ABBREVIATIONS),
}
#: the era of the 2019 event layout (ox/rx/ph folders)
LEGACY_ERA = "2019"
#: the era of SEvt folders written by the current Opticks
CURRENT_ERA = "2025-06"
