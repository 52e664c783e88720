"""Champion / challenger: a candidate replaces the champion only if it is better where it counts.

Both models are scored on the same, most recent labelled window (each through its own
FeatureService, point-in-time), with their own calibration. The candidate must beat the
champion's ROC AUC by a margin and regress no guardrail: calibration (ECE) and the AUC of every
large segment. ``force`` overrides the verdict and is logged as such.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from creditflow.calibration import Calibration
from creditflow.config import (
    LABEL_COLUMN,
    MODEL_NAME,
    Settings,
    export_environment,
    get_settings,
)
from creditflow.db import get_engine, model_events, model_stages
from training import registry
from training.dataset import TEST_SHARE, entity_frame, historical_features, load_labeled_loans
from training.evaluate import metrics, segment_metrics, segments_of
from training.model import predict

# The promotion policy, declared once.
MIN_AUC_GAIN = 0.002  # the candidate's test ROC AUC must exceed the champion's by this
MAX_ECE_INCREASE = 0.01  # calibration may not get worse by more than this
MAX_SEGMENT_AUC_DROP = 0.02  # no large segment may lose more AUC than this
LARGE_SEGMENT_ROWS = 300  # segments with at least this many rows (in the window) are guarded


class PromotionError(RuntimeError):
    """Promotion or rollback is impossible (unknown model, nothing to roll back to)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _log(conn, tag: str, action: str, reason: str, details: dict, forced: bool = False) -> None:
    conn.execute(
        model_events.insert(),
        {"tag": tag, "action": action, "forced": forced, "reason": reason,
         "details": details, "at": _now()},
    )  # fmt: skip


def _set_stage(conn, tag: str, stage: str) -> None:
    row = model_stages.c.tag == tag
    updated = conn.execute(model_stages.update().where(row).values(stage=stage, updated_at=_now()))
    if updated.rowcount == 0:
        conn.execute(model_stages.insert(), {"tag": tag, "stage": stage, "updated_at": _now()})


def register_candidate(tag: str, settings: Settings | None = None, details: dict | None = None):
    with get_engine(settings).begin() as conn:
        _set_stage(conn, tag, "candidate")
        _log(conn, tag, "registered", "trained", details or {})


def stages(settings: Settings | None = None) -> dict[str, str]:
    with get_engine(settings).connect() as conn:
        return dict(conn.execute(sa.select(model_stages.c.tag, model_stages.c.stage)).all())


def champion_tag(settings: Settings | None = None) -> str | None:
    champions = [tag for tag, stage in stages(settings).items() if stage == "champion"]
    return champions[0] if champions else None


def require_champion(settings: Settings | None = None) -> str:
    """The champion's tag, or an error that says how to get one (serving needs a champion)."""
    tag = champion_tag(settings)
    if tag is None:
        raise LookupError(
            f"no champion {MODEL_NAME} model: run `creditflow train` then `creditflow promote`"
        )
    return tag


def latest_candidate(settings: Settings | None = None) -> str | None:
    export_environment(settings)
    import bentoml

    known = stages(settings)
    try:
        stored = bentoml.models.list(MODEL_NAME)
    except bentoml.exceptions.NotFound:
        return None
    models = sorted(stored, key=lambda m: m.info.creation_time)
    candidates = [str(m.tag) for m in models if known.get(str(m.tag)) == "candidate"]
    return candidates[-1] if candidates else None


def recent_window(settings: Settings) -> tuple:
    """Entity rows of the most recent labelled loans (the comparison window)."""
    loans = load_labeled_loans(settings).sort_values(["event_timestamp", "loan_id"])
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
                _set_stage(conn, current, "retired")
            _set_stage(conn, tag, "champion")
            why = (
                "forced despite: " + "; ".join(reasons)
                if reasons
                else ("first champion" if current is None else "beats the champion")
            )
            _log(conn, tag, "promoted", why, {**details, "replaced": current}, forced=force)
        else:
            _log(conn, tag, "refused", "; ".join(reasons), details)
    summary["champion"] = tag if summary["promoted"] else current
    return summary


def rollback(settings: Settings | None = None) -> dict:
    """Restore the champion that the current one replaced."""
    settings = settings or get_settings()
    current = champion_tag(settings)
    if current is None:
        raise PromotionError("there is no champion to roll back")
    query = (
        sa.select(model_events.c.details)
        .where(model_events.c.tag == current, model_events.c.action == "promoted")
        .order_by(model_events.c.id.desc())
        .limit(1)
    )
    engine = get_engine(settings)
    with engine.connect() as conn:
        details = conn.scalar(query) or {}
    previous = details.get("replaced")
    if previous is None:
        raise PromotionError(f"{current} replaced no champion: nothing to roll back to")
    with engine.begin() as conn:
        _set_stage(conn, current, "retired")
        _set_stage(conn, previous, "champion")
        _log(conn, previous, "rolled_back", f"rollback from {current}", {"from": current})
    return {"champion": previous, "retired": current}


def events(settings: Settings | None = None, limit: int = 50) -> list[dict]:
    query = sa.select(model_events).order_by(model_events.c.id.desc()).limit(limit)
    with get_engine(settings).connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def list_models(settings: Settings | None = None) -> list[dict]:
    """Every stored model with its stage and key metrics, newest first."""
    export_environment(settings)
    import bentoml

    known = stages(settings)
    rows = []
    try:
        stored = bentoml.models.list(MODEL_NAME)
    except bentoml.exceptions.NotFound:
        return []
    for model in stored:
        meta = model.info.metadata
        test = meta.get("metrics", {}).get("test", {})
        rows.append({
            "tag": str(model.tag),
            "stage": known.get(str(model.tag), "unregistered"),
            "created": model.info.creation_time.isoformat(timespec="seconds"),
            "feature_service": meta.get("feature_service"),
            "test_auc": test.get("roc_auc"),
            "test_brier": test.get("brier"),
            "test_ece": test.get("ece"),
            "rows": meta.get("rows", {}).get("train"),
        })  # fmt: skip
    rows.sort(key=lambda r: r["created"], reverse=True)
    return rows
