"""The monitoring report: one self-contained HTML page with plots, and its JSON twin.

Built from a run's stored rows only (``monitoring_runs`` and ``monitoring_results``, as read
back by ``monitoring/run.py``), so the page shows what the database holds. Plots are inlined
as base64 PNG (no external assets or scripts: it can be mailed or archived as one file), in
the style of the training report (``training/report.py``, whose helpers this package may not
import: training and monitoring are sibling layers). A section with no results says so.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from datetime import UTC
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from creditflow import clock
from creditflow.config import Settings
from creditflow.monitoring import thresholds as th
from creditflow.monitoring.accuracy import ALL, RECEIVED
from creditflow.reports import escaped as _e
from creditflow.reports import figure as _figure
from creditflow.reports import fmt as _fmt
from creditflow.reports import png

STATUS_COLORS = {
    th.OK: "#2ca02c",
    th.WATCH: "#ff7f0e",
    th.ALERT: "#d62728",
    th.INFO: "#7f7f7f",
    th.ESTIMATED: "#1f77b4",
    "failed": "#d62728",
    "running": "#7f7f7f",
}
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
# Drifting features whose distributions are plotted, at most (by impact).
DISTRIBUTIONS = 8

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: .8em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; }
td.key, th.key { text-align: left; }
img { max-width: 100%; display: block; margin: .8em 0; }
.row { display: flex; gap: 1em; flex-wrap: wrap; }
.row img { max-width: 49%; }
.note { color: #666; font-size: 14px; }
.status { font-weight: bold; padding: 1px 6px; border-radius: 3px; color: white; }
"""


def report_dir(settings: Settings, run: dict) -> Path:
    """``<reports_dir>/monitoring/<as_of>-run<id>/``."""
    as_of = clock.as_utc(run["as_of"]).astimezone(UTC)
    return settings.reports_dir / "monitoring" / f"{as_of:%Y%m%dT%H%M%SZ}-run{run['id']}"


