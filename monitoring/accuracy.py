"""Accuracy once outcomes arrive, and its estimate before they do, per application month.

Outcomes come late: a loan's outcome (defaulted within ``performance_window_days`` or not) is
known from its label's ``received_at``. So accuracy is reported per vintage (the "YYYY-MM" of
the prediction time, UTC), over every vintage the model scored up to ``as_of``, not only the
monitor window: old vintages are the ones whose outcomes are in. Only the labels received by
``as_of`` count, the newest per prediction (a correction replaces what it corrects).

Realized accuracy (section "accuracy") is measured on every labeled prediction, with the label
coverage of each decision beside it: only approved loans get outcomes, so the selection bias
is visible. Before outcomes arrive the calibrated probabilities are the forecast (section
"estimate", the idea of NannyML's CBPE): on the approved predictions, the expected default
rate is their mean probability and the expected ROC AUC is computed exactly from the scores
(:func:`expected_roc_auc`); each estimate carries the realized value on the labeled part of the
same population once labels exist.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from creditflow import clock
from creditflow.feedback.labels import newest_labels_query
from creditflow.model.evaluate import expected_roc_auc, metrics, reliability
from creditflow.monitoring import thresholds as th
from creditflow.monitoring.results import Result
from creditflow.monitoring.window import Window
from creditflow.postprocessing.policy import DECISIONS
from creditflow.tables import predictions

SECTION = "accuracy"
ESTIMATE_SECTION = "estimate"
ALL = "all"  # the subject of the figures over every vintage
# The subject of the figures over the outcomes received in the run's window, whatever their
# vintage: a change that only outcomes reveal shows here first (a vintage mixes old outcomes in).
RECEIVED = "received_in_window"
APPROVED = "approve"
OUTCOME_COLUMNS = ["prediction_id", "at", "vintage", "default_probability", "decision", "outcome",
                   "received_at"]  # fmt: skip


def scored_outcomes(engine: sa.Engine, model_tag: str, as_of: datetime) -> pd.DataFrame:
    """The model's predictions made up to ``as_of``, each with its vintage and the outcome its
    current label gives (NaN: no label received by ``as_of``).

    Every prediction the model ever made and every current label are read on each run: only
    the columns needed, times as the driver gives them (parsed in bulk, not per row by
    SQLAlchemy's DateTime type), joined here (SQLite would rank the labels once per
    prediction in a join)."""
    as_of = clock.as_utc(as_of)
    p = predictions.c
    query = sa.select(
        p.prediction_id,
        sa.type_coerce(p.at, sa.String).label("at"),
        p.default_probability,
        p.decision,
    ).where(p.model_tag == model_tag, p.at <= as_of)
    current = newest_labels_query(as_of).subquery()
    known = sa.select(
        current.c.prediction_id,
        current.c.outcome,
        sa.type_coerce(current.c.received_at, sa.String).label("received_at"),
    )
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=query.selected_columns.keys())
        labels = pd.DataFrame(conn.execute(known).all(),
                              columns=["prediction_id", "outcome", "received_at"])  # fmt: skip
    labels["received_at"] = pd.to_datetime(labels["received_at"], utc=True, format="ISO8601")
    frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
    month = frame["at"].dt.year * 100 + frame["at"].dt.month  # strftime per row: seconds
    frame["vintage"] = month.map({m: f"{m // 100:04d}-{m % 100:02d}" for m in month.unique()})
    frame["default_probability"] = frame["default_probability"].astype(float)
    frame = frame.merge(labels, on="prediction_id", how="left")
    frame["outcome"] = frame["outcome"].astype(float)
    return frame[OUTCOME_COLUMNS]


def _maturity(vintage: str, as_of: datetime, window_days: int) -> dict[str, Any]:
    """When every loan of a vintage has had its full performance window."""
    next_month = (pd.Period(vintage, freq="M") + 1).start_time.tz_localize("UTC")
    matures = next_month.to_pydatetime() + timedelta(days=window_days)
    return {"mature": as_of >= matures, "matures_on": matures.date().isoformat()}


def _coverage(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Predictions, labeled ones and their share, per decision (the three bands always)."""
    labeled = rows["outcome"].notna()
    found = {}
    for decision in dict.fromkeys([*DECISIONS, *sorted(rows["decision"].unique())]):
        mine = (rows["decision"] == decision).to_numpy()
        n, k = int(mine.sum()), int((mine & labeled.to_numpy()).sum())
        found[decision] = {"predictions": n, "labeled": k, "coverage": k / n if n else None}
    return found


