"""pyarrow schemas of the store tables (DESIGN.md, "Store contract").

Per-record tables are Hive-partitioned by `site` (`records/site=<name>/part-*.parquet`); the
`site` column comes from the directory, so it is not repeated inside the files.
"""

from __future__ import annotations

import pyarrow as pa

from data_contracts.feature_columns import FEATURES
from data_contracts.leads import CANONICAL_LEADS

N_LEADS = len(CANONICAL_LEADS)
FS = 500
WINDOW_SAMPLES = 5000

SITE_FIELD = pa.field("site", pa.string(), nullable=False)
# `records.format`: how the source was stored (null in stores written before formats were recorded)
SOURCE_FORMATS: tuple[str, ...] = (
    "wfdb", "ge_muse_xml", "philips_xml", "hl7_aecg", "dicom", "scp_ecg", "edf",
)  # fmt: skip

RECORDS = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("device", pa.string()),
        pa.field("format", pa.string()),
        pa.field("institution", pa.string()),
        pa.field("recorded_at", pa.string()),  # acquisition time as the source states it, ISO 8601
        pa.field("patient_key", pa.string(), nullable=False),
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("window", pa.int32(), nullable=False),
        pa.field("fs", pa.int32(), nullable=False),
        pa.field("n_samples", pa.int32(), nullable=False),
        pa.field("padded", pa.bool_(), nullable=False),
        pa.field("source_fs", pa.float64(), nullable=False),
        pa.field("source_duration_s", pa.float64(), nullable=False),
        pa.field("leads_missing", pa.list_(pa.string()), nullable=False),
        pa.field("leads_dropped", pa.list_(pa.string()), nullable=False),
        pa.field("leads_derived", pa.list_(pa.string())),  # computed by the source from other leads
        pa.field("age", pa.float32()),
        pa.field("sex", pa.string()),
        pa.field("mi_label", pa.int8()),
        pa.field("mi_territory", pa.string()),
        pa.field("dx", pa.list_(pa.string()), nullable=False),
        pa.field("label_source", pa.string(), nullable=False),
        pa.field("label_version", pa.string(), nullable=False),
        pa.field("strat_fold", pa.int8()),
        pa.field("content_sha256", pa.string(), nullable=False),
        pa.field("ingest_version", pa.string(), nullable=False),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

SIGNAL_TYPE = pa.list_(pa.list_(pa.float32(), WINDOW_SAMPLES), N_LEADS)
WAVEFORMS = pa.schema(
    [pa.field("record_id", pa.string(), nullable=False), pa.field("signal", SIGNAL_TYPE, nullable=False)]
)

QUARANTINE = pa.schema(
    [
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("content_sha256", pa.string()),
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

FLAG_COLUMNS = [f"flags_{lead}" for lead in CANONICAL_LEADS]
# flag names a `flags_<lead>` cell may hold (comma-separated), and the verdicts in increasing severity
QC_FLAGS: tuple[str, ...] = (
    "missing", "flat", "saturation", "amplitude", "powerline", "baseline", "emg", "low_sqi", "reversal",
)  # fmt: skip
QC_VERDICTS: tuple[str, ...] = ("pass", "limited", "reject")
LEAD_VALUES = pa.list_(pa.float32(), N_LEADS)  # one value per canonical lead, NaN where not measurable

QUALITY = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("verdict", pa.string(), nullable=False),
        pa.field("reasons", pa.list_(pa.string()), nullable=False),
        *[pa.field(c, pa.string(), nullable=False) for c in FLAG_COLUMNS],
        # noise indices per lead (definitions in tasks/quality*, thresholds in the QC profile)
        pa.field("powerline", LEAD_VALUES, nullable=False),
        pa.field("baseline", LEAD_VALUES, nullable=False),
        pa.field("emg", LEAD_VALUES, nullable=False),
        pa.field("template_corr", LEAD_VALUES, nullable=False),
        pa.field("kurtosis", LEAD_VALUES, nullable=False),
        pa.field("qc_version", pa.string(), nullable=False),
        pa.field("checked_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

# OUT/scores/ of `msaic score`: one row per window; a rejected window has no probability and
# says why (`unscored_reason`); a positive call names its territory and leads (occlusion).
SCORES = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("window", pa.int32(), nullable=False),
        pa.field("content_sha256", pa.string(), nullable=False),
        pa.field("recorded_date", pa.string()),  # ISO date of acquisition, when the source states one
        pa.field("recorded_at", pa.string()),  # ISO date-time of acquisition as the source states it
        pa.field("device", pa.string()),  # recording device as the source states it (worklist filter)
        pa.field("verdict", pa.string(), nullable=False),
        pa.field("quality_reasons", pa.list_(pa.string()), nullable=False),
        pa.field("flagged_leads", pa.list_(pa.string()), nullable=False),  # "V1: flat" per flagged lead
        pa.field("probability", pa.float32()),
        pa.field("logit", pa.float64()),  # the model's log-odds: ranks calls whose probability reads 1.000
        pa.field("risk", pa.float32()),  # probability calibrated on the validation part (thresholds.json)
        pa.field("risk_band", pa.string()),  # the calibrated risk's band (low, intermediate, high, ...)
        pa.field("flagged", pa.bool_(), nullable=False),
        pa.field("threshold", pa.float32(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("territory", pa.string()),
        pa.field("top_leads", pa.list_(pa.string()), nullable=False),
        pa.field("explanation", pa.string()),
        pa.field("unscored_reason", pa.string()),
        pa.field("qc_version", pa.string(), nullable=False),
        pa.field("score_version", pa.string(), nullable=False),
        pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

# STORE/adjudications/: a reviewer's decision on a screened record, appended, never rewritten; the
# latest decision per record_id counts. `reviewer_key` is a keyed hash of the reviewer's name.
ADJUDICATION_DECISIONS: tuple[str, ...] = ("mi", "not_mi", "unreadable")
ADJUDICATIONS = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("decision", pa.string(), nullable=False),
        pa.field("territory", pa.string()),
        pa.field("reviewer_key", pa.string(), nullable=False),
        pa.field("model_id", pa.string()),
        pa.field("decided_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "records": RECORDS,
    "waveforms": WAVEFORMS,
    "quarantine": QUARANTINE,
    "quality": QUALITY,
    "scores": SCORES,
    "features": FEATURES,
    "adjudications": ADJUDICATIONS,
}
