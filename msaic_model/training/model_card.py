"""The model card: one self-contained HTML page per registered model (figures as embedded PNG,
no external resources), for the clinicians and informatics teams who decide whether to use it.

Sections: intended use, the data snapshot and split (records and MI prevalence by part and site,
the reviewers' adjudications used), the threshold and how it was chosen, the calibrated risk (method,
bands, the test part's reliability diagram before and after calibration), test metrics with 95%
intervals overall, per site and per device, the in-distribution vs held-out-site gap, ROC and
precision-recall curves, lead and territory permutation importance, external validations on
stores the model never saw (`msaic evaluate --all`: by window and by patient, per source and per
device, the reliability diagram on those records), and limitations (the synthetic data first of
all).
"""

from __future__ import annotations

import html
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from data_contracts import load_json
from msaic_model.training.metrics import METRICS, calibration_bin
from tasks.report.figures import png
from tasks.report.html import Section, heading, image, page, paragraph, table
from tasks.store.model_files import RiskBands
from tasks.synth.sites import all_sites


@dataclass(frozen=True)
class CardData:
    """What the card shows; `predictions`: every record of the split with its part, site, device,
    label and (val and test) probability and calibrated risk; `adjudications`: the counts of
    `msaic_model.training.eligible.adjudicated` (empty when the store held none)."""

    model_id: str
    description: str
    config: dict[str, Any]
    thresholds: dict[str, Any]
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    split_summary: dict[str, Any]
    importance: dict[str, pd.DataFrame]
    synthetic_sites: list[str]
    adjudications: dict[str, int] = field(default_factory=dict)
    external: list[dict[str, Any]] = field(default_factory=list)  # `msaic evaluate --all` reports


def render_card(card: CardData) -> str:
    test = card.predictions[card.predictions["part"] == "test"]
    evaluation = card.metrics["evaluation"]
    sections = [
        Section("use", "Intended use", _intended_use(card)),
        Section("data", "Data and split", _data_section(card)),
        Section("threshold", "Decision threshold", _threshold_section(card.thresholds)),
        Section("calibration", "Calibrated risk", _calibration_section(card, test)),
        Section("metrics", "Test metrics (95% bootstrap intervals)", _metrics_section(evaluation)),
        Section("benchmark", "Real-data benchmark of this configuration", _benchmark_section(card.config)),
        Section("shift", "Distribution shift: held-out sites", _shift_section(evaluation)),
        Section("curves", "ROC and precision-recall (test)", _curves(test, card.thresholds)),
        Section("importance", "Lead and territory permutation importance", _importance_section(card)),
    ]
    if card.external:
        sections.append(Section("external", "External validation", _external_section(card.external)))
    sections.append(Section("limits", "Limitations", _limitations(card)))
    meta = f"{card.description} · kind {card.config['kind']} · split {card.config['split']['mode']}"
    return page(f"Model card: {card.model_id}", meta, sections)


def _intended_use(card: CardData) -> str:
    return paragraph(
        "Retrospective screening of archived 10-s, 12-lead resting ECGs for signs of myocardial "
        "infarction (acute or old, any territory), to build a worklist for review by a cardiologist. "
        "The model ranks records by MI probability; a record at or above the threshold is flagged. "
        "It is not a diagnostic device, not for real-time or emergency use, and a flag is never a "
        "diagnosis. Records the quality gate rejects are not scored."
    )


def _data_section(card: CardData) -> str:
    summary = card.split_summary
    counts = card.predictions.groupby(["part", "site"]).agg(
        records=("record_id", "size"), mi_positive=("mi_label", "sum")
    )
    counts["prevalence"] = (counts["mi_positive"] / counts["records"]).map("{:.2f}".format)
    excluded = ", ".join(f"{k}: {v}" for k, v in summary.get("excluded", {}).items()) or "none"
    return "".join(
        [
            paragraph(
                f"Split mode {summary['mode']} (seed {summary['seed']}, fold {summary['fold']}); "
                f"held-out sites: {', '.join(summary.get('held_out_sites') or []) or 'none'}, devices: "
                f"{', '.join(summary.get('held_out_devices') or []) or 'none'}. Patients never cross "
                f"parts. Left out before the split: {excluded}."
            ),
            table(counts, "split-counts"),
            paragraph(_adjudication_text(card.adjudications)),
            paragraph(f"Data snapshot: {summary.get('snapshot_sha256', '')}", "note"),
        ]
    )