def write_report(out_dir: Path, run: dict, rows: list[dict], summary: dict) -> dict[str, Path]:
    """Write ``report.html`` and ``report.json`` for a run's stored rows; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"summary": summary, "run": _plain(run), "results": [_plain(r) for r in rows]}
    paths = {"html": out_dir / "report.html", "json": out_dir / "report.json"}
    paths["json"].write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    paths["html"].write_text(render(run, rows, summary))
    return paths


def _plain(row: dict) -> dict:
    return {
        k: (clock.as_utc(v).isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()
    }


# ---------------------------------------------------------------- HTML


def render(run: dict, rows: list[dict], summary: dict) -> str:
    """The HTML page of a run."""
    by_model: dict[str | None, list[dict]] = defaultdict(list)
    for row in rows:
        by_model[row["model_tag"]].append(row)
    as_of = clock.as_utc(run["as_of"]).isoformat()
    title = f"Monitoring run {run['id']} as of {as_of}"
    parts = [f"<h1>{html.escape(title)}</h1>", _headline(summary)]
    for model in [m for m in summary.get("models", []) if m in by_model] or []:
        parts.append(f"<h2>Model {html.escape(model)}</h2>")
        parts.append(_model_sections(by_model[model]))
    if not summary.get("models"):
        parts.append(
            '<p class="note">No model was judged: no champion as of this time and no '
            "logged prediction in the window.</p>"
        )
    parts.append("<h2>Service</h2>")
    parts.append(_service_sections(by_model.get(None, [])))
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _badge(status: str) -> str:
    color = STATUS_COLORS.get(status, "#7f7f7f")
    return f'<span class="status" style="background:{color}">{html.escape(status)}</span>'


def _headline(summary: dict) -> str:
    window = summary["window"]
    counts = summary["counts"]
    parts = [
        f"<p>Status {_badge(summary['status'])} &nbsp; window {html.escape(window['start'])} "
        f"to {html.escape(window['end'])} ({window['days']:g} days); models: "
        f"{html.escape(', '.join(summary['models']) or 'none')}.</p>",
        '<p class="note">'
        + ", ".join(f"{counts[k]} {k}" for k in counts if k != "results" and counts[k])
        + f" of {counts['results']} results. PSI: below {th.PSI_WATCH} stable, "
        f"{th.PSI_WATCH}-{th.PSI_ALERT} watch, above {th.PSI_ALERT} act.</p>",
    ]
    alerts = summary["alerts"]
    if alerts:
        table = [
            [
                a["section"],
                a["metric"],
                a["subject"],
                a["value"],
                a["threshold"],
                a["model"],
                ", ".join(a.get("features", [])),
            ]
            for a in alerts
        ]
        parts.append("<h3>Alerts</h3>")
        parts.append(
            _table(
                [
                    "section",
                    "metric",
                    "subject",
                    "value",
                    "threshold",
                    "model",
                    "features that moved the score",
                ],
                table,
                key_columns=3,
            )
        )
    else:
        parts.append("<p>No alert.</p>")
    return "\n".join(parts)


def _model_sections(rows: list[dict]) -> str:
    drift = [r for r in rows if r["section"] == "drift" and r["metric"] == "psi"]
    pvalues = {r["subject"]: r for r in rows if r["section"] == "drift" and r["metric"] != "psi"}
    parts = ["<h3>Input drift (PSI against the development sample)</h3>"]
    if drift:
        parts.append(_png(_psi_plot(drift)))
        parts.append(_drift_table(drift, pvalues))
        parts.append("<h3>Reference vs current: drifting features</h3>")
        parts.append(_distributions(drift))
    else:
        parts.append(_absent("input drift"))
    score = [r for r in rows if r["section"] == "score_drift" and r["metric"] == "psi"]
    tested = [r for r in rows if r["section"] == "score_drift" and r["metric"] != "psi"]
    parts.append("<h3>Score distribution</h3>")
    if score:
        row = score[0]
        pvalue = f"; whylogs KS p-value {_e(tested[0]['value'])}" if tested else ""
        parts.append(
            f"<p>PSI of the default probability {_e(row['value'])} "
            f"{_badge(row['status'])}; mean {_e(row['details'].get('reference_mean'))} "
            f"in the reference, {_e(row['details'].get('current_mean'))} now{pvalue}.</p>"
        )
        parts.append(_png(_bins_plot(row, "default probability: reference vs current")))
        drivers = row["details"].get("drivers") or []
        if drivers:
            parts.append("<p>Drifting features that moved the score (PSI x importance share):</p>")
            parts.append(
                _table(
                    ["feature", "psi", "importance share", "impact"],
                    [[d["feature"], d["psi"], d["importance_share"], d["impact"]] for d in drivers],
                )
            )
    else:
        parts.append(_absent("score drift"))
    parts.append("<h3>Decisions</h3>")
    parts.append(_decisions(rows))
    parts.append("<h3>Data quality</h3>")
    parts.append(_quality(rows))
    parts.append("<h3>Training-serving skew</h3>")
    parts.append(_generic([r for r in rows if r["section"] == "skew"], "skew"))
    parts.append("<h3>Accuracy by vintage: estimated vs realized</h3>")
    parts.append(_accuracy(rows))
    return "\n".join(parts)


def _service_sections(rows: list[dict]) -> str:
    latency = [r for r in rows if r["section"] == "latency"]
    parts = ["<h3>Latency and errors by endpoint</h3>"]
    if latency:
        figure = _latency_plot(latency)
        if figure is not None:
            parts.append(_png(figure))
        parts.append(_generic(latency, "latency"))
    else:
        parts.append(_absent("latency"))
    parts.append("<h3>Contract rejections by field</h3>")
    rejected = [r for r in rows if r["section"] == "quality"]
    parts.append(_generic(rejected, "contract rejections"))
    return "\n".join(parts)


def _absent(what: str) -> str:
    return f'<p class="note">No {html.escape(what)} results in this run.</p>'


def _drift_table(drift: list[dict], pvalues: dict[str, dict]) -> str:
    ordered = sorted(drift, key=lambda r: -((r["details"].get("impact")) or 0.0))
    table = []
    for row in ordered:
        found = pvalues.get(row["subject"], {})
        table.append(
            [
                row["subject"],
                row["value"],
                _badge_text(row["status"]),
                row["details"].get("importance_share"),
                row["details"].get("impact"),
                found.get("value"),
                (found.get("details") or {}).get("drift_category"),
            ]
        )
    header = [
        "feature",
        "psi",
        "status",
        "importance share",
        "impact (psi x share)",
        "whylogs p-value",
        "whylogs category",
    ]
    return (
        '<p class="note">By impact. whylogs p-values (KS for numbers, chi-square for '
        "categories, on sampled profiles) are for reading only: they never alert.</p>"
        + _table(header, table, raw_columns={2})
    )


def _distributions(drift: list[dict]) -> str:
    moving = [r for r in drift if r["status"] in (th.WATCH, th.ALERT)]
    moving.sort(key=lambda r: -((r["details"].get("impact")) or 0.0))
    if not moving:
        return '<p class="note">No feature drifts (every PSI below the watch threshold).</p>'
    shown = moving[:DISTRIBUTIONS]
    note = (
        f'<p class="note">{len(moving)} drifting; the {len(shown)} with the most impact.</p>'
        if len(moving) > len(shown)
        else ""
    )
    plots = "".join(_png(_bins_plot(r, f"{r['subject']}: PSI {r['value']:.3f}")) for r in shown)
    return note + f'<div class="row">{plots}</div>'


def _decisions(rows: list[dict]) -> str:
    drift = [r for r in rows if r["section"] == "decision_drift" and r["metric"] == "psi"]
    daily = [r for r in rows if r["section"] == "decision_drift" and r["metric"] != "psi"]
    if not drift and not daily:
        return _absent("decision")
    parts = []
    if drift:
        row = drift[0]
        reference, current = row["details"]["reference"], row["details"]["current"]
        parts.append(
            f"<p>PSI of the decision rates {_e(row['value'])} {_badge(row['status'])}.</p>"
        )
        parts.append(
            _table(
                ["decision", "reference rate", "current rate"],
                [[d, reference.get(d), current.get(d)] for d in reference],
            )
        )
    if daily:
        parts.append(_png(_daily_plot(daily)))
    return "\n".join(parts)


def _quality(rows: list[dict]) -> str:
    missing = [r for r in rows if r["section"] == "quality" and r["metric"] == "missing_share"]
    unknown = [
        r for r in rows if r["section"] == "quality" and r["metric"] == "unknown_category_share"
    ]
    counted = [r for r in rows if r["section"] == "quality" and r["metric"] == "rows"]
    if not (missing or unknown or counted):
        return _absent("data quality")
    parts = []
    if counted:
        parts.append(f"<p>{int(counted[0]['value'] or 0)} logged predictions in the window.</p>")
    if missing:
        table = [
            [
                r["subject"],
                r["value"],
                r["details"].get("training_share"),
                r["details"].get("excess"),
                _badge_text(r["status"]),
            ]
            for r in sorted(missing, key=lambda r: -(r["details"].get("excess") or 0))
        ]
        parts.append("<p>Missing values: live share against the share in the training rows.</p>")
        parts.append(
            _table(
                ["feature", "live share", "training share", "excess", "status"],
                table,
                raw_columns={4},
            )
        )
    if unknown:
        table = [
            [
                r["subject"],
                r["value"],
                r["details"].get("unknown"),
                ", ".join(f"{k} ({v})" for k, v in (r["details"].get("values") or {}).items()),
                _badge_text(r["status"]),
            ]
            for r in unknown
        ]
        parts.append("<p>Categories the development sample never had.</p>")
        parts.append(
            _table(["feature", "share", "rows", "values", "status"], table, raw_columns={4})
        )
    return "\n".join(parts)


def _accuracy(rows: list[dict]) -> str:
    realized = [r for r in rows if r["section"] == "accuracy"]
    estimated = [r for r in rows if r["section"] == "estimate"]
    if not realized and not estimated:
        return _absent("accuracy")
    parts = []
    figure = _accuracy_plot(realized, estimated)
    if figure is not None:
        parts.append(_png(figure))
    parts.append(_generic(realized + estimated, "accuracy"))
    return "\n".join(parts)


def _generic(rows: list[dict], what: str) -> str:
    """Any section's rows as a table: metric, subject, value, threshold, status, details."""
    if not rows:
        return _absent(what)
    table = [
        [
            r["metric"],
            r["subject"],
            r["value"],
            r["threshold"],
            _badge_text(r["status"]),
            _flat_details(r["details"]),
        ]
        for r in rows
    ]
    return _table(
        ["metric", "subject", "value", "threshold", "status", "details"],
        table,
        key_columns=2,
        raw_columns={4},
    )


