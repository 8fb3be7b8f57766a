"""Projection of the cardiac dipole onto the 12 leads, and the Einthoven/Goldberger derivation.

The eight independent channels a cart measures (I, II, V1–V6) come from the 3-D dipole through
the Dower lead-field matrix (the 12-lead-from-VCG transform whose pseudo-inverse is the "inverse
Dower" VCG reconstruction), changed per recording where the electrodes sit (`lead_field`): the
torso's gain on each chest lead, the chest electrodes shifted sideways, V1–V2 one intercostal
space high, or Mason–Likar limb electrodes on the torso. III, aVR, aVL and aVF are then derived
from I and II, so Einthoven's and Goldberger's laws hold exactly before quantization, whatever
was added to I and II.
"""

from __future__ import annotations

import numpy as np

LEADS: tuple[str, ...] = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
MEASURED: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
CHEST: tuple[int, ...] = tuple(MEASURED.index(f"V{i}") for i in range(1, 7))

# Dower et al. (1980): rows I, II, V1..V6; columns Frank X (left), Y (feet), Z (back).
DOWER = np.array(
    [
        [0.632, -0.235, 0.059],
        [0.235, 1.066, -0.132],
        [-0.515, 0.157, -0.917],
        [0.044, 0.164, -1.387],
        [0.882, 0.098, -1.277],
        [1.213, 0.127, -0.601],
        [1.125, 0.127, -0.086],
        [0.831, 0.076, 0.230],
    ]
)

# 12 x 8: each output lead as a combination of the measured channels.
DERIVE = np.zeros((12, 8))
DERIVE[0, 0] = DERIVE[1, 1] = 1.0
DERIVE[2][:2] = (-1.0, 1.0)  # III = II - I
DERIVE[3][:2] = (-0.5, -0.5)  # aVR = -(I + II) / 2
DERIVE[4][:2] = (1.0, -0.5)  # aVL = I - II / 2
DERIVE[5][:2] = (-0.5, 1.0)  # aVF = II - I / 2
DERIVE[6:, 2:] = np.eye(6)

# Limb-electrode swaps as 2 x 2 maps of (I, II) -> (I', II').
REVERSALS: dict[str, np.ndarray] = {
    "LA/RA": np.array([[-1.0, 0.0], [-1.0, 1.0]]),  # I' = -I, II' = III
    "LA/LL": np.array([[0.0, 1.0], [1.0, 0.0]]),  # I' = II, II' = I
    "RA/LL": np.array([[1.0, -1.0], [0.0, -1.0]]),  # I' = -III, II' = -II
}


PLACEMENTS: tuple[str, ...] = ("standard", "v1v2_high", "mason_likar")


def _tilt_superior(rows: np.ndarray, degrees: float) -> np.ndarray:
    """Lead vectors (k, 3) turned about the x axis toward the head (an electrode placed higher
    sees the dipole from above: its feet-ward component turns headward)."""
    a = np.deg2rad(degrees)
    y, z = rows[:, 1], rows[:, 2]
    return np.column_stack([rows[:, 0], y * np.cos(a) + z * np.sin(a), z * np.cos(a) - y * np.sin(a)])


def lead_field(
    chest_gain: np.ndarray,
    chest_shift: float = 0.0,
    v1v2_tilt_deg: float = 0.0,
    limb_axis_deg: float = 0.0,
    inferior_gain: float = 1.0,
) -> np.ndarray:
    """The 8 x 3 lead field of one recording. `chest_shift`: the six chest electrodes moved toward
    V6 (positive) or V1 by that fraction of the electrode spacing (each lead vector interpolated,
    or extrapolated at the ends, between its neighbours); `v1v2_tilt_deg`: V1 and V2 placed high;
    `limb_axis_deg`, `inferior_gain`: Mason–Likar limb electrodes, seen as the frontal axis turned
    rightward in I and II and a taller II."""
    field = DOWER.copy()
    chest = DOWER[2:]
    position = np.arange(6) + chest_shift
    low = np.clip(np.floor(position).astype(int), 0, 4)
    weight = (position - low)[:, None]
    field[2:] = ((1.0 - weight) * chest[low] + weight * chest[low + 1]) * chest_gain[:, None]
    field[2:4] = _tilt_superior(field[2:4], v1v2_tilt_deg)
    a = np.deg2rad(limb_axis_deg)
    frontal = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    field[:2] = field[:2] @ frontal
    field[1] *= inferior_gain
    return field


def to_measured(vcg: np.ndarray, field: np.ndarray = DOWER) -> np.ndarray:
    """Dipole (n, 3) -> measured channels (n, 8) in the order of MEASURED, through `field` (8 x 3)."""
    return vcg @ field.T


def to_leads(measured: np.ndarray) -> np.ndarray:
    """Measured channels (n, 8) -> the 12 leads (n, 12) in the order of LEADS. The limb leads
    take I and II only, so a missing (NaN) chest channel stays in its own lead."""
    out = np.empty((measured.shape[0], len(LEADS)))
    out[:, :6] = measured[:, :2] @ DERIVE[:6, :2].T
    out[:, 6:] = measured[:, 2:]
    return out


def reversal_matrix(swap: str) -> np.ndarray:
    """8 x 8 map of the measured channels for a limb-electrode swap (chest channels untouched)."""
    m = np.eye(8)
    m[:2, :2] = REVERSALS[swap]
    return m


def leads_changed_by(matrix: np.ndarray) -> list[str]:
    """Output leads whose content differs once `matrix` (8 x 8) is applied to the channels."""
    changed = ~np.isclose(DERIVE @ matrix, DERIVE).all(axis=1)
    return [lead for lead, c in zip(LEADS, changed, strict=True) if c]
