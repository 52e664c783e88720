"""Which stored model is candidate, champion or retired, and every change of stage.

The artifacts and their metadata stay in the BentoML model store (``registry``); the stage is a
row of our ``model_stages`` table, so a promotion or a rollback is one transaction, and every
registration, promotion, refusal and rollback is an event with its reasons.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from creditflow import clock
from creditflow.config import MODEL_NAME, Settings, export_environment, get_settings
from creditflow.db import get_engine
from creditflow.tables import model_events, model_stages


class StageError(RuntimeError):
    """A change of stage is impossible (unknown model, nothing to roll back to)."""


def _now() -> datetime:
    return clock.now()


def log_event(
    conn, tag: str, action: str, reason: str, details: dict, forced: bool = False
) -> None:
    conn.execute(
        model_events.insert(),
        {"tag": tag, "action": action, "forced": forced, "reason": reason,
         "details": details, "at": _now()},
    )  # fmt: skip


def set_stage(conn, tag: str, stage: str) -> None:
    row = model_stages.c.tag == tag
    updated = conn.execute(model_stages.update().where(row).values(stage=stage, updated_at=_now()))
    if updated.rowcount == 0:
        conn.execute(model_stages.insert(), {"tag": tag, "stage": stage, "updated_at": _now()})


def register_candidate(tag: str, settings: Settings | None = None, details: dict | None = None):
    with get_engine(settings).begin() as conn:
        set_stage(conn, tag, "candidate")
        log_event(conn, tag, "registered", "trained", details or {})


def stages(settings: Settings | None = None) -> dict[str, str]:
    with get_engine(settings).connect() as conn:
        return dict(conn.execute(sa.select(model_stages.c.tag, model_stages.c.stage)).all())


def champion_tag(settings: Settings | None = None) -> str | None:
    champions = [tag for tag, stage in stages(settings).items() if stage == "champion"]
    return champions[0] if champions else None


# A model that scores live traffic beside the champion, its answers logged (role "shadow"), never
# returned (bento/model_watch.py). At most one; the running service follows it like the champion.
SHADOW = "shadow"
# The stage, and the prediction-log role, of the model whose answers are returned.
CHAMPION = "champion"


def serving_tags(
    settings: Settings | None = None, engine: sa.Engine | None = None
) -> tuple[str | None, str | None]:
    """(champion, shadow) tags, read in one query: what a running service should serve."""
    query = sa.select(model_stages.c.tag, model_stages.c.stage).where(
        model_stages.c.stage.in_(("champion", SHADOW))
    )
    with (engine or get_engine(settings)).connect() as conn:
        rows = dict(conn.execute(query).all())
    by_stage = {stage: tag for tag, stage in sorted(rows.items())}
    return by_stage.get("champion"), by_stage.get(SHADOW)


def shadow(tag: str | None, settings: Settings | None = None) -> dict:
    """Make ``tag`` the shadow model (the one before goes back to candidate), or none
    (``tag=None``); one transaction, logged. The champion cannot shadow itself."""
    engine = get_engine(settings)
    with engine.begin() as conn:
        known = dict(conn.execute(sa.select(model_stages.c.tag, model_stages.c.stage)).all())
        if tag is not None and tag not in known:
            raise StageError(f"unknown model {tag!r}: see `creditflow models`")
        if tag is not None and known[tag] == "champion":
            raise StageError(f"{tag} is the champion: it cannot shadow itself")
        before = [t for t, stage in known.items() if stage == SHADOW]
        for old in before:
            if old != tag:
                set_stage(conn, old, "candidate")
                log_event(conn, old, "unshadowed", f"replaced by {tag}" if tag else "off", {})
        if tag is not None and tag not in before:
            set_stage(conn, tag, SHADOW)
            log_event(conn, tag, "shadowed", "scores live traffic beside the champion",
                      {"replaced": before[0] if before else None})  # fmt: skip
    return {"shadow": tag, "before": before[0] if before else None}


def require_champion(settings: Settings | None = None) -> str:
    """The champion's tag, or an error that says how to get one (serving needs a champion)."""
    try:
        tag = champion_tag(settings)
    except sa.exc.DBAPIError as err:  # no tables: the service does not create them
        raise LookupError(
            f"cannot read the model stages ({type(err.orig).__name__}): run `creditflow db "
            "upgrade`, then `creditflow train` and `creditflow promote`"
        ) from err
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


def rollback(settings: Settings | None = None) -> dict:
    """Restore the champion that the current one replaced."""
    settings = settings or get_settings()
    current = champion_tag(settings)
    if current is None:
        raise StageError("there is no champion to roll back")
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
        raise StageError(f"{current} replaced no champion: nothing to roll back to")
    with engine.begin() as conn:
        set_stage(conn, current, "retired")
        set_stage(conn, previous, "champion")
        log_event(conn, previous, "rolled_back", f"rollback from {current}", {"from": current})
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
