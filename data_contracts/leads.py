"""The canonical 12-lead layout every stored waveform follows, and the names sources use for it."""

from __future__ import annotations

CANONICAL_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip

# Contiguous-lead groups of the MI territories (anterior: septal and anterior wall, V1-V4; inferior;
# lateral: high lateral I, aVL and low lateral V5, V6), the one definition the feature criteria,
# the permutation importance and the score explanations share.
TERRITORIES: dict[str, tuple[str, ...]] = {
    "anterior": ("V1", "V2", "V3", "V4"),
    "inferior": ("II", "III", "aVF"),
    "lateral": ("I", "aVL", "V5", "V6"),
}

# Source spellings seen in WFDB/PhysioNet headers, matched after lower-casing and stripping
# spaces, dashes and underscores ("AVR", "aVR", "avr", "lead II", "MLII" is not a 12-lead name).
_ALIASES: dict[str, str] = {
    "i": "I", "leadi": "I", "di": "I",
    "ii": "II", "leadii": "II", "dii": "II",
    "iii": "III", "leadiii": "III", "diii": "III",
    "avr": "aVR", "leadavr": "aVR", "-avr": "aVR",
    "avl": "aVL", "leadavl": "aVL",
    "avf": "aVF", "leadavf": "aVF",
    **{f"v{k}": f"V{k}" for k in range(1, 7)},
    **{f"leadv{k}": f"V{k}" for k in range(1, 7)},
    **{f"c{k}": f"V{k}" for k in range(1, 7)},
}  # fmt: skip


def canonical_lead(name: str) -> str | None:
    """The canonical name of a source lead label, or None when it is not one of the 12 leads
    (Frank x/y/z, vx/vy/vz, respiration, ...)."""
    key = name.strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    return _ALIASES.get(key)
