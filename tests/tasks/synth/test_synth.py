"""The synthetic archive generator, checked on files read back with wfdb: lead consistency,
infarction patterns against matched normals, ground truth against the signal, the PTB-XL
contract (statements as a reader wrote them) and byte-for-byte determinism. The effects added
for realism (placement, mimics, infarcts that escape the criteria, ...) are in test_synth_effects."""

from __future__ import annotations

import ast
import hashlib
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from tasks.synth.archive import DATABASE_COLUMNS, SHARD_SIZE, SynthConfig, write_archive
from tasks.synth.leadfield import LEADS, MEASURED, reversal_matrix, to_leads
from tasks.synth.record import RecordSpec, Rendered, plan_shard, render
from tasks.synth.resources import load_json
from tasks.synth.sites import all_sites, first_sites, quantize, site
from tasks.synth.wfdbfmt import write_record

SEED = 11
N_RECORDS = 300
STRESS = 6.0  # artifact rates x6, so that every kind occurs in a small archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthConfig]:
    config = SynthConfig(N_RECORDS, first_sites(len(all_sites())), seed=SEED, artifact_scale=STRESS)
    out = tmp_path_factory.mktemp("synth") / "archive"
    write_archive(config, out, workers=1)
    return out, config


@pytest.fixture(scope="module")
def specs(archive: tuple[Path, SynthConfig]) -> dict[int, RecordSpec]:
    _, c = archive
    return {
        s.ecg_id: s
        for shard in range(c.n_shards)
        for s in plan_shard(c.seed, shard, SHARD_SIZE, c.n_records, c.sites, c.prevalence())
    }


def read_archive_record(out: Path, filename: str) -> wfdb.Record:
    return wfdb.rdrecord(str(out / filename))


def read_back(directory: Path, spec: RecordSpec, artifacts: bool = False) -> tuple[np.ndarray, Rendered]:
    """Render one spec, write it with the archive's writer, read it with wfdb (mV, 12 leads)."""
    profile = site(spec.site)
    rendered = render(spec, artifacts=artifacts)
    name = f"r{spec.ecg_id}_{abs(hash(spec)) % 10**8}"
    write_record(directory, name, quantize(profile, rendered.signal), profile)
    return wfdb.rdrecord(str(directory / name)).p_signal, rendered


def st_deviation(x: np.ndarray, rendered: Rendered, fs: int, after_j_s: float = 0.06) -> np.ndarray:
    """Median over beats of the level at J+60 ms against the PR segment, per lead."""
    r = rendered.r_times
    beats = r[(r > 0.2) & (r < len(x) / fs - 0.5)]
    at = np.rint((beats + rendered.qrs_end + after_j_s) * fs).astype(int)
    base = np.rint((beats[:, None] + np.linspace(-0.08, -0.06, 5)) * fs).astype(int)
    return np.median(x[at] - x[base].mean(axis=1), axis=0)


def q_depth(x: np.ndarray, rendered: Rendered, fs: int) -> np.ndarray:
    """Median over beats of the most negative level in the 50 ms before R against the PR segment."""
    r = rendered.r_times
    beats = r[(r > 0.2) & (r < len(x) / fs - 0.5)]
    window = np.rint((beats[:, None] + np.linspace(-0.05, -0.005, 20)) * fs).astype(int)
    base = np.rint((beats[:, None] + np.linspace(-0.08, -0.06, 5)) * fs).astype(int)
    return np.median(x[window].min(axis=1) - x[base].mean(axis=1), axis=0)


def lead(name: str) -> int:
    return LEADS.index(name)


def patient(pid: int, site_name: str = "site_a", **pathology: object) -> RecordSpec:
    return RecordSpec(
        ecg_id=pid,
        patient_id=pid,
        seed=SEED,
        site=site_name,
        age=60,
        female=pid % 2 == 0,
        strat_fold=1,
        **pathology,
    )


