"""The development sample that monitoring compares live traffic with (``REFERENCE_FILE``).

It stands for the population the model will score. Ingested loans are that population. Outcomes
of logged predictions exist only for the applications that were approved (declined applicants
never show whether they would have repaid), so when those make most of the training rows, as
in a recent training window, the training rows are a selected sample: drift checks against
them would alarm on the very applicants the old model declined. The sample is then what the
service scored over the same period instead: every answer it returned, approved or not, with
the features it was answered with: the newest answers of the training rows' period, as many
as there are training rows (the recent end of the period, as recency-weighted training is;
and not an earlier stretch that lacks outcomes because everything was declined, as during an
upstream incident).
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from creditflow.config import Settings
from creditflow.contract import LOANS
from creditflow.db import get_engine
from creditflow.feedback.labeled_applications import is_feedback
from creditflow.model.stages import SHADOW
from creditflow.store.features import FeatureContract
from creditflow.tables import predictions

# Training rows that are labelled predictions (feedback) above this share: the sample is the
# scored population of their period.
FEEDBACK_MAJORITY = 0.5


def scored_population(settings: Settings, contract: FeatureContract, start, end,
                      limit: int) -> pd.DataFrame:  # fmt: skip
    """The contract features of the newest ``limit`` answers the service returned in
    [start, end] (a shadow model's are only logged); empty if the log lacks a feature."""
    returned = sa.or_(predictions.c.role.is_(None), predictions.c.role != SHADOW)
    query = (
        sa.select(predictions.c.features)
        .where(predictions.c.at >= start, predictions.c.at <= end, returned)
        .order_by(predictions.c.at.desc())
        .limit(limit)
    )
    with get_engine(settings).connect() as conn:
        logged = pd.DataFrame.from_records([row[0] for row in conn.execute(query)])
    if logged.empty or not set(contract.names) <= set(logged.columns):
        return pd.DataFrame(columns=list(contract.names))
    return logged[list(contract.names)].copy()


def development_sample(settings: Settings, train: pd.DataFrame,
                       contract: FeatureContract) -> tuple[pd.DataFrame, dict]:  # fmt: skip
    """The reference frame for ``train`` (the training split) and where it comes from."""
    own = train[list(contract.names)]
    share = float(is_feedback(train).mean()) if len(train) else 0.0
    described = {"source": "training rows", "rows": len(own), "feedback_share": round(share, 4)}
    if share <= FEEDBACK_MAJORITY:
        return own, described
    times = pd.to_datetime(train[LOANS.timestamp], utc=True)
    scored = scored_population(settings, contract, times.min(), times.max(), limit=len(own))
    if len(scored) < len(own):
        described["why_not_scored"] = f"{len(scored)} answers logged over the training rows' period"
        return own, described
    for name in contract.names:  # the training rows' types where the values allow them
        column = scored[name]
        if name in contract.categorical:
            scored[name] = column.astype(object).where(column.notna(), None)
        else:
            numbers = pd.to_numeric(column, errors="coerce")
            kind = own[name].dtype
            fits = numbers.notna().all() or not pd.api.types.is_integer_dtype(kind)
            scored[name] = numbers.astype(kind) if fits else numbers.astype("float64")
    described.update(source="answers logged over the training rows' period", rows=len(scored),
                     period=[str(times.min()), str(times.max())])  # fmt: skip
    return scored.reset_index(drop=True), described
