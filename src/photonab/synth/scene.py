"""The toy scene of the synthetic generator and its fixed numbers (mm, ns, nm).

A torch shoots photons from a disc in air at a glass cube inside an absorbing box;
docs/synth.md describes the model.
"""
from __future__ import annotations

import math

# ---------------------------------------------------------------- scene (mm, ns, nm)

C_LIGHT = 299.792458  # mm/ns
CUBE_HALF = 200.0  # glass cube centred on the origin
BOX_HALF = 700.0  # absorbing container walls
N_AIR, N_GLASS = 1.0, 1.5
# bulk lengths (mm): a few % of the photons crossing the cube absorb or scatter in it,
# a fraction of a % scatter in the air
ABSLEN_GLASS, SCATLEN_GLASS = 10_000.0, 10_000.0
ABSLEN_AIR, SCATLEN_AIR = 1_000_000.0, 200_000.0
DETECT_EFFICIENCY = 0.10  # chance that a wall hit is SURFACE_DETECT instead of SURFACE_ABSORB

TORCH_Z = -450.0  # torch disc plane, facing +z towards the cube
TORCH_RADIUS = 150.0
TORCH_CONE = math.radians(20.0)  # half-angle of the emission cone
WAVELENGTH, WAVELENGTH_SPREAD = 430.0, 20.0  # uniform in 420..440 nm

# Material indices (seqmat nibbles, record byte 4/5) and boundary indices (byte 6, ox q3.x).
AIR, GLASS, ROCK = 1, 2, 3
MATERIALS = {AIR: "Air", GLASS: "Glass", ROCK: "Rock"}
BND_NONE, BND_CUBE, BND_WALL = 0, 1, 2

# Compression domains written to fdom.npy (section 2).
EXTENT = 748.0  # covers the container (|x|,|y|,|z| <= 700)
TMAX = 12.0  # ns: ~0.02% of photons (scattered, or trapped in the cube by TIR) overflow to -32768
WL_DOMAIN = (60.0, 820.0, 20.0, 760.0)

NOISE_BINS = 0.1  # B's float noise on record positions/times, in compression bins
# B re-draws a misaligned photon until its history differs from A's, trying REDRAW_BATCH
# variants per propagation call and giving up (keeping the last) after REDRAW_ROUNDS calls
REDRAW_BATCH, REDRAW_ROUNDS = 16, 4
WORDS = 4  # uint32 random words per record slot