# --- lead consistency ------------------------------------------------------------------------


def test_einthoven_and_goldberger_hold_within_quantization(archive: tuple[Path, SynthConfig]) -> None:
    out, _ = archive
    db = pd.read_csv(out / "ptbxl_database.csv")
    for row in db.itertuples():
        rec = read_archive_record(out, row.filename_hr)
        x, step = rec.p_signal, 1.0 / rec.adc_gain[0]
        einthoven = np.nanmax(np.abs(x[:, lead("II")] - x[:, lead("I")] - x[:, lead("III")]))
        goldberger = np.nanmax(np.abs(x[:, [lead("AVR"), lead("AVL"), lead("AVF")]].sum(axis=1)))
        assert einthoven <= 1.5 * step + 1e-9, row.ecg_id
        assert goldberger <= 1.5 * step + 1e-9, row.ecg_id


def test_writer_matches_wfdb_wrsamp(tmp_path: Path) -> None:
    spec = patient(3, "site_c", mi_type="acute", pattern="stemi", territory="inferior", severity=0.5)
    profile = site(spec.site)
    digital = quantize(profile, render(spec).signal)
    write_record(tmp_path, "rec", digital, profile)
    (tmp_path / "ref").mkdir()
    wfdb.wrsamp(
        "rec",
        fs=profile.fs,
        units=["mV"] * 12,
        sig_name=list(LEADS),
        d_signal=digital,
        fmt=["16"] * 12,
        adc_gain=[profile.adc_gain] * 12,
        baseline=[profile.adc_baseline] * 12,
        write_dir=str(tmp_path / "ref"),
    )
    assert (tmp_path / "rec.dat").read_bytes() == (tmp_path / "ref" / "rec.dat").read_bytes()
    # wrsamp always writes a resolution of 16 bits; the archive states the device's (12 here).
    reference = (tmp_path / "ref" / "rec.hea").read_text().replace("/mV 16 0 ", f"/mV {profile.adc_res} 0 ")
    assert (tmp_path / "rec.hea").read_text() == reference


# --- infarction against matched normals --------------------------------------------------------


@pytest.mark.parametrize(
    ("territory", "leads"), [("anterior", ("V2", "V3", "V4")), ("inferior", ("II", "III", "AVF"))]
)
def test_acute_mi_elevates_st_in_territory_with_reciprocal_depression(
    tmp_path: Path, territory: str, leads: tuple[str, ...]
) -> None:
    """Where the reciprocal depression shows depends on the heart's orientation, which differs
    between patients; that it shows in some lead away from the territory follows from projection."""
    for pid in range(1, 6):
        normal = patient(pid)
        ref, rendered = read_back(tmp_path, normal)
        base = st_deviation(ref, rendered, 500)
        rises = []
        for severity in (0.2, 0.5, 0.9):
            mi = replace(normal, mi_type="acute", pattern="stemi", territory=territory, severity=severity)
            x, rendered = read_back(tmp_path, mi)
            rises.append(st_deviation(x, rendered, 500) - base)
        idx = [lead(n) for n in leads]
        assert (rises[0][idx] > 0.02).sum() >= 2, (pid, rises[0][idx])  # subtle is still there
        assert (rises[1][idx] > 0.1).sum() >= 2, (pid, rises[1][idx])  # >= 1 mm in 2 leads at moderate
        assert (np.diff(np.array(rises)[:, idx], axis=0) > 0).all()  # graded
        away = [j for j in range(len(LEADS)) if LEADS[j] not in leads]
        assert rises[2][away].min() < -0.05, (pid, rises[2])