def _flat_details(details: dict | None) -> str:
    """The scalar details of a row, ``key=value``, for a table cell."""
    items = []
    for key, value in (details or {}).items():
        if value is None or isinstance(value, bool | int | float | str):
            items.append(f"{key}={_fmt(value)}")
    text = "; ".join(items)
    return text if len(text) <= 300 else text[:297] + "..."


# ---------------------------------------------------------------- plots


def _psi_plot(drift: list[dict]) -> Figure:
    """PSI per feature, the thresholds drawn; bars beyond the axis end are labelled."""
    ordered = sorted(drift, key=lambda r: r["value"] or 0.0)
    fig = _figure(11, 0.26 * len(ordered) + 1.4)
    ax = fig.subplots()
    values = [r["value"] or 0.0 for r in ordered]
    end = max(2 * th.PSI_ALERT, min(max(values, default=0.0), 1.0)) * 1.08
    colors = [STATUS_COLORS.get(r["status"], "#7f7f7f") for r in ordered]
    bars = ax.barh([r["subject"] for r in ordered], [min(v, end) for v in values], color=colors)
    for bar, value in zip(bars, values, strict=True):
        if value > end:
            ax.text(
                end,
                bar.get_y() + bar.get_height() / 2,
                f"{value:.2f} ",
                va="center",
                ha="right",
                fontsize=7,
                color="white",
            )
    for line, style in ((th.PSI_WATCH, "--"), (th.PSI_ALERT, "-")):
        ax.axvline(line, color="grey", ls=style, lw=1)
    ax.set(
        title=f"PSI per feature (lines: watch {th.PSI_WATCH}, act {th.PSI_ALERT})",
        xlabel="PSI",
        xlim=(0, end),
    )
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(alpha=0.3, axis="x")
    return fig


