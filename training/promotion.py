"""Champion / challenger: a candidate replaces the champion only if it is better where it counts.

Both models are scored on the same, most recent labelled window (each through its own
FeatureService, point-in-time), with their own calibration. The candidate must beat the
champion's ROC AUC by a margin and regress no guardrail: calibration (ECE) and the AUC of every
large segment. ``force`` overrides the verdict and is logged as such.
"""

from __future__ import annotations

from creditflow.config import Settings, get_settings
from creditflow.contract import LABEL_COLUMN, LOANS
from creditflow.db import get_engine
from creditflow.model import registry
from creditflow.model.evaluate import metrics, segment_metrics, segments_of
from creditflow.model.stages import champion_tag, latest_candidate, log_event, set_stage
from creditflow.postprocessing.calibration import Calibration
from creditflow.store.point_in_time import historical_features
from creditflow.training.dataset import TEST_SHARE, entity_frame, load_labeled_loans
from creditflow.training.model import predict

# The promotion policy, declared once.
MIN_AUC_GAIN = 0.002  # the candidate's test ROC AUC must exceed the champion's by this
MAX_ECE_INCREASE = 0.01  # calibration may not get worse by more than this
MAX_SEGMENT_AUC_DROP = 0.02  # no large segment may lose more AUC than this
LARGE_SEGMENT_ROWS = 300  # segments with at least this many rows (in the window) are guarded


class PromotionError(RuntimeError):
    """Promotion or rollback is impossible (unknown model, nothing to roll back to)."""


def recent_window(settings: Settings) -> tuple:
    """Entity rows of the most recent labelled loans (the comparison window)."""
    loans = load_labeled_loans(settings).sort_values([LOANS.timestamp, *LOANS.key])
    recent = loans.iloc[int(len(loans) * (1 - TEST_SHARE)) :]
    return entity_frame(recent)


def evaluate_on(tag: str, entities, settings: Settings) -> dict:
    """A stored model's calibrated scores and metrics on a window, via its own features."""
    model = registry.load(tag, nthread=None)
    frame = historical_features(entities, model.contract.service, settings)
    calibration = Calibration.from_metadata(model.metadata.get("calibration"))
    probabilities = calibration.apply(predict(model.booster, frame, model.contract))
    labels = frame[LABEL_COLUMN].to_numpy()
    return {
        "probabilities": probabilities,
        "metrics": metrics(labels, probabilities),
        "segments": segment_metrics(labels, probabilities, segments_of(frame), LARGE_SEGMENT_ROWS),
    }


def verdict(candidate: dict, champion: dict, min_gain: float = MIN_AUC_GAIN) -> list[str]:
    """Reasons the candidate must not replace the champion (empty: it may)."""
    reasons = []
    cand, champ = candidate["metrics"], champion["metrics"]
    if cand["roc_auc"] < champ["roc_auc"] + min_gain:
        reasons.append(
            f"ROC AUC {cand['roc_auc']:.4f} does not beat the champion's {champ['roc_auc']:.4f} "
            f"by {min_gain}"
        )
    if cand["ece"] > champ["ece"] + MAX_ECE_INCREASE:
        reasons.append(
            f"calibration regresses: ECE {cand['ece']:.4f} vs the champion's {champ['ece']:.4f}"
        )
    for column, values in candidate["segments"].items():
        for value, seg in values.items():
            other = champion["segments"].get(column, {}).get(value)
            if not (seg.get("large") and other and other.get("large")):
                continue
            if seg["roc_auc"] is None or other["roc_auc"] is None:
                continue
            if seg["roc_auc"] < other["roc_auc"] - MAX_SEGMENT_AUC_DROP:
                reasons.append(
                    f"segment {column}={value} ({seg['rows']} loans) loses AUC: "
                    f"{seg['roc_auc']:.4f} vs {other['roc_auc']:.4f}"
                )
    return reasons


def promote(
    tag: str | None = None,
    force: bool = False,
    min_gain: float = MIN_AUC_GAIN,
    settings: Settings | None = None,
) -> dict:
    """Promote a candidate (default: the newest) if it beats the champion; returns a summary."""
    settings = settings or get_settings()
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
        window = recent_window(settings)
        summary["window"] = [str(window["event_timestamp"].min()),
                             str(window["event_timestamp"].max())]  # fmt: skip
        cand, champ = evaluate_on(tag, window, settings), evaluate_on(current, window, settings)
        summary["comparison"] = {
            "candidate": cand["metrics"], "champion": champ["metrics"], "min_auc_gain": min_gain,
        }  # fmt: skip
        reasons = verdict(cand, champ, min_gain)
    summary["reasons"] = reasons
    summary["promoted"] = not reasons or force
    details = {k: v for k, v in summary.items() if k != "promoted"}
    with get_engine(settings).begin() as conn:
        if summary["promoted"]:
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
    summary["champion"] = tag if summary["promoted"] else current
    return summary
