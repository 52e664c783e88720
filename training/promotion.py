"""Champion / challenger: a candidate replaces the champion only if it is better beyond noise.

Both models are scored on the same labelled window (each through its own FeatureService,
point-in-time, with its own calibration). The gate (``decide``):

- superiority: the ROC AUC difference (challenger - champion) reaches the margin AND the lower
  bound of its paired bootstrap interval (declared resamples, fixed seed, 95%) is above 0;
- or, when the policy allows it, non-inferiority that fixes something: the lower bound is above
  ``-ni_margin`` and the champion fails an absolute guardrail (calibration ECE above
  ``max_ece``) that the challenger passes;
- and always the relative guardrails: calibration (ECE) may not get worse by more than
  ``max_ece_increase``, no large segment may lose more than ``max_segment_drop`` AUC;
- and, when the candidate scored live traffic in shadow and at least ``min_shadow_rows`` of
  those requests have outcomes (``training/shadow_evidence.py``), what it saw there: on those
  requests it must be non-inferior to the champion's own answers (the interval's lower bound
  above ``-ni_margin``) and break no guardrail. The live window is smaller than the offline one,
  so it vetoes a regression rather than having to show superiority again.

The decision, its reasons and the interval go to ``model_events`` (and, for `creditflow
retrain`, to its run row). ``force`` overrides the verdict and is logged as such.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from creditflow.config import Settings, get_settings
from creditflow.contract import LABEL_COLUMN, LOANS
from creditflow.db import get_engine
from creditflow.model import registry
from creditflow.model.evaluate import metrics, segment_metrics, segments_of
from creditflow.model.stages import champion_tag, latest_candidate, log_event, set_stage
from creditflow.postprocessing.calibration import Calibration
from creditflow.store.point_in_time import historical_features
from creditflow.training.dataset import (
    TEST_SHARE,
    entity_frame,
    load_labeled_loans,
    recent_rows,
)
from creditflow.training.model import predict
from creditflow.training.shadow_evidence import scored, shadow_window

# The promotion policy, declared once (GatePolicy's defaults).
MIN_AUC_GAIN = 0.002  # the candidate's ROC AUC must exceed the champion's by this (the margin)
BOOTSTRAP_RESAMPLES = 1000  # paired bootstrap resamples of the comparison window
BOOTSTRAP_SEED = 0  # fixed: the same window gives the same interval
CONFIDENCE = 0.95  # the interval's coverage
NON_INFERIORITY_MARGIN = 0.005  # a fixing challenger may be worse by at most this (lower bound)
MAX_ECE = 0.05  # a champion above this ECE fails calibration: a non-inferior fix may replace it
MAX_ECE_INCREASE = 0.01  # calibration may not get worse by more than this
MAX_SEGMENT_AUC_DROP = 0.02  # no large segment may lose more AUC than this
LARGE_SEGMENT_ROWS = 300  # segments with at least this many rows (in the window) are guarded
MIN_SHADOW_ROWS = 500  # labelled requests a shadow must have answered for the gate to use them
_BOOTSTRAP_CHUNK = 250  # resamples computed at once (bounds memory: chunk x rows floats)


class PromotionError(RuntimeError):
    """Promotion or rollback is impossible (unknown model, nothing to roll back to)."""


@dataclass(frozen=True)
class GatePolicy:
    """What a challenger must show to replace the champion."""

    min_gain: float = MIN_AUC_GAIN
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = BOOTSTRAP_SEED
    confidence: float = CONFIDENCE
    non_inferior_fix: bool = True  # allow "non-inferior and fixes a failed guardrail"
    ni_margin: float = NON_INFERIORITY_MARGIN
    max_ece: float = MAX_ECE
    max_ece_increase: float = MAX_ECE_INCREASE
    max_segment_drop: float = MAX_SEGMENT_AUC_DROP
    large_segment_rows: int = LARGE_SEGMENT_ROWS
    use_shadow: bool = True  # judge what the candidate saw in shadow, when there is enough
    min_shadow_rows: int = MIN_SHADOW_ROWS

    def __post_init__(self) -> None:
        if self.resamples < 100:
            raise ValueError(f"resamples={self.resamples}: at least 100 for a 95% interval")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence={self.confidence}: between 0.5 and 1")


def _weighted_aucs(order: np.ndarray, starts: np.ndarray, labels: np.ndarray,
                   weights: np.ndarray) -> np.ndarray:  # fmt: skip
    """ROC AUC of one score under each row of ``weights`` (resample multiplicities), ties
    counted half: rows sorted by score once, then per tie group the weighted positives times
    the weighted negatives strictly below (vectorized over resamples)."""
    w = weights[:, order]
    y = labels[order]
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * (1 - y), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / pairs


def _sorted_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    return order, starts


def paired_bootstrap(
    labels: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> dict:
    """The ROC AUC difference (challenger - champion) on a window and its percentile interval
    from a paired bootstrap: each resample draws the same rows for both models."""
    y = np.asarray(labels, dtype=np.float64)
    a, b = np.asarray(challenger, dtype=np.float64), np.asarray(champion, dtype=np.float64)
    if not (len(y) == len(a) == len(b)):
        raise ValueError(f"lengths differ: labels {len(y)}, challenger {len(a)}, champion {len(b)}")
    if len(y) == 0 or y.min() == y.max():
        raise ValueError("the comparison window needs both outcomes (defaults and repayments)")
    groups_a, groups_b = _sorted_groups(a), _sorted_groups(b)
    full = np.ones((1, len(y)))
    auc_a, auc_b = _weighted_aucs(*groups_a, y, full)[0], _weighted_aucs(*groups_b, y, full)[0]
    difference = float(auc_a - auc_b)
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, resamples, _BOOTSTRAP_CHUNK):
        size = min(_BOOTSTRAP_CHUNK, resamples - start)
        drawn = rng.integers(0, len(y), (size, len(y))) + np.arange(size)[:, None] * len(y)
        weights = np.bincount(drawn.ravel(), minlength=size * len(y)).reshape(size, len(y))
        diffs.append(_weighted_aucs(*groups_a, y, weights) - _weighted_aucs(*groups_b, y, weights))
    diffs = np.concatenate(diffs)
    diffs = diffs[np.isfinite(diffs)]  # a resample with one class only has no AUC
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return {
        "difference": round(difference, 6),
        "low": round(float(low), 6),
        "high": round(float(high), 6),
        "confidence": confidence,
        "resamples": resamples,
        "valid_resamples": int(len(diffs)),
        "seed": seed,
        "rows": int(len(y)),
    }


def guardrail_reasons(candidate: dict, champion: dict, policy: GatePolicy) -> list[str]:
    """The relative guardrails the candidate breaks: calibration and large segments."""
    reasons = []
    cand, champ = candidate["metrics"], champion["metrics"]
    if cand["ece"] > champ["ece"] + policy.max_ece_increase:
        reasons.append(
            f"calibration regresses: ECE {cand['ece']:.4f} vs the champion's {champ['ece']:.4f} "
            f"(at most +{policy.max_ece_increase})"
        )
    for column, values in candidate["segments"].items():
        for value, seg in values.items():
            other = champion["segments"].get(column, {}).get(value)
            if not (seg.get("large") and other and other.get("large")):
                continue
            if seg["roc_auc"] is None or other["roc_auc"] is None:
                continue
            if seg["roc_auc"] < other["roc_auc"] - policy.max_segment_drop:
                reasons.append(
                    f"segment {column}={value} ({seg['rows']} loans) loses AUC: "
                    f"{seg['roc_auc']:.4f} vs {other['roc_auc']:.4f}"
                )
    return reasons


def decide(
    candidate: dict, champion: dict, labels: np.ndarray, policy: GatePolicy | None = None
) -> dict:
    """The gate's decision on one window: ``promote``, the ``rule`` that allowed it
    (superior, non_inferior_fix) or None, the ``reasons`` against it, the bootstrap
    ``interval`` and the ``policy``. ``candidate``/``champion``: ``evaluate_on``'s results on
    the same rows in the same order (``labels``)."""
    policy = policy or GatePolicy()
    interval = paired_bootstrap(labels, candidate["probabilities"], champion["probabilities"],
                                policy.resamples, policy.seed, policy.confidence)  # fmt: skip
    cand, champ = candidate["metrics"], champion["metrics"]
    gain, low, high = interval["difference"], interval["low"], interval["high"]
    shown = f"{gain:+.4f}, {policy.confidence:.0%} interval [{low:+.4f}, {high:+.4f}]"
    superiority = []
    if gain < policy.min_gain:
        superiority.append(
            f"ROC AUC {cand['roc_auc']:.4f} does not beat the champion's {champ['roc_auc']:.4f} "
            f"by the margin {policy.min_gain} ({shown})"
        )
    if low <= 0:
        superiority.append(f"the ROC AUC gain is not significant: its interval reaches 0 ({shown})")
    champion_fails = champ["ece"] > policy.max_ece
    fixes = champion_fails and cand["ece"] <= policy.max_ece
    non_inferior = low > -policy.ni_margin
    guardrails = guardrail_reasons(candidate, champion, policy)
    if not superiority:
        rule = "superior"
        reasons = guardrails
    elif policy.non_inferior_fix and fixes and non_inferior:
        rule = "non_inferior_fix"
        reasons = guardrails
    else:
        rule = None
        reasons = superiority + guardrails
        if policy.non_inferior_fix and fixes and not non_inferior:
            reasons.append(
                f"it fixes the champion's calibration (ECE {champ['ece']:.4f} > {policy.max_ece})"
                f" but is inferior: the interval's lower bound {low:+.4f} is below "
                f"-{policy.ni_margin}"
            )
    promote = not reasons
    return {
        "promote": promote,
        "rule": rule if promote else None,
        "reasons": reasons,
        "interval": interval,
        "champion_fails_calibration": bool(champion_fails),
        "policy": asdict(policy),
    }


def verdict(candidate: dict, champion: dict, labels: np.ndarray,
            policy: GatePolicy | None = None) -> list[str]:  # fmt: skip
    """Reasons the candidate must not replace the champion (empty: it may)."""
    return decide(candidate, champion, labels, policy)["reasons"]


def recent_window(settings: Settings) -> pd.DataFrame:
    """Entity rows of the most recent labelled loans (the comparison window of `promote`): the
    last TEST_SHARE of those in the settings' training window, as training splits them."""
    loans, _ = recent_rows(load_labeled_loans(settings), settings.training_window_days)
    loans = loans.sort_values([LOANS.timestamp, *LOANS.key])
    recent = loans.iloc[int(len(loans) * (1 - TEST_SHARE)) :]
    return entity_frame(recent)