@pytest.mark.parametrize(
    ("territory", "leads"), [("anterior", ("V2", "V3", "V4")), ("inferior", ("II", "III", "AVF"))]
)
def test_old_mi_makes_q_waves_in_territory(tmp_path: Path, territory: str, leads: tuple[str, ...]) -> None:
    for pid in range(1, 6):
        normal = patient(pid)
        ref, rendered = read_back(tmp_path, normal)
        scar_spec = replace(normal, mi_type="old", pattern="q_wave", territory=territory, severity=0.6)
        x, scar = read_back(tmp_path, scar_spec)
        idx = [lead(n) for n in leads]
        depth = q_depth(x, scar, 500)[idx]
        deeper = depth - q_depth(ref, rendered, 500)[idx]
        assert (depth < -0.1).sum() >= 2, (pid, depth)  # in two leads of the territory, as the criterion
        assert (deeper < -0.05).sum() >= 2, (pid, deeper)  # deeper than the normal q (or S) there


def test_confounders_change_st_without_mi_codes(tmp_path: Path) -> None:
    normal = patient(7)
    ref, rendered = read_back(tmp_path, normal)
    base = st_deviation(ref, rendered, 500)
    x, lbbb = read_back(tmp_path, replace(normal, confounder="LBBB", confounder_severity=1.0))
    assert st_deviation(x, lbbb, 500)[lead("V2")] - base[lead("V2")] > 0.1  # discordant ST elevation
    assert lbbb.qrs_end > rendered.qrs_end + 0.04  # wide QRS


# --- ground truth against the signal -----------------------------------------------------------


def _mains_amplitude(x: np.ndarray, fs: int, hz: float) -> tuple[float, float]:
    """Amplitude at `hz` and the median amplitude of the 35-75 Hz band (10-s records: 0.1 Hz bins)."""
    spectrum = np.abs(np.fft.rfft(x)) * 2 / len(x)
    freqs = np.fft.rfftfreq(len(x), 1 / fs)
    band = (freqs > 35) & (freqs < 75)
    return float(spectrum[np.argmin(np.abs(freqs - hz))]), float(np.median(spectrum[band]))


def test_every_truth_row_matches_the_signal(
    archive: tuple[Path, SynthConfig], specs: dict[int, RecordSpec]
) -> None:
    out, config = archive
    checked: Counter[str] = Counter()
    db = pd.read_csv(out / "ptbxl_database.csv").set_index("ecg_id")
    arts = pd.read_parquet(out / "truth_artifacts.parquet")
    assert set(arts["artifact"]) == {
        "flat", "missing", "saturation", "amplitude", "powerline", "baseline", "emg", "reversal"
    }  # fmt: skip
    for ecg_id, spec in specs.items():
        profile = site(spec.site)
        rec = wfdb.rdrecord(str(out / db.loc[ecg_id, "filename_hr"]), physical=False)
        digital = rec.d_signal.astype(float)
        clean = render(spec, artifacts=False, artifact_scale=config.artifact_scale).signal
        expected = quantize(profile, clean).astype(float)
        rows = arts[arts["ecg_id"] == ecg_id]
        kinds = rows.groupby("lead")["artifact"].agg(set).to_dict()
        for j, name in enumerate(LEADS):
            x, lead_kinds = digital[:, j], kinds.get(name, set())
            if not lead_kinds:
                assert np.array_equal(x, expected[:, j]), (ecg_id, name)  # untouched leads are exactly clean
                continue
            diff = (x - expected[:, j]) / profile.adc_gain
            for row in rows[rows["lead"] == name].itertuples():
                alone = lead_kinds == {row.artifact}
                checked[row.artifact] += alone
                if row.artifact == "flat":
                    assert np.ptp(x) == 0
                elif row.artifact == "missing":
                    assert (x == -32768).all()
                elif row.artifact == "saturation":
                    rails = np.isin(x, profile.digital_range)
                    assert abs(rails.mean() - row.strength) < 0.02, (ecg_id, name)
                elif row.artifact == "amplitude":
                    ok = ~np.isin(x, profile.digital_range)
                    got, want = x[ok] - profile.adc_baseline, expected[ok, j] - profile.adc_baseline
                    slope = np.dot(got, want) / np.dot(want, want)
                    assert slope == pytest.approx(row.strength, rel=0.02)
                elif row.artifact == "powerline":
                    peak, floor = _mains_amplitude(x / profile.adc_gain, profile.fs, profile.mains_hz)
                    assert row.detail == f"{profile.mains_hz:g} Hz"
                    assert peak > 5 * floor, (ecg_id, name)
                    if alone:
                        assert _mains_amplitude(diff, profile.fs, profile.mains_hz)[0] == pytest.approx(
                            row.strength, rel=0.05, abs=2 / profile.adc_gain
                        )
                elif row.artifact == "baseline" and alone:
                    assert np.abs(diff).max() == pytest.approx(row.strength, abs=2 / profile.adc_gain)
                    slow = np.abs(np.fft.rfft(diff))[np.fft.rfftfreq(len(diff), 1 / profile.fs) < 2.0]
                    assert (slow**2).sum() > 0.9 * (np.abs(np.fft.rfft(diff)) ** 2).sum()
                elif row.artifact == "emg" and alone:
                    start, end = (float(v) for v in row.detail.removesuffix(" s").split("-"))
                    burst = diff[round(start * profile.fs) : round(end * profile.fs) + 1]
                    assert np.sqrt(np.mean(burst**2)) == pytest.approx(
                        row.strength, rel=0.05, abs=1 / profile.adc_gain
                    )
                elif row.artifact == "reversal" and alone:
                    measured = clean[:, [LEADS.index(m) for m in MEASURED]] @ reversal_matrix(row.detail).T
                    assert np.array_equal(x, quantize(profile, to_leads(measured))[:, j])
    assert min(checked.values()) > 0 and len(checked) == 8, checked  # every kind was checked on its own