def _realized(rows: pd.DataFrame, subject: str, test: dict, common: dict, tag: str,
              reference_gap: float = 0.0, coverage: bool = True) -> list:  # fmt: skip
    """The accuracy section's results for one vintage (or all of them). ``reference_gap``: how
    far below its promise the model ranked the approved rows of its own test window."""
    labeled = rows[rows["outcome"].notna()]
    found = metrics(labeled["outcome"].to_numpy(), labeled["default_probability"].to_numpy())
    n = found["rows"]
    enough = n >= th.MIN_LABELED_FOR_ACCURACY
    auc, test_auc = found["roc_auc"], test.get("roc_auc")
    # Judged against what the model's calibrated scores promise on these very rows (the AUC
    # expected if each outcome were Bernoulli(p)): outcomes exist only for approved (and
    # explored) loans, on which any model ranks worse than on all of its test rows, so the
    # test AUC would alarm as soon as labels arrive. A world that changed breaks the promise.
    # The promise falls short on approved rows by the model's own measure at training too
    # (``reference_gap``): only a shortfall beyond it is a change.
    promised = expected_roc_auc(labeled["default_probability"].to_numpy()) if n else None
    drop = None if auc is None or promised is None else promised - auc - reference_gap
    approved = labeled[labeled["decision"] == APPROVED]
    details = {**common, "labeled": n, "predictions": len(rows)}

    def result(metric, value, status=th.INFO, threshold=None, **extra) -> Result:
        return Result(SECTION, metric, subject, value, status, threshold, tag,
                      {**details, **extra})  # fmt: skip

    out = [
        result(
            "roc_auc",
            auc,
            th.status_of(drop, th.AUC_DROP_WATCH, th.AUC_DROP_ALERT) if enough else th.INFO,
            None if promised is None else promised - reference_gap - th.AUC_DROP_ALERT,
            expected_roc_auc=promised,
            reference_gap=reference_gap,
            test_roc_auc=test_auc,
            drop=drop,
        ),
        result("gini", None if auc is None else 2 * auc - 1),
        result("ks", found["ks"]),
        result("brier", found["brier"], test_brier=test.get("brier")),
        result(
            "ece",
            found["ece"],
            th.status_of(found["ece"], th.ECE_WATCH, th.ECE_ALERT) if enough else th.INFO,
            th.ECE_ALERT,
            test_ece=test.get("ece"),
            reliability=reliability(labeled["outcome"], labeled["default_probability"]),
        ),
        result(
            "default_rate_approved",
            float(approved["outcome"].mean()) if len(approved) else None,
            approved_labeled=len(approved),
        ),
        result("labeled_rows", float(n)),
    ]
    for decision, counts in _coverage(rows).items() if coverage else ():
        out.append(result(f"label_coverage_{decision}", counts["coverage"], **counts))
    return out