def evaluate_on(tag: str, entities: pd.DataFrame, settings: Settings,
                large_segment_rows: int = LARGE_SEGMENT_ROWS) -> dict:  # fmt: skip
    """A stored model's calibrated scores, labels and metrics on a window (rows in the
    entities' order), via its own features."""
    model = registry.load(tag, nthread=None)
    frame = historical_features(entities, model.contract.service, settings)
    calibration = Calibration.from_metadata(model.metadata.get("calibration"))
    probabilities = calibration.apply(predict(model.booster, frame, model.contract))
    labels = frame[LABEL_COLUMN].to_numpy()
    return {
        "probabilities": probabilities,
        "labels": labels,
        "metrics": metrics(labels, probabilities),
        "segments": segment_metrics(labels, probabilities, segments_of(frame), large_segment_rows),
    }


def live_evidence(tag: str, current: str, settings: Settings, policy: GatePolicy) -> dict:
    """The gate on the requests ``tag`` answered in shadow beside ``current`` and that have an
    outcome (as of the clock's now): ``used`` false, and why, when there are too few."""
    frame = shadow_window(get_engine(settings), tag, current)
    rows = len(frame)
    if rows < policy.min_shadow_rows or frame["outcome"].nunique() < 2:
        why = (f"{rows} labelled requests answered in shadow: fewer than {policy.min_shadow_rows} "
               "with both outcomes")  # fmt: skip
        return {"used": False, "rows": rows, "why": why, "reasons": []}
    cand = scored(frame, "candidate", policy.large_segment_rows)
    champ = scored(frame, "champion", policy.large_segment_rows)
    interval = paired_bootstrap(cand["labels"], cand["probabilities"], champ["probabilities"],
                                policy.resamples, policy.seed, policy.confidence)  # fmt: skip
    where = f"on live traffic in shadow ({rows} labelled requests)"
    reasons = []
    if interval["low"] <= -policy.ni_margin:
        reasons.append(
            f"{where} it is worse than the champion's answers: ROC AUC "
            f"{cand['metrics']['roc_auc']:.4f} vs {champ['metrics']['roc_auc']:.4f}, difference "
            f"{interval['difference']:+.4f}, {policy.confidence:.0%} interval "
            f"[{interval['low']:+.4f}, {interval['high']:+.4f}] reaches below -{policy.ni_margin}"
        )
    reasons += [f"{where}: {reason}" for reason in guardrail_reasons(cand, champ, policy)]
    return {
        "used": True,
        "rows": rows,
        "window": [str(frame["at"].min()), str(frame["at"].max())],
        "interval": interval,
        "candidate": cand["metrics"],
        "champion": champ["metrics"],
        "reasons": reasons,
    }


