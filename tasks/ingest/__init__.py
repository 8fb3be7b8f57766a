"""Ingest: archive walking, the WFDB and hospital-format readers, harmonization, labels, record rows."""

from __future__ import annotations
