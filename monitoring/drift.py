"""Input, score and decision drift against the model's development sample, ranked by impact.

The measure that decides is PSI (CSI for one feature), the credit industry's: each feature is
binned on the development sample (numbers on its quantiles, ``thresholds.PSI_BINS`` bins;
categories as the sample's own plus "other"), and
``PSI = sum((current - reference) * ln(current / reference))`` over the bins' shares of the
values present. Missing values are the quality check's (monitoring/quality.py: the live
missing share against the training one): counted in PSI too, a feature whose training rows
lacked it 4% of the time (loans older than the applicant's first bureau record) and whose live
rows never do would sit near the watch line on every healthy day. The missing shares are kept
beside the bins in the result's details.
Stable below 0.10, watch to 0.25, act above (``thresholds``). whylogs' KS and chi-square
p-values are stored beside it, for reading only: with a million rows a p-value finds a
"significant" shift in anything.

A drifting feature matters as much as the model leans on it: each feature's share of the
model's importance (mean |SHAP contribution| from the training report) times its PSI ranks the
drift, so an alert names the features that moved the score first.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from creditflow.model.registry import REFERENCE_FILE
from creditflow.monitoring import thresholds as th
from creditflow.monitoring.logged import AT, DECISION, PROBABILITY, logged_predictions
from creditflow.monitoring.results import Result
from creditflow.monitoring.window import Window
from creditflow.postprocessing.policy import DECISIONS

MISSING, OTHER = "missing", "other"
# Features named as having moved the score, at most.
DRIVERS = 5
NUMERIC, CATEGORICAL = "numeric", "categorical"


@dataclass(frozen=True)
class Bins:
    """A feature's bins, fixed by the development sample."""

    kind: str  # numeric or categorical
    labels: tuple[str, ...]  # one per bin, the missing bin last
    edges: tuple[float, ...] = ()  # numeric: bin i holds edges[i-1] < x <= edges[i]
    categories: tuple[str, ...] = ()  # categorical: one bin each, then "other"

    @classmethod
    def numeric(cls, reference: Any, bins: int = th.PSI_BINS) -> Bins:
        """Quantile bins of the reference's values, edges at observed values (ties merge bins:
        a feature that is mostly 0 has few)."""
        values = np.asarray(reference, dtype=np.float64)
        values = values[~np.isnan(values)]
        if len(values) == 0:
            return cls(NUMERIC, ("all", MISSING))
        quantiles = np.arange(1, bins) / bins  # exact tenths (linspace: 0.30000000000000004)
        edges = np.unique(np.quantile(values, quantiles, method="inverted_cdf"))
        edges = tuple(float(e) for e in edges)
        labels = [f"<= {_short(edges[0])}"]
        labels += [f"({_short(a)}, {_short(b)}]" for a, b in zip(edges, edges[1:], strict=False)]
        labels += [f"> {_short(edges[-1])}", MISSING]
        return cls(NUMERIC, tuple(labels), edges=edges)

    @classmethod
    def categorical(cls, reference: Any) -> Bins:
        """The reference's categories, most frequent first, then "other" and missing."""
        counts = pd.Series(reference, dtype=object).dropna().astype(str).value_counts()
        categories = tuple(str(c) for c in counts.index)
        return cls(CATEGORICAL, (*categories, OTHER, MISSING), categories=categories)

    def counts(self, values: Any) -> np.ndarray:
        """Rows per bin."""
        if self.kind == NUMERIC:
            x = np.asarray(values, dtype=np.float64)
            missing = np.isnan(x)
            index = np.searchsorted(np.asarray(self.edges), x[~missing], side="left")
            found = np.bincount(index, minlength=len(self.labels) - 1)
            return np.append(found, missing.sum()).astype(np.int64)
        series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
        by_value = series.value_counts(dropna=True)  # a categorical column: without objects
        by_value.index = by_value.index.astype(str)
        by_value = by_value.groupby(level=0).sum()
        missing = int(series.isna().sum())
        found = [int(by_value.get(c, 0)) for c in self.categories]
        other = len(series) - missing - sum(found)
        return np.array([*found, other, missing], dtype=np.int64)

    def shares(self, values: Any) -> np.ndarray:
        counts = self.counts(values)
        total = counts.sum()
        return counts / total if total else np.zeros(len(counts))

    def present_shares(self, values: Any) -> tuple[np.ndarray, float, int]:
        """Shares of the bins but the missing one among the values present, the missing
        share, and the number of values present."""
        counts = self.counts(values)
        present = counts[:-1]
        total, n = counts.sum(), int(present.sum())
        shares = present / n if n else np.zeros(len(present))
        return shares, (float(counts[-1] / total) if total else 0.0), n


