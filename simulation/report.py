"""The simulation's one report: headline figures, each scenario's verdict, plots (HTML + JSON).

Headlines, per drift: days from the drift to its first alert (of the scenario's sections, and
naming its column for broken data), from that alert to a promoted model, and to recovered
quality (the day's true AUC, which the simulation knows for every applicant, back within
``RECOVERY_TOLERANCE`` of its level before the drift); for broken data, the promotions of
models whose training rows span incident days that approved loans (whose outcomes become
training rows). False alarms are the alerts of a run with no drift. Exploration: its cost
(defaults among explored loans) and what it revealed (the default rate of applications the
model would not approve).
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from creditflow.demo_world import scenarios as sc

RECOVERY_TOLERANCE = 0.02  # true AUC within this of its pre-drift mean counts as recovered


def _alert_days(
    days: list[dict], column: str | None = None, sections: tuple[str, ...] = ()
) -> list[int]:
    """Days with an alert (naming ``column``, in one of ``sections``, when given)."""
    found = []
    for d in days:
        alerts = d["monitor"]["alerts"]
        if sections:
            alerts = [a for a in alerts if a.get("section") in sections]
        if column is not None:
            alerts = [
                a
                for a in alerts
                if a.get("subject") == column or column in (a.get("features") or [])
            ]
        if alerts:
            found.append(d["day"])
    return found


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def headlines(result: dict, drifts: list[sc.Drift]) -> dict:
    """Per drift: first alert, promotion and recovery days, and the declared expectation met."""
    days, retrains = result["days"], result["retrains"]
    out: dict = {"false_alarms": None, "drifts": []}
    if not drifts:
        out["false_alarms"] = len(_alert_days(days))
    ends = [d.day for d in drifts[1:]] + [len(days) + 1] if drifts else []
    for drift, end in zip(drifts, ends, strict=True):
        s = drift.scenario
        mine = [d for d in days if drift.day <= d["day"] < end]
        alert = next(iter(_alert_days(mine, s.column, s.sections)), None)
        # Incident days with outcomes to come (only approved or explored loans get them): the
        # rows a model could learn the broken data from.
        broken = [
            d
            for d in mine
            if s in sc.active([drift], d["day"]) and (d["approval_rate"] or d["explored"])
        ]
        broken_retrain = [
            r
            for r in retrains
            if r.get("outcome") == "promoted"
            and s.expect == sc.BROKEN_DATA
            and any(_trained_on(r, d) for d in broken)
        ]
        promotion = next(
            (r for r in retrains if drift.day <= r["day"] < end and r.get("outcome") == "promoted"),
            None,
        )
        promoted = None if promotion is None else promotion["day"]
        before = _mean(d["true_auc"] for d in days if drift.day - 15 <= d["day"] < drift.day)
        recovered = None
        if promoted is not None and before is not None:
            recovered = next(
                (
                    d["day"]
                    for d in mine
                    if d["day"] > promoted
                    and d["true_auc"]
                    and d["true_auc"] >= before - RECOVERY_TOLERANCE
                ),
                None,
            )
        worst = min((d["true_auc"] for d in mine if d["true_auc"] is not None), default=None)
        row = {
            "scenario": s.name,
            "day": drift.day,
            "expect": s.expect,
            "first_alert_day": alert,
            "days_to_alert": None if alert is None else alert - drift.day,
            # Negative: a scheduled retrain promoted a model before the monitor alerted.
            "days_alert_to_promotion": None
            if alert is None or promoted is None
            else promoted - alert,
            "promoted_by": None if promotion is None else promotion.get("trigger"),
            "days_to_recovery": None if recovered is None else recovered - drift.day,
            "true_auc_before": before,
            "true_auc_worst": worst,
            "promotions_on_broken_data": len(broken_retrain),
            "retrains_refused": sum(
                1 for r in retrains if drift.day <= r["day"] < end and r.get("outcome") == "refused"
            ),
        }
        row["met"] = _met(s, row)
        out["drifts"].append(row)
    return out


def _trained_on(retrain: dict, day: dict) -> bool:
    """Whether the retrain's training rows span the day's applications (event times in
    (end - 1 day, end], ``date`` being the end's)."""
    window = retrain.get("training_window")
    if not window:
        return False
    end = datetime.fromisoformat(day["date"]).replace(tzinfo=UTC)
    start, newest = (datetime.fromisoformat(window[k]) for k in ("start", "newest"))
    return start <= end and end - timedelta(days=1) < newest


def _met(s: sc.Scenario, row: dict) -> bool:
    if s.expect == sc.BROKEN_DATA:
        return (
            row["days_to_alert"] is not None
            and row["days_to_alert"] <= s.alert_within_days
            and row["promotions_on_broken_data"] == 0
        )
    if s.expect == sc.CONCEPT:
        return row["days_to_alert"] is not None and row["days_to_recovery"] is not None
    if s.expect == sc.COVARIATE:
        return row["days_to_alert"] is not None
    return row["days_to_alert"] is None


def exploration(result: dict) -> dict:
    """Cost and yield of the exploration share (from the simulation's own record)."""
    frame = result.get("scored")
    if frame is None or frame.empty:
        return {}
    explored = frame[frame["explored"]]
    not_approved = frame[frame["decision"].ne("approve")]
    return {
        "explored": len(explored),
        "explored_share": len(explored) / len(frame),
        "explored_defaults": int(explored["outcome"].sum()),
        "explored_default_rate": float(explored["outcome"].mean()) if len(explored) else None,
        "not_approved_true_default_rate": float(not_approved["outcome"].mean())
        if len(not_approved)
        else None,
    }


def _series(days: list[dict], *path: str) -> list:
    out = []
    for d in days:
        value = d
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        out.append(value)
    return out


def _plots(result: dict, drifts: list[sc.Drift]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = result["days"]
    x = [d["day"] for d in days]
    psi = {}
    for d in days:
        for feature, value in d["monitor"]["figures"].get("psi", {}).items():
            psi.setdefault(feature, {})[d["day"]] = value
    top = sorted(psi, key=lambda f: -max(v or 0 for v in psi[f].values()))[:5]
    panels = [
        (
            "AUC",
            [
                ("true (all applicants)", _series(days, "true_auc")),
                ("realized (labels)", _series(days, "monitor", "figures", "realized_auc")),
                ("estimated", _series(days, "monitor", "figures", "estimated_auc")),
            ],
        ),
        (
            "calibration",
            [
                ("mean p - default rate (all)", _series(days, "true_calibration")),
                ("realized ECE", _series(days, "monitor", "figures", "realized_ece")),
            ],
        ),
        ("PSI, top features", [(f, [psi[f].get(day) for day in x]) for f in top]),
        (
            "rates",
            [
                ("approval", _series(days, "approval_rate")),
                ("default (all)", _series(days, "default_rate_all")),
                ("default (approved)", _series(days, "default_rate_approved")),
                ("label coverage", _series(days, "monitor", "figures", "label_coverage")),
            ],
        ),
    ]
    images = []
    alerts = _alert_days(days)
    versions = {}
    for d in days:
        versions.setdefault(d["model_tag"], d["day"])
    for title, lines in panels:
        fig, ax = plt.subplots(figsize=(9, 3))
        for label, values in lines:
            ax.plot(x, [np.nan if v is None else v for v in values], label=label, lw=1.2)
        for day in alerts:
            ax.axvline(day, color="red", alpha=0.08)
        for drift in drifts:
            ax.axvline(drift.day, color="black", ls="--", lw=1)
        for day in list(versions.values())[1:]:
            ax.axvline(day, color="green", ls=":", lw=1.5)
        ax.set_title(f"{title} (red: alert days, dashed: drift, green: new champion)")
        ax.legend(fontsize=7, loc="best")
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        images.append(base64.b64encode(buf.getvalue()).decode())
    return images


def write(result: dict, summary: dict, drifts: list[sc.Drift], folder: Path) -> dict[str, Path]:
    """``report.html`` (plots, headlines, retraining runs) and ``report.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "report.json"
    json_path.write_text(
        json.dumps(
            {**summary, "days": result["days"], "retrains": result["retrains"]},
            default=str,
            indent=1,
        )
    )
    rows = "".join(
        f"<tr><td>{r['day']}</td><td>{html.escape(str(r.get('trigger')))}</td>"
        f"<td>{html.escape(str(r.get('outcome')))}</td>"
        f"<td>{html.escape(json.dumps(r.get('decision'), default=str))[:400]}</td></tr>"
        for r in result["retrains"]
    )
    images = "".join(f'<img src="data:image/png;base64,{i}"><br>' for i in _plots(result, drifts))
    page = (
        "<html><head><meta charset='utf-8'><title>creditflow simulate</title></head><body>"
        "<h1>Lifecycle simulation</h1>"
        f"<pre>{html.escape(json.dumps(summary, indent=1, default=str))}</pre>{images}"
        "<h2>Retraining runs</h2><table border=1><tr><th>day</th><th>trigger</th>"
        f"<th>outcome</th><th>decision</th></tr>{rows}</table></body></html>"
    )
    html_path = folder / "report.html"
    html_path.write_text(page)
    return {"html": html_path, "json": json_path}
