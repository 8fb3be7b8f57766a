"""The canonical 12-lead layout every stored waveform follows, and the names sources use for it."""

from __future__ import annotations

CANONICAL_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip

LIMB: tuple[str, ...] = CANONICAL_LEADS[:6]  # I, II, III, aVR, aVL, aVF: from the limb electrodes
CHEST: tuple[str, ...] = CANONICAL_LEADS[6:]  # V1-V6: one chest electrode each
LIMB_INDEX: list[int] = [CANONICAL_LEADS.index(lead) for lead in LIMB]
CHEST_INDEX: list[int] = [CANONICAL_LEADS.index(lead) for lead in CHEST]

# The electrodes of a resting 12-lead ECG, and each lead as a combination of their potentials (the
# lead field): Einthoven's and Goldberger's limb leads, and each chest electrode against Wilson's
# central terminal, the mean of RA, LA and LL (so an electrode potential on a limb electrode reaches
# every chest lead at -1/3). Cable swaps, electrode noise and the gate's electrode test share it.
ELECTRODES: tuple[str, ...] = ("RA", "LA", "LL", *CHEST)
LIMB_ELECTRODES: tuple[str, ...] = ELECTRODES[:3]
LIMB_SWAPS: tuple[str, ...] = ("LA/RA", "LA/LL", "RA/LL")  # the limb cable swaps (two electrodes trade)
LEAD_FIELD: tuple[tuple[float, ...], ...] = (
    (-1, 1, 0, 0, 0, 0, 0, 0, 0),
    (-1, 0, 1, 0, 0, 0, 0, 0, 0),
    (0, -1, 1, 0, 0, 0, 0, 0, 0),
    (1, -0.5, -0.5, 0, 0, 0, 0, 0, 0),
    (-0.5, 1, -0.5, 0, 0, 0, 0, 0, 0),
    (-0.5, -0.5, 1, 0, 0, 0, 0, 0, 0),
    *((-1 / 3, -1 / 3, -1 / 3, *(1.0 if j == k else 0.0 for j in range(6))) for k in range(6)),
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
    "avr": "aVR", "leadavr": "aVR",
    "avl": "aVL", "leadavl": "aVL",
    "avf": "aVF", "leadavf": "aVF",
    **{f"v{k}": f"V{k}" for k in range(1, 7)},
    **{f"leadv{k}": f"V{k}" for k in range(1, 7)},
    **{f"c{k}": f"V{k}" for k in range(1, 7)},
}  # fmt: skip


def signed_lead(name: str) -> tuple[str | None, float]:
    """The canonical lead a source channel holds and the sign that turns it into that lead: an
    inverted lead (`-aVR`, as Cabrera-order carts store it) is the lead times -1."""
    stripped = name.strip()
    if stripped.startswith("-"):
        return canonical_lead(stripped[1:]), -1.0
    return canonical_lead(stripped), 1.0


def canonical_lead(name: str) -> str | None:
    """The canonical name of a source lead label, or None when it is not one of the 12 leads
    (Frank x/y/z, vx/vy/vz, respiration, ...)."""
    key = name.strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    return _ALIASES.get(key)


# Channels besides the 12 leads that sources store (Frank and vector leads, rhythm monitor leads,
# respiration): kept by name in `records.leads_dropped`; any other label is stored as its position
# ("channel 13"), since a free-text label may carry anything.
KNOWN_OTHER_CHANNELS: frozenset[str] = frozenset(
    {"x", "y", "z", "vx", "vy", "vz", "mli", "mlii", "mliii", "v", "resp", "abp", "pleth", "pap", "cvp"}
)


def dropped_channel_name(name: str, position: int) -> str:
    """How a channel that is not one of the 12 leads is listed: its label when it is a known
    kind of channel, else its 1-based position."""
    key = name.strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    return name.strip() if key in KNOWN_OTHER_CHANNELS else f"channel {position + 1}"