def test_clean_records_have_no_artifact_rows_and_truth_is_consistent(
    archive: tuple[Path, SynthConfig],
) -> None:
    out, _ = archive
    truth = pd.read_parquet(out / "truth.parquet")
    arts = pd.read_parquet(out / "truth_artifacts.parquet")
    counts = arts.groupby("ecg_id").size()
    assert (
        truth.set_index("ecg_id")["n_artifacts"] == counts.reindex(truth["ecg_id"]).fillna(0).values
    ).all()
    assert (truth["n_artifacts"] == 0).any()
    assert set(truth["mi_type"]) == {"acute", "old", "none"}
    assert ((truth["mi_label"] == 1) == (truth["mi_type"] != "none")).all()
    assert ((truth["mi_label"] == 1) == (truth["pattern"] != "none")).all()
    with_mi = set(load_json("physiology.json")["mi"]["confounder_weights"])
    assert set(truth.loc[truth["mi_label"] == 1, "confounder"]) <= with_mi | {"none"}
    assert (truth.loc[truth["mi_label"] == 0, ["territory", "artery", "pattern"]] == "none").all().all()
    assert set(truth.loc[truth["mi_label"] == 1, "artery"]) <= {"LAD", "LCx", "RCA"}
    # the statements are a reader's: mostly, not always, the truth
    assert ((truth["mi_read"] == 1) == (truth["read_territory"] != "none")).all()
    assert 0.8 < (truth["mi_read"] == truth["mi_label"]).mean() < 1.0
    read_true = truth[(truth["mi_read"] == 1) & (truth["mi_label"] == 1)]
    assert (read_true["read_territory"] == read_true["territory"]).all()


# --- the PTB-XL contract ------------------------------------------------------------------------


