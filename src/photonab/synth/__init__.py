"""Synthetic A/B event pairs: the 2019 Opticks layout, and SEvt folders (A000/B000).

Real event folders come from a GPU + Geant4 run; this package writes folders of the
same layouts (docs/event-format.md, docs/sevt.md) from a small vectorised optical toy,
so the comparison can be run, tested and profiled anywhere. docs/synth.md describes
the model, the faults, the migrations and the SEvt output.

The scene: a torch (flag TORCH) shoots a cone of photons from a disc in air at a glass
cube; the cube sits inside an absorbing box whose walls absorb (SA) or detect (SD).
At the cube faces photons reflect (BR) or transmit (BT) with the Fresnel probability
of their polarization and incidence angle (total internal reflection included) and
refract by Snell's law; in the bulk they can be absorbed (AB) or Rayleigh-like
scattered (SC). Record slot 0 is the torch start, slots 1..maxrec-1 the steps.

2019 layout (:func:`synthesize`): event A and event B are "the same photons simulated
independently": both consume the same random numbers, except for a fraction
``misaligned`` of photons for which B re-draws its propagation numbers (until the
history differs from A), and the explicit ``migrations`` asked for. B also carries
float noise of at most a tenth of a compression bin on its recorded positions and
times (so a few % of stored values differ by one count, never by two), and the
deliberate faults asked for (:func:`parse_fault`). Its polarizations get no noise:
one polarization count already exceeds the rpol warning cut.

Random numbers are drawn per photon from counter-positioned streams, so the output
depends on (seed, arguments) but not on ``chunk``.

Modules: ``scene`` (the fixed numbers), ``physics`` (random numbers, propagation),
``compress`` (2019 records and domains), ``pair`` (event B from A), ``faults``,
``migrations``, ``writer`` (2019 files), ``scheduler`` (:func:`synthesize`), ``sevt``
(:func:`synthesize_sevt`).
"""
from __future__ import annotations

from .compress import compress, domain_arrays, domains, final_photons
from .faults import DEFAULT_FAULTS, FAULT_KINDS, Fault, parse_fault
from .migrations import DEFAULT_MIGRATIONS, MANIFEST, Migration, parse_migration, read_manifest
from .physics import Slot, Tracks, _physics_words, _torch, propagate
from .scene import EXTENT, TMAX, WL_DOMAIN
from .scheduler import pair_folders, synthesize, usable_cores
from .sevt import event_folders, synthesize_sevt

__all__ = [
    "synthesize", "pair_folders", "synthesize_sevt", "event_folders", "DEFAULT_FAULTS", "FAULT_KINDS", "Fault", "parse_fault",
    "DEFAULT_MIGRATIONS", "Migration", "parse_migration", "read_manifest", "MANIFEST",
    "propagate", "Tracks", "Slot", "compress", "final_photons", "domain_arrays", "domains",
    "EXTENT", "TMAX", "WL_DOMAIN", "usable_cores",
]