def psi(reference: Any, current: Any, epsilon: float = th.PSI_EPSILON) -> float:
    """Population stability index of two share vectors over the same bins (each share floored
    at ``epsilon``: an empty bin would make it infinite)."""
    expected = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    actual = np.maximum(np.asarray(current, dtype=np.float64), epsilon)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def sampling_psi(bins: int, rows: int, reference_rows: int = 0) -> float:
    """The PSI two samples of one distribution show by chance, about (bins - 1) (1/n + 1/N):
    n N / (n + N) PSI is roughly chi-square with bins - 1 degrees of freedom. Negligible on a
    day of traffic over ten bins; not on 300 rows over fifty states."""
    if bins < 2 or rows < 1:
        return 0.0
    return (bins - 1) * (1 / rows + (1 / reference_rows if reference_rows else 0.0))


def drift_status(value: float | None, rows: int, bins: int = 0, reference_rows: int = 0) -> str:
    """PSI judged by the thresholds beyond what chance alone gives (:func:`sampling_psi`, with
    the number of bins that hold values); too few live rows to judge: INFO."""
    if value is None or rows < th.MIN_ROWS_FOR_DRIFT:
        return th.INFO
    effect = value - sampling_psi(bins, rows, reference_rows)
    return th.status_of(effect, th.PSI_WATCH, th.PSI_ALERT)


# ---------------------------------------------------------------- the model's reference


def reference_frame(window: Window) -> pd.DataFrame:
    """The model's development sample (its training rows' contract features)."""
    return window.of_model("reference", lambda: pd.read_parquet(window.model_dir / REFERENCE_FILE))


def reference_answers(window: Window) -> pd.DataFrame:
    """The development sample scored by the model and its post-processing, as live requests
    are: ``default_probability`` and ``decision`` per row."""

    def score() -> pd.DataFrame:
        from creditflow.postprocessing.predict import Predictor

        frame = reference_frame(window)
        predictor = Predictor(window.model)
        columns = {name: frame[name].to_numpy() for name in window.model.contract.names}
        answers = predictor.predict(columns)
        return pd.DataFrame({PROBABILITY: answers.probability, DECISION: answers.decision})

    return window.of_model("reference_answers", score)


def reference_bins(window: Window) -> dict[str, tuple[Bins, np.ndarray, float]]:
    """Per contract feature: its bins on the development sample, the sample's shares of the
    bins (values present) and its missing share."""

    def build() -> dict[str, tuple[Bins, np.ndarray, float]]:
        reference = reference_frame(window)
        found = {}
        for name in window.model.contract.names:
            column = reference[name]
            categorical = name in window.model.contract.categorical
            bins = Bins.categorical(column) if categorical else Bins.numeric(column)
            shares, missing, _ = bins.present_shares(column)
            found[name] = (bins, shares, missing)
        return found

    return window.of_model("reference_bins", build)


def importance_shares(window: Window) -> dict[str, float]:
    """Each contract feature's share of the model's importance: mean |SHAP contribution| from
    the training report (``importance.shap``; ``importance.gain`` for an older report), summing
    to 1. Empty when the model has no report."""

    def read() -> dict[str, float]:
        path = window.model_dir / "report.json"
        if not path.exists():
            return {}
        importance = json.loads(path.read_text()).get("importance", {})
        values = importance.get("shap") or importance.get("gain") or {}
        names = window.model.contract.names
        raw = {name: max(float(values.get(name) or 0.0), 0.0) for name in names}
        total = sum(raw.values())
        return {name: value / total for name, value in raw.items()} if total > 0 else {}

    return window.of_model("importance_shares", read)