def test_ptbxl_layout_and_metadata(archive: tuple[Path, SynthConfig]) -> None:
    out, config = archive
    db = pd.read_csv(out / "ptbxl_database.csv")
    truth = pd.read_parquet(out / "truth.parquet").set_index("ecg_id")
    statements = pd.read_csv(out / "scp_statements.csv", index_col=0)
    assert list(db.columns) == list(DATABASE_COLUMNS)
    assert {"ecg_id", "patient_id", "site", "device", "scp_codes", "filename_hr"} <= set(db.columns)
    assert list(db["ecg_id"]) == list(range(1, config.n_records + 1))
    assert db["filename_lr"].isna().all()
    assert db.groupby("patient_id").size().max() > 1
    assert (db.groupby("patient_id")["strat_fold"].nunique() == 1).all()
    assert (db.groupby("patient_id")["site"].nunique() == 1).all()
    assert set(db["strat_fold"]) <= set(range(1, 11)) and set(db["sex"]) == {0, 1}
    # acquisition times as PTB-XL writes them, on working hours, nearly all distinct
    stamps = pd.to_datetime(db["recording_date"], format="%Y-%m-%d %H:%M:%S")
    assert stamps.between("2016-01-01", "2024-01-01").all() and stamps.dt.hour.between(7, 18).all()
    assert stamps.nunique() == len(db) and stamps.dt.year.nunique() >= 6
    mi_codes = set(statements.index[statements["diagnostic_class"] == "MI"])
    for row in db.itertuples():
        codes = ast.literal_eval(row.scp_codes)
        assert set(codes) <= set(statements.index)
        assert bool(set(codes) & mi_codes) == bool(truth.loc[row.ecg_id, "mi_read"])
        assert ("AFIB" in codes) == (truth.loc[row.ecg_id, "rhythm"] == "af")
        profile = site(row.site)
        assert row.filename_hr.startswith(f"records{profile.fs}/")
        header = wfdb.rdheader(str(out / row.filename_hr))
        assert (
            header.sig_name == list(LEADS) and header.fs == profile.fs and header.sig_len == 10 * profile.fs
        )
        assert set(header.units) == {"mV"} and set(header.adc_gain) == {profile.adc_gain}
        assert set(header.baseline) == {profile.adc_baseline} and set(header.fmt) == {"16"}


def test_sites_differ(archive: tuple[Path, SynthConfig]) -> None:
    out, _ = archive
    truth = pd.read_parquet(out / "truth.parquet")
    db = pd.read_csv(out / "ptbxl_database.csv")
    assert set(truth["fs"]) == {250, 500, 1000}
    assert {site(s).mains_hz for s in truth["site"]} == {50, 60}
    age = db.groupby("site")["age"].mean()
    assert age["site_e"] - age["site_c"] > 10
    artifacts_per_record = truth.groupby("site")["n_artifacts"].mean()
    assert artifacts_per_record["site_d"] > 2 * artifacts_per_record["site_f"]


# --- determinism --------------------------------------------------------------------------------


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_same_seed_same_bytes_for_any_worker_count(tmp_path: Path) -> None:
    config = SynthConfig(SHARD_SIZE + 40, first_sites(3), seed=5, mi_prevalence=0.4)
    write_archive(config, tmp_path / "one", workers=1)
    write_archive(config, tmp_path / "two", workers=2)
    write_archive(replace(config, seed=6), tmp_path / "other", workers=1)
    one = _digest(tmp_path / "one")
    assert len(one) == 2 * config.n_records + 4
    assert one == _digest(tmp_path / "two")
    assert one != _digest(tmp_path / "other")


def test_refuses_a_non_empty_output_and_bad_settings(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        write_archive(SynthConfig(1, first_sites(1)), tmp_path)
    with pytest.raises(ValueError):
        first_sites(len(all_sites()) + 1)
    with pytest.raises(ValueError):
        SynthConfig(10, first_sites(1), mi_prevalence=1.5)


def test_mi_prevalence_rescales_sites_and_keeps_their_ratio() -> None:
    config = SynthConfig(10, first_sites(4), mi_prevalence=0.2)
    p = config.prevalence()
    assert np.mean(list(p.values())) == pytest.approx(0.2)
    assert p["site_d"] / p["site_c"] == pytest.approx(
        site("site_d").mi_prevalence / site("site_c").mi_prevalence
    )