def _estimated(rows: pd.DataFrame, subject: str, common: dict, tag: str) -> list[Result]:
    """The estimate section's results for one vintage (or all): approved predictions only."""
    approved = rows[rows["decision"] == APPROVED]
    p = approved["default_probability"].to_numpy()
    labeled = approved[approved["outcome"].notna()]
    realized = metrics(labeled["outcome"].to_numpy(), labeled["default_probability"].to_numpy())
    details = {
        **common,
        "population": APPROVED,
        "approved": len(approved),
        "labeled": len(labeled),
        "coverage": len(labeled) / len(approved) if len(approved) else None,
    }
    return [
        Result(ESTIMATE_SECTION, "default_rate", subject, float(p.mean()) if len(p) else None,
               th.ESTIMATED, None, tag, {**details, "realized": realized["default_rate"]}),
        Result(ESTIMATE_SECTION, "roc_auc", subject, expected_roc_auc(p), th.ESTIMATED, None,
               tag, {**details, "realized": realized["roc_auc"]}),
    ]  # fmt: skip


def accuracy_results(window: Window) -> list[Result]:
    """Realized accuracy (section "accuracy") and its estimate (section "estimate") of the
    window's model, per vintage and over all of them (subject "all"), as of ``window.as_of``.

    Section "accuracy", per subject: ``roc_auc`` (judged by its drop below the model's test
    AUC, ``AUC_DROP_*``; threshold: the AUC below which it alerts), ``gini``, ``ks``,
    ``brier``, ``ece`` (judged by ``ECE_*``; details ``reliability``: predicted vs observed per
    probability bin), ``default_rate_approved``, ``labeled_rows`` and
    ``label_coverage_<decision>`` (details: ``predictions``, ``labeled``). Fewer than
    ``MIN_LABELED_FOR_ACCURACY`` labeled rows: INFO. Every result's details carry ``labeled``,
    ``predictions``, ``vintage``, ``mature`` and ``matures_on`` (when the vintage's last loan
    has had its full performance window: before that, defaults reported early weigh more).

    Subject ``received_in_window``: the same realized figures (coverage aside) over the outcomes
    received in the run's window, whatever their vintage, judged alike.

    Section "estimate", status "estimated", on the approved predictions: ``default_rate``
    (mean probability) and ``roc_auc`` (:func:`expected_roc_auc`); details ``realized`` (the
    value on the labeled approved rows, None without labels), ``approved``, ``labeled``,
    ``coverage``. What a report plots: value and ``realized`` by vintage.
    """
    as_of = clock.as_utc(window.as_of)
    tag = window.model_tag
    rows = scored_outcomes(window.engine, tag, as_of)
    if rows.empty:
        return [Result(SECTION, "labeled_rows", ALL, 0.0, th.INFO, None, tag,
                       {"predictions": 0, "labeled": 0})]  # fmt: skip
    test = window.model.metadata.get("metrics", {}).get("test", {})
    # Models trained before the gap was recorded: none allowed for.
    gap = (window.model.metadata.get("metrics", {}).get("test_approved") or {}).get("gap")
    gap = max(float(gap), 0.0) if gap is not None else 0.0
    window_days = window.settings.performance_window_days
    vintages = sorted(rows["vintage"].unique())
    found: list[Result] = []
    for vintage in vintages:
        mine = rows[rows["vintage"] == vintage]
        common = {"vintage": vintage, **_maturity(vintage, as_of, window_days)}
        found += _realized(mine, vintage, test, common, tag, gap)
        found += _estimated(mine, vintage, common, tag)
    common = {"vintage": ALL, "vintages": vintages,
              "mature": all(_maturity(v, as_of, window_days)["mature"] for v in vintages),
              "matures_on": _maturity(vintages[-1], as_of, window_days)["matures_on"]}  # fmt: skip
    found += _realized(rows, ALL, test, common, tag, gap)
    found += _estimated(rows, ALL, common, tag)
    received = rows[(rows["received_at"] > clock.as_utc(window.start)).to_numpy()]
    if len(received):
        common = {"vintage": RECEIVED, "received_from": clock.as_utc(window.start).isoformat(),
                  "mature": False, "matures_on": None}  # fmt: skip
        found += _realized(received, RECEIVED, test, common, tag, gap, coverage=False)
    return found