def _bins_plot(row: dict, title: str) -> Figure:
    details = row["details"]
    labels = details["bins"]
    fig = _figure(5.6, 0.22 * len(labels) + 1.6)
    ax = fig.subplots()
    y = np.arange(len(labels))
    ax.barh(y - 0.2, details["reference"], 0.4, color=COLORS[0], label="reference")
    ax.barh(y + 0.2, details["current"], 0.4, color=COLORS[1], label="current")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(title=title, xlabel="share of rows")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8)
    return fig


def _daily_plot(daily: list[dict]) -> Figure:
    by_decision: dict[str, dict[str, float]] = defaultdict(dict)
    for row in daily:
        by_decision[row["metric"].removesuffix("_rate")][row["subject"]] = row["value"]
    days = sorted({row["subject"] for row in daily})
    fig = _figure(11, 3.6)
    ax = fig.subplots()
    for color, (decision, values) in zip(COLORS, by_decision.items(), strict=False):
        ax.plot(days, [values.get(d) for d in days], "o-", color=color, label=decision)
    ax.set(title="Decisions over time (daily rates)", ylabel="share of answers", ylim=(0, 1))
    ax.tick_params(axis="x", labelsize=8, rotation=45)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _latency_plot(latency: list[dict]) -> Figure | None:
    quantiles = [m for m in ("p50_s", "p95_s", "p99_s") if any(r["metric"] == m for r in latency)]
    endpoints = sorted({r["subject"] for r in latency if r["metric"] in quantiles})
    if not quantiles or not endpoints:
        return None
    value = {(r["subject"], r["metric"]): r["value"] for r in latency}
    fig = _figure(11, 0.5 * len(endpoints) + 1.6)
    ax = fig.subplots()
    y = np.arange(len(endpoints))
    height = 0.8 / len(quantiles)
    for i, (color, metric) in enumerate(zip(COLORS, quantiles, strict=False)):
        widths = [1000 * (value.get((e, metric)) or 0.0) for e in endpoints]
        ax.barh(
            y + (i - (len(quantiles) - 1) / 2) * height,
            widths,
            height,
            color=color,
            label=metric.removesuffix("_s"),
        )
    ax.set_yticks(y, endpoints, fontsize=8)
    ax.invert_yaxis()
    ax.set(title="Latency by endpoint", xlabel="ms")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8)
    return fig


