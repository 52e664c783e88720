"""The evaluation report: one self-contained HTML page with plots, and its JSON summary.

The HTML is what people read (plots inlined as base64 PNG, no external assets or scripts, so it
can be mailed or archived as one file); the JSON carries the same numbers for machines.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from creditflow.model.evaluate import MIN_SEGMENT_ROWS, metrics, reliability, segment_metrics
from creditflow.reports import clean as _clean
from creditflow.reports import escaped as _e
from creditflow.reports import figure as _figure
from creditflow.reports import png as _png

METRIC_ROWS = ("roc_auc", "pr_auc", "ks", "brier", "ece", "rows", "default_rate")
SEGMENT_METRICS = ("roc_auc", "pr_auc", "ks", "ece")
TOP_FEATURES = 20
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: .8em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; }
td.key, th.key { text-align: left; }
tr.small td { color: #888; }
img { max-width: 100%; display: block; margin: .8em 0; }
.row { display: flex; gap: 1em; flex-wrap: wrap; }
.row img { max-width: 49%; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 13px; }
.note { color: #666; font-size: 14px; }
"""


@dataclass
class ScoredModel:
    """A model's default probabilities on the test window, aligned with the labels."""

    name: str
    probabilities: np.ndarray


def write_report(
    out_dir: Path,
    *,
    title: str,
    labels: np.ndarray,
    models: list[ScoredModel],
    segments: pd.DataFrame,
    importance: dict[str, dict[str, float]],
    extra: dict,
) -> dict:
    """Write ``report.html`` and ``report.json`` into ``out_dir``; returns the JSON summary.

    ``models[0]`` is the model under evaluation, the others (baseline, champion) stand beside it.
    """
    labels = np.asarray(labels).astype(int)
    _check(labels, models, segments)
    summary = _clean(
        {
            "title": title,
            "models": {m.name: metrics(labels, m.probabilities) for m in models},
            "segments": {
                m.name: segment_metrics(labels, m.probabilities, segments) for m in models
            },
            "reliability": {m.name: reliability(labels, m.probabilities) for m in models},
            "importance": importance,
            "details": extra,
        }
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    (out_dir / "report.html").write_text(_html(summary, labels, models))
    return summary


def _check(labels: np.ndarray, models: list[ScoredModel], segments: pd.DataFrame) -> None:
    if not models:
        raise ValueError("a report needs at least one model")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique: {names}")
    for m in models:
        if len(m.probabilities) != len(labels):
            raise ValueError(f"{m.name}: {len(m.probabilities)} scores for {len(labels)} labels")
    if len(segments) != len(labels):
        raise ValueError(f"{len(segments)} segment rows for {len(labels)} labels")


# ---------------------------------------------------------------- HTML


def _table(header: list[str], rows: list[list], key_columns: int = 1, classes=None) -> str:
    head = "".join(
        f'<th class="key">{html.escape(h)}</th>'
        if i < key_columns
        else f"<th>{html.escape(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for n, row in enumerate(rows):
        cls = f' class="{classes[n]}"' if classes and classes[n] else ""
        cells = "".join(
            f'<td class="key">{_e(v)}</td>' if i < key_columns else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _html(summary: dict, labels: np.ndarray, models: list[ScoredModel]) -> str:
    names = [m.name for m in models]
    overall = summary["models"]
    parts = [
        f"<h1>{html.escape(summary['title'])}</h1>",
        f'<p class="note">{len(labels)} test rows, default rate {_e(float(labels.mean()))}. '
        f"Model under evaluation: <b>{html.escape(names[0])}</b>"
        + (f"; compared with {html.escape(', '.join(names[1:]))}." if names[1:] else ".")
        + "</p>",
        "<h2>Metrics</h2>",
        _table(["metric", *names], [[k, *(overall[n][k] for n in names)] for k in METRIC_ROWS]),
        '<p class="note">ks: largest gap between the score distributions of defaults and '
        "non-defaults; ece: expected calibration error over 10 equal-width bins.</p>",
        "<h2>Ranking</h2>",
        '<div class="row">',
        _png(_roc(labels, models, overall)),
        _png(_pr(labels, models, overall)),
        "</div>",
        "<h2>Calibration</h2>",
        _png(_reliability_plot(summary["reliability"], names)),
        "<h2>Score distribution by class</h2>",
        _png(_distribution(labels, models[0])),
        "<h2>Feature importance</h2>",
        _importance_section(summary["importance"]),
        "<h2>Segments</h2>",
        _segments_section(summary["segments"], names),
    ]
    if summary["details"]:
        parts += ["<h2>Details</h2>", _details(summary["details"], level=3)]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(summary['title'])}</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _roc(labels: np.ndarray, models: list[ScoredModel], overall: dict) -> Figure:
    fig = _figure(5.6, 4.8)
    ax = fig.subplots()
    if len(np.unique(labels)) == 2:
        for color, m in zip(COLORS, models, strict=False):
            fpr, tpr, _ = roc_curve(labels, m.probabilities)
            ax.plot(fpr, tpr, color=color, label=f"{m.name} (AUC {overall[m.name]['roc_auc']:.3f})")
    else:
        ax.text(0.5, 0.5, "one class only: undefined", ha="center", transform=ax.transAxes)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="chance")
    ax.set(title="ROC curve", xlabel="false positive rate", ylabel="true positive rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _pr(labels: np.ndarray, models: list[ScoredModel], overall: dict) -> Figure:
    fig = _figure(5.6, 4.8)
    ax = fig.subplots()
    if len(np.unique(labels)) == 2:
        for color, m in zip(COLORS, models, strict=False):
            precision, recall, _ = precision_recall_curve(labels, m.probabilities)
            label = f"{m.name} (AP {overall[m.name]['pr_auc']:.3f})"
            ax.step(recall, precision, where="post", color=color, label=label)
        ax.axhline(labels.mean(), color="grey", ls=":", label="base rate")
        ax.legend(fontsize=8, loc="upper right")
    else:
        ax.text(0.5, 0.5, "one class only: undefined", ha="center", transform=ax.transAxes)
    ax.set(title="Precision-recall curve", xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    return fig


def _reliability_plot(bins_by_model: dict[str, list[dict]], names: list[str]) -> Figure:
    fig = _figure(11, 5.5)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    top.plot([0, 1], [0, 1], color="grey", ls=":", label="perfectly calibrated")
    for color, name in zip(COLORS, names, strict=False):
        bins = bins_by_model[name]
        x = [b["mean_predicted"] for b in bins]
        top.plot(x, [b["observed_rate"] for b in bins], "o-", color=color, label=name)
        centers = [(b["lower"] + b["upper"]) / 2 for b in bins]
        bottom.plot(centers, [b["rows"] for b in bins], "o-", color=color, ms=3)
    top.set(title="Reliability: predicted vs observed default rate", ylabel="observed rate")
    top.set(xlim=(0, 1), ylim=(0, 1))
    bottom.set(xlabel="predicted probability (10 equal-width bins)", ylabel="rows", yscale="log")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    return fig


def _distribution(labels: np.ndarray, model: ScoredModel) -> Figure:
    fig = _figure(11, 4)
    ax = fig.subplots()
    edges = np.linspace(0, 1, 51)
    p = np.asarray(model.probabilities, dtype=float)
    for value, name, color in ((0, "non-default", COLORS[0]), (1, "default", COLORS[3])):
        scores = p[labels == value]
        if len(scores):
            weights = np.full(len(scores), 1 / len(scores))
            label = f"{name} ({len(scores)})"
            ax.hist(scores, bins=edges, weights=weights, alpha=0.5, color=color, label=label)
    ax.set(title=f"Scores by class: {model.name}", xlabel="predicted probability")
    ax.set(ylabel="share of the class's loans")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _importance_section(importance: dict[str, dict[str, float]]) -> str:
    kinds = [(kind, values) for kind, values in importance.items() if values]
    if not kinds:
        return '<p class="note">No feature importance given.</p>'
    fig = _figure(5.5 * len(kinds), 0.28 * TOP_FEATURES + 1.2)
    axes = np.atleast_1d(fig.subplots(1, len(kinds)))
    for ax, color, (kind, values) in zip(axes, COLORS, kinds, strict=False):
        top = sorted(values.items(), key=lambda kv: -(kv[1] or 0))[:TOP_FEATURES][::-1]
        ax.barh([k for k, _ in top], [v or 0 for _, v in top], color=color)
        ax.set(title=f"{kind} (top {min(TOP_FEATURES, len(values))})")
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _png(fig)


def _segments_section(by_model: dict[str, dict], names: list[str]) -> str:
    first = by_model[names[0]]
    parts = [
        f'<p class="note">Grey rows and hatched bars are small segments (fewer than '
        f"{MIN_SEGMENT_ROWS} rows): shown, but not to be over-read.</p>"
    ]
    for column in first:
        parts.append(f"<h3>{html.escape(column)}</h3>")
        parts.append(_png(_segment_auc(column, by_model, names)))
        parts.append(_segment_table(column, by_model, names))
    return "\n".join(parts)


def _segment_table(column: str, by_model: dict[str, dict], names: list[str]) -> str:
    """One row per segment value; each model's metrics under its name (a spanning header)."""
    span = len(SEGMENT_METRICS)
    top = '<th class="key" rowspan="2">value</th>' + "".join(
        f'<th rowspan="2">{h}</th>' for h in ("rows", "default_rate", "large")
    )
    top += "".join(f'<th colspan="{span}">{html.escape(n)}</th>' for n in names)
    sub = "".join(f"<th>{m}</th>" for _ in names for m in SEGMENT_METRICS)
    body = []
    for value, found in by_model[names[0]][column].items():
        cells = [value, found["rows"], found["default_rate"], found["large"]]
        cells += [by_model[n][column][value][m] for n in names for m in SEGMENT_METRICS]
        cls = "" if found["large"] else ' class="small"'
        row = f'<td class="key">{_e(cells[0])}</td>' + "".join(
            f"<td>{_e(c)}</td>" for c in cells[1:]
        )
        body.append(f"<tr{cls}>{row}</tr>")
    return f"<table><tr>{top}</tr><tr>{sub}</tr>{''.join(body)}</table>"


def _segment_auc(column: str, by_model: dict[str, dict], names: list[str]) -> Figure:
    """ROC AUC per segment value, models side by side; small segments hatched and faded."""
    rows = by_model[names[0]][column]
    values = list(rows)
    aucs = [by_model[n][column][v]["roc_auc"] for n in names for v in values]
    known = [a for a in aucs if a is not None]
    low = min(0.5, math.floor(min(known, default=0.5) * 10) / 10)
    fig = _figure(11, 1.2 + 0.22 * len(values) * len(names))
    ax = fig.subplots()
    height = 0.8 / len(names)
    y = np.arange(len(values))
    for i, (color, name) in enumerate(zip(COLORS, names, strict=False)):
        found = [by_model[name][column][v] for v in values]
        widths = [f["roc_auc"] if f["roc_auc"] is not None else 0.0 for f in found]
        bars = ax.barh(y + (i - (len(names) - 1) / 2) * height, widths, height, color=color)
        bars.set_label(name)
        for bar, f in zip(bars, found, strict=True):
            if not f["large"]:
                bar.set_hatch("///")
                bar.set_alpha(0.45)
            if f["roc_auc"] is None:
                ax.text(low + 0.01, bar.get_y() + height / 2, "n/a", va="center", fontsize=7)
    ticks = [f"{v} (n={rows[v]['rows']}{'' if rows[v]['large'] else ', small'})" for v in values]
    ax.set_yticks(y, ticks, fontsize=8)
    ax.invert_yaxis()
    ax.set(title=f"ROC AUC by {column}", xlabel="ROC AUC", xlim=(low, 1.0))
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def _details(value, level: int) -> str:
    """Flat dicts and lists of flat dicts as tables, nested dicts as sub-sections, else JSON."""
    if _flat_dict(value):
        return _table(["key", "value"], [[k, v] for k, v in value.items()])
    if isinstance(value, list) and value and all(_flat_dict(v) for v in value):
        columns = list(dict.fromkeys(k for row in value for k in row))
        return _table(columns, [[row.get(c) for c in columns] for row in value], key_columns=0)
    if isinstance(value, dict) and level <= 4:
        tag = f"h{level}"
        return "\n".join(
            f"<{tag}>{html.escape(str(k))}</{tag}>\n{_details(v, level + 1)}"
            for k, v in value.items()
        )
    if _scalar(value):
        return f"<p>{_e(value)}</p>"
    return f"<pre>{html.escape(json.dumps(value, indent=2))}</pre>"


def _scalar(value) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _flat(value) -> bool:
    """A table cell: a scalar or a short list of scalars (such as a time window)."""
    return _scalar(value) or (
        isinstance(value, list) and len(value) <= 10 and all(_scalar(v) for v in value)
    )


def _flat_dict(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(_flat(v) for v in value.values())