def _adjudication_text(counts: dict[str, int]) -> str:
    if not counts.get("used"):
        return "Labels: the source's diagnostic statements; no reviewer adjudication concerned these records."
    return (
        f"Labels: the reviewers' latest adjudication replaced the source's label of {counts['used']} "
        f"records: {counts['changed_label']} changed a label, {counts['labelled']} labelled a record the "
        f"source left unlabelled, {counts['confirmed']} confirmed it, and {counts['removed']} records "
        f"judged unreadable were left out; {counts['not_eligible']} decisions concern records not "
        "eligible here (not in this store, or rejected by the quality gate)."
    )


def _threshold_section(thresholds: dict[str, Any]) -> str:
    return paragraph(
        f"Threshold {thresholds['threshold']:.4f} ({thresholds['rule']}), chosen on the validation part "
        f"only for a target sensitivity of {thresholds['target_sensitivity']:.2f} "
        f"(validation sensitivity {thresholds['val_sensitivity']:.3f}, {thresholds['val_records']} "
        "records); the test part never influenced it."
    )


def metric_cell(metric: dict[str, Any]) -> str:
    """A metric as "value (low–high)" to three decimals, the value alone without an interval, "–"
    where it is undefined (one class only): the model card's cells and the CLI's lines alike."""
    if metric["value"] is None:
        return "–"
    if metric["low"] is None:
        return f"{metric['value']:.3f}"
    return f"{metric['value']:.3f} ({metric['low']:.3f}–{metric['high']:.3f})"