def _accuracy_plot(realized: list[dict], estimated: list[dict]) -> Figure | None:
    """By vintage, each estimated metric beside its realized counterpart (the same metric, or
    its value among approved loans): realized solid, estimated dashed."""
    realized_metrics = {r["metric"] for r in realized}
    pairs = []
    for metric in sorted({r["metric"] for r in estimated}):
        twin = next((m for m in (metric, f"{metric}_approved") if m in realized_metrics), None)
        pairs.append((metric, twin))
    if not pairs:
        pairs = [(None, m) for m in sorted(realized_metrics & {"roc_auc", "ece"})]
    if not pairs:
        return None
    columns = min(len(pairs), 2)
    fig = _figure(5.5 * columns, 3.8 * ((len(pairs) + 1) // 2))
    axes = np.atleast_1d(fig.subplots((len(pairs) + 1) // 2, columns)).ravel()
    for ax, (guess, truth) in zip(axes, pairs, strict=False):
        for rows, metric, style, name in (
            (realized, truth, "o-", "realized"),
            (estimated, guess, "s--", "estimated"),
        ):
            points = sorted(
                (r["subject"], r["value"])
                for r in rows
                if r["metric"] == metric
                and r["value"] is not None
                and r["subject"] not in (ALL, RECEIVED)
            )
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], style, label=name)
        ax.set(title=" vs ".join(m for m in (guess, truth) if m), xlabel="vintage")
        ax.tick_params(axis="x", labelsize=7, rotation=45)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no vintage labeled or estimated yet: no legend
            ax.legend(fontsize=8)
    for ax in axes[len(pairs) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def _png(fig: Figure) -> str:
    return png(fig, dpi=80)  # a run's report has many plots: smaller than training's


# ---------------------------------------------------------------- tables


class _Raw(str):
    """HTML to put in a cell as is."""


def _badge_text(status: str) -> _Raw:
    return _Raw(_badge(status))


def _table(
    header: list[str], rows: list[list], key_columns: int = 1, raw_columns: set[int] | None = None
) -> str:
    raw_columns = raw_columns or set()
    head = "".join(
        f'<th class="key">{html.escape(h)}</th>'
        if i < key_columns
        else f"<th>{html.escape(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            text = value if i in raw_columns and isinstance(value, _Raw) else _e(value)
            cells.append(f'<td class="key">{text}</td>' if i < key_columns else f"<td>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"
