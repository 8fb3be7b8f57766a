"""Physiologically consistent synthetic multi-site 12-lead ECG archives with ground truth.

dipole (3-D Gaussian-wave heart vector with HRV) -> pathology (MI, confounders as dipole changes)
-> leadfield (Dower projection, Einthoven/Goldberger derivation) -> sites (device filter, ADC)
-> artifacts (per lead, recorded as truth) -> wfdbfmt / archive (PTB-XL layout, sharded, parallel).
Parameters live in physiology.json and sites.json.
"""

from __future__ import annotations
