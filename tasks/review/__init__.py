"""Clinician review: the screening worklist, ECG rendering and adjudications."""

from __future__ import annotations
