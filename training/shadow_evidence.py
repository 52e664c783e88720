"""What a shadow model saw: its logged answers beside the champion's on the same live requests,
with the outcomes reported since, as paired evidence for the gate (``training/promotion.py``).

Offline, both models are scored on rebuilt point-in-time features; in shadow, the candidate
answered real requests through the online path the service runs (bento/shadow.py logs its
answers with role "shadow" and the champion answer's id as ``request_id``). Labels are reported
on the champion's answer, so each labelled request gives one outcome for both answers.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from creditflow import clock
from creditflow.feedback.labels import newest_labels_query
from creditflow.model.evaluate import metrics, segment_metrics, segments_of
from creditflow.model.stages import CHAMPION, SHADOW
from creditflow.tables import predictions

COLUMNS = ["request_id", "at", "outcome", "candidate", "champion", "application"]


def shadow_window(
    engine: sa.Engine, candidate: str, champion: str, as_of: datetime | None = None
) -> pd.DataFrame:
    """Requests the champion answered and ``candidate`` scored in shadow, made and labelled by
    ``as_of`` (default now), oldest first: the outcome (the label that counts), both models'
    calibrated probabilities and the application as received."""
    as_of = clock.as_utc(as_of) if as_of is not None else clock.now()
    served = predictions.alias("served")
    shadow = predictions.alias("shadow")
    label = newest_labels_query(as_of).subquery()
    query = (
        sa.select(
            served.c.prediction_id.label("request_id"),
            served.c.at,
            label.c.outcome,
            shadow.c.default_probability.label("candidate"),
            served.c.default_probability.label("champion"),
            served.c.application,
        )
        .join(shadow, shadow.c.request_id == served.c.prediction_id)
        .join(label, label.c.prediction_id == served.c.prediction_id)
        .where(
            served.c.model_tag == champion,
            sa.or_(served.c.role == CHAMPION, served.c.role.is_(None)),
            shadow.c.model_tag == candidate,
            shadow.c.role == SHADOW,
            served.c.at <= as_of,
        )
        .order_by(served.c.at, served.c.prediction_id)
    )
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=COLUMNS)
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


def scored(frame: pd.DataFrame, column: str, large_segment_rows: int) -> dict:
    """One model's answers on the window in the shape ``promotion.decide`` takes."""
    labels = frame["outcome"].to_numpy(dtype=np.int64)
    probabilities = frame[column].to_numpy(dtype=np.float64)
    applications = pd.DataFrame(list(frame["application"]), index=frame.index)
    return {
        "probabilities": probabilities,
        "labels": labels,
        "metrics": metrics(labels, probabilities),
        "segments": segment_metrics(
            labels, probabilities, segments_of(applications), large_segment_rows
        ),
    }
