"""What a source states about one recording besides its signal, whatever its format: patient age
and sex, the diagnosis as vocabulary terms and as an MI label, when and with what it was recorded.
WFDB headers give it through `tasks.ingest.header_meta`, hospital exports through `from_export`."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.ingest import labels
from tasks.ingest.labels import Label
from tasks.ingest.readers import Decoded
from tasks.ingest.readers.base import plausible_age


@dataclass(frozen=True)
class RecordMeta:
    """Stated metadata; `patient_id` is only ever hashed, `dx` holds codes or vocabulary terms."""

    age: float | None
    sex: str | None
    dx: list[str] = field(default_factory=list)
    label: Label = field(default_factory=lambda: Label(None, None, "none"))
    recorded_at: str | None = None
    device: str | None = None
    institution: str | None = None
    patient_id: str | None = None
    derived_leads: list[str] = field(default_factory=list)


def from_export(decoded: Decoded) -> RecordMeta:
    """The metadata of a hospital export, its interpretation statements mapped to terms and label."""
    statements = list(decoded.statements)
    return RecordMeta(
        age=plausible_age(decoded.age),
        sex=decoded.sex if decoded.sex in {"M", "F"} else None,
        dx=labels.statement_terms(statements),
        label=labels.from_statements(statements, decoded.format),
        recorded_at=decoded.recorded_at,
        device=decoded.device,
        institution=decoded.institution,
        patient_id=decoded.patient_id,
        derived_leads=list(decoded.derived_leads),
    )