# ---------------------------------------------------------------- the checks


def drift_results(window: Window) -> list[Result]:
    """PSI of every contract feature, of the score and of the decisions, whylogs' p-values,
    and the daily decision rates, for ``window``'s model."""
    live = logged_predictions(window)
    reference = reference_frame(window)
    shares = importance_shares(window)
    features = feature_drift(window, live, reference, shares)
    results = [*features, score_drift(window, live, features), decision_drift(window, live)]
    results += daily_decisions(window, live)
    results += whylogs_drift(window, live)
    return results


def feature_drift(
    window: Window, live: pd.DataFrame, reference: pd.DataFrame, shares: dict[str, float]
) -> list[Result]:
    """One PSI result per contract feature, with its bins, both distributions, its importance
    share and its impact (PSI x share)."""
    contract = window.model.contract
    results = []
    binned = reference_bins(window)
    for name in contract.names:
        categorical = name in contract.categorical
        bins, expected, expected_missing = binned[name]
        current, current_missing, present = bins.present_shares(live[name])
        value = psi(expected, current) if present else None
        share = shares.get(name)
        details = {
            **({} if categorical else unit_change(reference[name], live[name])),
            "kind": bins.kind,
            "bins": list(bins.labels[:-1]),
            "edges": list(bins.edges),
            "reference": expected.tolist(),
            "current": current.tolist(),
            "reference_missing_share": expected_missing,
            "current_missing_share": current_missing,
            "rows": len(live),
            "present_rows": present,
            "reference_rows": len(reference),
            "importance_share": share,
            "impact": value * share if value is not None and share is not None else None,
        }
        results.append(
            Result(
                "drift",
                "psi",
                name,
                value,
                drift_status(value, present, int(np.count_nonzero(expected)), len(reference)),
                th.PSI_ALERT,
                window.model_tag,
                details,
            )
        )
    return results


def unit_change(reference: Any, current: Any) -> dict:
    """``data_quality`` and what is suspected when the live median is ``UNIT_CHANGE_RATIO``
    times the reference's or as many times smaller (a unit changed upstream); else nothing."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if not len(ref) or not len(cur):
        return {}
    ref_median, cur_median = float(np.median(ref)), float(np.median(cur))
    if ref_median <= 0 or cur_median <= 0:
        return {}
    ratio = cur_median / ref_median
    if 1 / th.UNIT_CHANGE_RATIO < ratio < th.UNIT_CHANGE_RATIO:
        return {}
    return {
        "data_quality": True,
        "median_ratio": ratio,
        "suspected": f"live values about {ratio:.3g}x the reference's: a unit changed upstream?",
    }


def drivers(features: list[Result], limit: int = DRIVERS) -> list[dict]:
    """The drifting features (PSI from the watch threshold) that moved the score most: by
    PSI x importance share, largest first."""
    moved = [r for r in features if r.value is not None and r.value >= th.PSI_WATCH]
    moved.sort(key=lambda r: -(r.details.get("impact") or 0.0))
    return [
        {
            "feature": r.subject,
            "psi": r.value,
            "importance_share": r.details.get("importance_share"),
            "impact": r.details.get("impact"),
        }
        for r in moved[:limit]
    ]


def comparable_scores(values: Any) -> np.ndarray:
    """Probabilities to ``SCORE_DECIMALS``: the same calibrated step, whether the service's
    float32 path or the reference's float64 path computed it, falls in the same bin."""
    return np.round(np.asarray(values, dtype=np.float64), th.SCORE_DECIMALS)


