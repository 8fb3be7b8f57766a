"""Site and device profiles (sites.json) and what a device does to the signal: its analog
bandwidth and its ADC (gain, resolution, baseline, clipping at the rails).

Sites differ in sampling rate, ADC, mains frequency, filters, noise, artifact rates, MI
prevalence, age and sex mix and heart rate, so that a model trained on some sites meets a real
distribution shift on a held-out one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from scipy import signal

from tasks.synth.resources import load_json

NAN_DIGITAL = -32768  # WFDB format 16 marks a missing sample with this value


@dataclass(frozen=True)
class SiteProfile:
    """One site and its device, as in sites.json."""

    name: str
    device: str
    fs: int
    adc_gain: float  # ADC units per mV
    adc_res: int  # bits
    adc_baseline: int  # ADC value of 0 mV
    mains_hz: float
    highpass_hz: float
    lowpass_hz: float
    noise_floor_mv: float
    mi_prevalence: float
    age_mean: float
    age_sd: float
    female_share: float
    hr_shift_bpm: float
    weight: float
    extra_recordings_mean: float
    mason_likar_rate: float  # share of records with torso limb electrodes
    artifacts: dict[str, dict[str, Any]]

    @property
    def digital_range(self) -> tuple[int, int]:
        """Lowest and highest ADC value the device can write (the rails)."""
        half = 2 ** (self.adc_res - 1)
        return max(self.adc_baseline - half, NAN_DIGITAL + 1), min(self.adc_baseline + half - 1, 32767)

    @property
    def rail_mv(self) -> float:
        """The smaller distance from 0 mV to a rail, in mV."""
        lo, hi = self.digital_range
        return min(hi - self.adc_baseline, self.adc_baseline - lo) / self.adc_gain


@cache
def all_sites() -> tuple[SiteProfile, ...]:
    return tuple(SiteProfile(**s) for s in load_json("sites.json")["sites"])


def site(name: str) -> SiteProfile:
    for s in all_sites():
        if s.name == name:
            return s
    raise ValueError(f"unknown site {name!r}")


def first_sites(k: int) -> tuple[str, ...]:
    """Names of the first `k` profiles (the `--sites K` choice)."""
    names = tuple(s.name for s in all_sites())
    if not 1 <= k <= len(names):
        raise ValueError(f"--sites must be between 1 and {len(names)}, got {k}")
    return names[:k]


@cache
def _bandpass(fs: int, highpass_hz: float, lowpass_hz: float) -> np.ndarray:
    """Single-pole high-pass (as in analog front ends) and a 2nd-order Butterworth low-pass."""
    hp = signal.butter(1, highpass_hz, "highpass", fs=fs, output="sos")
    lp = signal.butter(2, lowpass_hz, "lowpass", fs=fs, output="sos")
    return np.vstack([hp, lp])


def device_filter(profile: SiteProfile, x: np.ndarray) -> np.ndarray:
    """The device bandwidth applied causally along axis 0, started in steady state."""
    sos = _bandpass(profile.fs, profile.highpass_hz, profile.lowpass_hz)
    zi = signal.sosfilt_zi(sos)[:, :, None] * x[0][None, None, :]
    return signal.sosfilt(sos, x, axis=0, zi=zi)[0]


def quantize(profile: SiteProfile, mv: np.ndarray) -> np.ndarray:
    """mV -> int16 ADC values with the site's gain and baseline, clipped at the rails; NaN -> missing."""
    lo, hi = profile.digital_range
    digital = np.rint(np.nan_to_num(mv) * profile.adc_gain) + profile.adc_baseline
    out = np.clip(digital, lo, hi).astype(np.int16)
    out[np.isnan(mv)] = NAN_DIGITAL
    return out