def compare(tag: str, current: str, entities: pd.DataFrame, settings: Settings,
            policy: GatePolicy | None = None) -> dict:  # fmt: skip
    """Both models on one window and the gate's decision on it (with what the candidate saw in
    shadow, if the policy uses it)."""
    policy = policy or GatePolicy()
    cand = evaluate_on(tag, entities, settings, policy.large_segment_rows)
    champ = evaluate_on(current, entities, settings, policy.large_segment_rows)
    decision = decide(cand, champ, cand["labels"], policy)
    if policy.use_shadow:
        live = live_evidence(tag, current, settings, policy)
        decision["shadow"] = live
        if live["reasons"]:
            decision["reasons"] = decision["reasons"] + live["reasons"]
            decision["promote"], decision["rule"] = False, None
    times = pd.to_datetime(entities[LOANS.timestamp], utc=True)
    return {
        "window": [str(times.min()), str(times.max())],
        "rows": len(entities),
        "candidate": cand["metrics"],
        "champion": champ["metrics"],
        "decision": decision,
    }


def record_decision(settings: Settings, tag: str, current: str | None, promoted: bool,
                    reasons: list[str], details: dict, force: bool = False) -> None:  # fmt: skip
    """The stage change (one transaction: the champion is never half-replaced) and its event."""
    with get_engine(settings).begin() as conn:
        if promoted:
            if current is not None:
                set_stage(conn, current, "retired")
            set_stage(conn, tag, "champion")
            why = (
                "forced despite: " + "; ".join(reasons)
                if reasons
                else ("first champion" if current is None else "beats the champion")
            )
            log_event(conn, tag, "promoted", why, {**details, "replaced": current}, forced=force)
        else:
            log_event(conn, tag, "refused", "; ".join(reasons), details)