def score_drift(window: Window, live: pd.DataFrame, features: list[Result]) -> Result:
    """PSI of the calibrated default probability against the development sample scored by the
    same model, on the reference scores' quantile bins; the drifting features that moved it."""
    expected_scores = reference_answers(window)[PROBABILITY]

    def score_bins() -> tuple[Bins, np.ndarray]:
        scores = comparable_scores(expected_scores)
        bins = Bins.numeric(scores)
        return bins, bins.shares(scores)

    bins, expected = window.of_model("score_bins", score_bins)
    current = bins.shares(comparable_scores(live[PROBABILITY]))
    value = psi(expected, current) if len(live) else None
    details = {
        "kind": NUMERIC,
        "bins": list(bins.labels),
        "edges": list(bins.edges),
        "reference": expected.tolist(),
        "current": current.tolist(),
        "rows": len(live),
        "reference_mean": float(expected_scores.mean()),
        "current_mean": float(live[PROBABILITY].mean()) if len(live) else None,
        "drivers": drivers(features),
    }
    return Result(
        "score_drift",
        "psi",
        PROBABILITY,
        value,
        drift_status(value, len(live), int(np.count_nonzero(expected)), len(expected_scores)),
        th.PSI_ALERT,
        window.model_tag,
        details,
    )


def decision_rates(decisions: Any) -> dict[str, float]:
    """Share of each decision (approve, review, decline) among some answers."""
    series = decisions if isinstance(decisions, pd.Series) else pd.Series(decisions, dtype=object)
    counts = series.value_counts()  # a categorical column: counted without objects
    total = len(series)
    return {d: (float(counts.get(d, 0)) / total if total else 0.0) for d in DECISIONS}


def decision_drift(window: Window, live: pd.DataFrame) -> Result:
    """PSI over the approve / review / decline rates, live against the development sample
    decided by the same model and rules."""
    expected = decision_rates(reference_answers(window)[DECISION])
    current = decision_rates(live[DECISION])
    value = psi(list(expected.values()), list(current.values())) if len(live) else None
    details = {
        "bins": list(DECISIONS),
        "reference": expected,
        "current": current,
        "rows": len(live),
    }
    return Result(
        "decision_drift",
        "psi",
        "decisions",
        value,
        drift_status(
            value,
            len(live),
            sum(1 for v in expected.values() if v > 0),
            len(reference_answers(window)),
        ),  # fmt: skip
        th.PSI_ALERT,
        window.model_tag,
        details,
    )


def daily_decisions(window: Window, live: pd.DataFrame) -> list[Result]:
    """Each decision's rate per day of the window (UTC): the decisions over time."""
    if live.empty:
        return []
    days = live[AT].dt.floor("D")
    decisions = live[DECISION].astype(pd.CategoricalDtype([*DECISIONS, *_others(live)]))
    table = decisions.groupby(days, observed=True).value_counts().unstack(fill_value=0)
    results = []
    for day, counts in table.iterrows():
        rows = int(counts.sum())
        for decision in DECISIONS:
            rate = float(counts.get(decision, 0)) / rows
            subject = f"{day:%Y-%m-%d}"
            results.append(
                Result(
                    "decision_drift",
                    f"{decision}_rate",
                    subject,
                    rate,
                    th.INFO,
                    None,
                    window.model_tag,
                    {"rows": rows},
                )
            )
    return results


def _others(live: pd.DataFrame) -> list[str]:
    """Decisions logged that are none of DECISIONS (none expected; counted all the same)."""
    found = (
        live[DECISION].cat.categories
        if isinstance(live[DECISION].dtype, pd.CategoricalDtype)
        else pd.unique(live[DECISION])
    )
    return [str(d) for d in found if d not in DECISIONS]


def whylogs_drift(window: Window, live: pd.DataFrame) -> list[Result]:
    """whylogs' KS (numbers) and chi-square (categories) p-values of the window's profile
    against the reference's, per feature and for the score: for reading, never alerting."""
    from creditflow.monitoring.profile import drift_scores, reference_view, window_view

    if live.empty:
        return []
    current = window_view(window, live)
    scores = drift_scores(current, reference_view(window))
    results = []
    for name in [*window.model.contract.names, PROBABILITY]:
        found = scores.get(name)
        if not found:
            continue
        algorithm = found.get("algorithm")
        metric = "ks_pvalue" if algorithm == "ks" else "chi2_pvalue"
        value = _float(found.get("pvalue"))
        section = "score_drift" if name == PROBABILITY else "drift"
        details = {
            "algorithm": algorithm,
            "statistic": _float(found.get("statistic")),
            "drift_category": found.get("drift_category"),
        }
        results.append(
            Result(section, metric, name, value, th.INFO, None, window.model_tag, details)
        )
    return results


def _float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"