def metric_rows(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per named result: n, positives and each metric as 'value (low–high)'."""
    rows = {
        name: {"n": r["n"], "MI+": r["positives"], **{m: metric_cell(r[m]) for m in METRICS}}
        for name, r in results.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def _metrics_section(evaluation: dict[str, Any]) -> str:
    overall = metric_rows({"test": evaluation["test"], "validation": evaluation["validation"]})
    return "".join(
        [
            heading("Overall"),
            table(overall, "metrics-overall"),
            heading("Per site (test)"),
            table(metric_rows(evaluation["per_site"]), "metrics-site"),
            heading("Per device (test)"),
            table(metric_rows(evaluation["per_device"]), "metrics-device"),
            paragraph("A dash: the metric is undefined there (e.g. AUROC of a single-class subset).", "note"),
        ]
    )


REAL_BENCHMARK = "real_benchmark.json"  # written by `bench/real.py --write-summary`


def benchmark_name(config: dict[str, Any]) -> str:
    """The bench/real.py name of a registered model's configuration: the network config's name
    (`msaic`, `msaic_fused`, ...), or the feature baseline's kind."""
    return str(config["model"]["name"]) if "model" in config else str(config["kind"])


def _benchmark_section(config: dict[str, Any]) -> str:
    """The headline figure of this model's configuration on the shared real data (LUDB and the
    CinC 2021 sources, bench/real.py): the same config trained and tested in patient-grouped
    cross-validation, beside every other model of the benchmark."""
    summary = load_json(REAL_BENCHMARK)
    mine = benchmark_name(config)
    rows = {
        name: {
            "CV AUROC by patient": metric_cell(m["cv"]["auroc"]),
            "CV AUPRC by patient": metric_cell(m["cv"]["auprc"]),
            "LOSO AUROC (pooled)": metric_cell(m["loso"]["auroc"]) if m.get("loso") else "–",
            f"AUROC − {summary['best_baseline']}": metric_cell(m["minus_best_baseline"])
            if m.get("minus_best_baseline")
            else "–",
        }
        for name, m in summary["models"].items()
    }
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    data = summary["data"]
    status = (
        f"This model's configuration is {mine}."
        if mine in rows
        else f"This model's configuration ({mine}) is not in the benchmark."
    )
    text = (
        f"{status} Every model below was trained and tested on the real labelled records of LUDB and "
        f"the CinC 2021 sample ({data['patients']} patients, {data['mi_patients']} with MI, "
        f"{len(data['per_source'])} sources) with the product's own training step: patient-grouped "
        f"{summary['cv']['folds']}-fold cross-validation repeated with seeds {summary['cv']['seeds']} "
        "(AUROC and AUPRC by patient, the mean over repeats, 95% patient-bootstrap intervals), leave-"
        "one-source-out pooled over the held-out sources, and the paired difference to the best "
        f"baseline. Measured {summary['measured_at']} by `{summary['command']}`. These are figures of "
        "the configuration, not of this trained model; its own test figures are above."
    )
    return paragraph(text) + table(frame, "real-benchmark")


def _shift_section(evaluation: dict[str, Any]) -> str:
    shift = evaluation["shift"]
    if shift is None:
        return paragraph("This split holds no site or device out, so no shift figure is reported.")
    rows = metric_rows({"in-distribution test": shift["in_distribution"], "held-out test": shift["held_out"]})
    gap = pd.DataFrame({m: [metric_cell(shift["gap"][m])] for m in METRICS}, index=["held-out − in-dist."])
    return "".join(
        [
            paragraph(
                f"Held out: sites {', '.join(shift['held_out_sites'])} (devices "
                f"{', '.join(shift['held_out_devices'])}). In-distribution test records come from "
                "patients of the training sites who were kept out of training; the gap (held-out minus "
                "in-distribution) is the distribution-shift figure."
            ),
            table(rows, "shift-metrics"),
            table(gap, "shift-gap"),
        ]
    )


def _calibration_text(calibration: dict[str, Any]) -> str:
    chosen, parameters = calibration["chosen_by"], calibration["parameters"]
    if calibration["method"] == "platt":
        a, b = parameters["a"], parameters["b"]
        how = f"Platt scaling, risk = σ({a:.4f}·logit {'−' if b < 0 else '+'} {abs(b):.4f})"
    else:
        how = f"isotonic regression ({len(parameters['logit'])} breakpoints, linear between them)"
    return (
        f"Risk is the model's log-odds calibrated on the validation part only ({chosen['val_records']} "
        f"records, {chosen['val_positives']} MI+) by {how}; chosen: {chosen['reason']} (rule "
        f"{chosen['config_version']}). The risk at the decision threshold is "
        f"{calibration['risk_at_threshold']:.3f}; the threshold itself stays on the raw probability, "
        "as the calibration is non-decreasing and would only restate the same calls. The test part "
        "never influenced it; below it is checked there."
    )


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int) -> pd.DataFrame:
    """Per non-empty equal-width bin (as ECE bins): records, mean predicted, observed MI fraction."""
    frame = pd.DataFrame({"bin": calibration_bin(p, bins), "p": p, "y": y})
    return frame.groupby("bin").agg(records=("y", "size"), predicted=("p", "mean"), observed=("y", "mean"))


def _band_table(test: pd.DataFrame, calibration: dict[str, Any]) -> pd.DataFrame:
    """Per risk band: its range, and the test part's records, MI+ and observed MI fraction in it."""
    bands = RiskBands(tuple(calibration["bands"]["cuts"]), tuple(calibration["bands"]["names"]))
    limits = [f"< {bands.cuts[0]:.2f}"]
    limits += [f"{low:.2f} to < {high:.2f}" for low, high in itertools.pairwise(bands.cuts)]
    limits += [f">= {bands.cuts[-1]:.2f}"]
    grouped = test.groupby(bands.of(test["risk"]))["mi_label"].agg(["size", "sum"])
    grouped = grouped.reindex(list(bands.names)).fillna(0).astype(int)
    observed = (grouped["sum"] / grouped["size"].where(grouped["size"] > 0)).map("{:.2f}".format)
    return pd.DataFrame(
        {
            "risk": limits,
            "test records": grouped["size"],
            "MI+": grouped["sum"],
            "observed MI fraction": observed.replace("nan", "–"),
        }
    ).rename_axis("band")