def promote(
    tag: str | None = None,
    force: bool = False,
    min_gain: float = MIN_AUC_GAIN,
    settings: Settings | None = None,
    policy: GatePolicy | None = None,
) -> dict:
    """Promote a candidate (default: the newest) if the gate lets it replace the champion on
    the most recent labelled loans; returns a summary (``interval``: the bootstrap's)."""
    settings = settings or get_settings()
    policy = policy or GatePolicy(min_gain=min_gain)
    tag = tag or latest_candidate(settings)
    if tag is None:
        raise PromotionError("no candidate to promote: run `creditflow train` first")
    registry.load(tag)  # fails clearly if the model is not in the store
    current = champion_tag(settings)
    if current == tag:
        raise PromotionError(f"{tag} is already the champion")
    summary: dict = {"candidate": tag, "champion_before": current, "forced": force}
    reasons: list[str] = []
    if current is not None:
        compared = compare(tag, current, recent_window(settings), settings, policy)
        decision = compared["decision"]
        summary["window"] = compared["window"]
        summary["comparison"] = {
            "candidate": compared["candidate"], "champion": compared["champion"],
            "min_auc_gain": policy.min_gain,
        }  # fmt: skip
        summary["interval"] = decision["interval"]
        summary["rule"] = decision["rule"]
        if "shadow" in decision:
            summary["shadow"] = decision["shadow"]
        reasons = decision["reasons"]
    summary["reasons"] = reasons
    summary["promoted"] = not reasons or force
    details = {k: v for k, v in summary.items() if k != "promoted"}
    record_decision(settings, tag, current, summary["promoted"], reasons, details, force)
    summary["champion"] = tag if summary["promoted"] else current
    return summary