def _calibration_section(card: CardData, test: pd.DataFrame) -> str:
    calibration, scores = card.thresholds["calibration"], card.metrics["calibration"]
    y = test["mi_label"].to_numpy(int)
    fig = Figure(figsize=(13, 4.5))
    rel_ax, count_ax = fig.subplots(1, 2)
    rel_ax.plot([0, 1], [0, 1], color="#999", linestyle=":")
    edges = np.linspace(0, 1, scores["ece_bins"] + 1)
    for column, label, color in (
        ("probability", "before (probability)", "#6a1b9a"),
        ("risk", "after (risk)", "#ef6c00"),
    ):
        bins = reliability_table(y, test[column].to_numpy(float), scores["ece_bins"])
        rel_ax.plot(bins["predicted"], bins["observed"], marker="o", color=color, label=label)
        count_ax.hist(test[column], bins=edges, histtype="step", color=color, label=label, linewidth=1.5)
    rel_ax.set(
        xlabel="mean predicted",
        ylabel="observed MI fraction",
        title="Reliability (test)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    rel_ax.legend(loc="upper left")
    for cut in calibration["bands"]["cuts"]:
        count_ax.axvline(cut, color="#444", linewidth=0.8, linestyle="--")
    count_ax.set(
        xlabel="probability or risk",
        ylabel="test records",
        title="Distribution (dashed: band cuts)",
        yscale="log",
    )
    count_ax.legend(loc="upper center")
    summary = pd.DataFrame(
        {name: [metric_cell(scores[c][name]) for c in ("probability", "risk")] for name in ("brier", "ece")},
        index=pd.Index(
            ["before: probability", "after: calibrated risk"], name=f"test ({scores['n']} records)"
        ),
    )
    return "".join(
        [
            paragraph(_calibration_text(calibration)),
            image(png(fig), "reliability diagram of the test part before and after calibration"),
            table(summary, "calibration-test"),
            heading("Risk bands (test)"),
            table(_band_table(test, calibration), "risk-bands"),
        ]
    )


def _curves(test: pd.DataFrame, thresholds: dict[str, Any]) -> str:
    y, p = test["mi_label"].to_numpy(int), test["probability"].to_numpy(float)
    if len(np.unique(y)) < 2:
        return paragraph("The test part holds a single class: no ROC or precision-recall curve.")
    fig = Figure(figsize=(13, 4))
    roc_ax, pr_ax = fig.subplots(1, 2)
    fpr, tpr, _ = roc_curve(y, p)
    roc_ax.plot(fpr, tpr, color="#1565c0")
    roc_ax.plot([0, 1], [0, 1], color="#999", linestyle=":")
    t = thresholds["threshold"]
    roc_ax.scatter([np.mean(p[y == 0] >= t)], [np.mean(p[y == 1] >= t)], color="#c62828", zorder=3)
    roc_ax.set(xlabel="1 − specificity", ylabel="sensitivity", title="ROC (dot: saved threshold)")
    precision, recall, _ = precision_recall_curve(y, p)
    pr_ax.step(recall, precision, where="post", color="#2e7d32")
    pr_ax.axhline(y.mean(), color="#999", linestyle=":")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    return image(png(fig), "ROC and precision-recall curves of the test part")


def _importance_section(card: CardData) -> str:
    if not card.importance:
        return paragraph("Permutation importance was not computed for this model.")
    fig = Figure(figsize=(13, 4))
    axes = fig.subplots(1, len(card.importance), squeeze=False)[0]
    parts = []
    for ax, (name, frame) in zip(axes, card.importance.items(), strict=True):
        mean, low, high = (frame[c].to_numpy(float) for c in ("mean_drop", "ci_low", "ci_high"))
        ax.bar(frame["group"], mean, yerr=[mean - low, high - mean], color="#1565c0", capsize=3)
        ax.axhline(0, color="#444", linewidth=0.8)
        ax.set(title=f"AUROC drop when each {name} is permuted", ylabel="AUROC drop")
        ax.tick_params(axis="x", rotation=45 if name == "lead" else 0)
        shown = frame[["group", "mean_drop", "ci_low", "ci_high"]].set_index("group")
        parts.append(table(shown.map("{:.3f}".format), f"importance-{name}"))
    text = paragraph(
        "Each lead (or territory: its leads together) is permuted across the test records, repeatedly; "
        "the bar is the mean drop in AUROC with its 95% interval over repeats. A large territory drop "
        "means the model's calls lean on that territory's leads."
    )
    return text + image(png(fig), "permutation importance of leads and territories") + "".join(parts)


def _external_section(reports: list[dict[str, Any]]) -> str:
    """One part per `msaic evaluate --all` report: every eligible labelled record of a store that
    did not train or validate the model, at the saved threshold."""
    parts = [
        paragraph(
            "Every eligible labelled record of another store (records that trained or validated the "
            "model are left out), scored at the saved threshold; intervals are 95% bootstrap "
            "intervals. By patient: a patient's probability is the mean over its windows."
        )
    ]
    for k, report in enumerate(reports):
        evaluation, external = report["evaluation"], report["external"]
        excluded = ", ".join(f"{name}: {n}" for name, n in report["excluded"].items()) or "none"
        parts += [
            heading(
                f"{report.get('store_name', report['store'])}, evaluated {report.get('evaluated_at', '')}"
            ),
            paragraph(f"Left out: {excluded}."),
            table(
                metric_rows({"by window": evaluation["test"], "by patient": external["patients"]}),
                f"external-{k}-overall",
            ),
            heading("Per source (by window)"),
            table(metric_rows(evaluation["per_site"]), f"external-{k}-site"),
            heading("Per device (by window)"),
            table(metric_rows(evaluation["per_device"]), f"external-{k}-device"),
            _external_reliability(external, k),
        ]
    return "".join(parts)


def _external_reliability(external: dict[str, Any], k: int) -> str:
    """The reliability diagram of one external evaluation (from its saved bins) and its Brier/ECE."""
    calibration = external["calibration"]
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#999", linestyle=":")
    colors = {"probability": "#6a1b9a", "risk": "#ef6c00"}
    for column, bins in external["reliability_bins"].items():
        frame = pd.DataFrame(bins)
        ax.plot(frame["predicted"], frame["observed"], marker="o", color=colors[column], label=column)
    ax.set(
        xlabel="mean predicted", ylabel="observed MI fraction", title="Reliability", xlim=(0, 1), ylim=(0, 1)
    )
    ax.legend(loc="upper left")
    columns = [c for c in ("probability", "risk") if c in calibration]
    summary = pd.DataFrame(
        {name: [metric_cell(calibration[c][name]) for c in columns] for name in ("brier", "ece")},
        index=pd.Index(columns, name=f"{calibration['n']} records"),
    )
    return image(png(fig), "reliability diagram of the external records") + table(
        summary, f"external-{k}-calibration"
    )


def _limitations(card: CardData) -> str:
    items = [
        "Evaluated on the records listed above only; performance on another hospital's machines, "
        "population and labelling practice must be checked on their own data before use.",
        "Labels come from the source's diagnostic statements; a record without a stated diagnosis "
        "was left out, not counted as negative.",
        "Intervals are bootstrap intervals over records; several records of one patient are not "
        "independent, so the intervals are somewhat narrow.",
    ]
    if card.synthetic_sites:
        items.insert(
            0,
            "TRAINED AND EVALUATED ON SYNTHETIC ECGs (sites "
            + ", ".join(card.synthetic_sites)
            + "): a dipole model with idealized MI patterns and artifacts. These figures test the "
            "pipeline; they say nothing about clinical performance.",
        )
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def synthetic_sites(records: pd.DataFrame) -> list[str]:
    """Sites whose (site, device) pairs are those of the synthetic archive generator's profiles."""
    profiles = {(p.name, p.device) for p in all_sites()}
    pairs = records[["site", "device"]].drop_duplicates().itertuples(index=False, name=None)
    return sorted({site for site, device in pairs if (site, device) in profiles})
