"""The training set: labeled loans joined point-in-time to their features through Feast."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from creditflow import clock
from creditflow.config import Settings, get_settings
from creditflow.contract import (
    APPLICATION_COLUMNS,
    APPLICATIONS,
    CREATED_TIMESTAMP,
    LABEL_COLUMN,
    LOANS,
    violations,
)
from creditflow.db import get_engine
from creditflow.feedback.labeled_applications import labeled_applications
from creditflow.ingestion.offline import read_table
from creditflow.store.features import FeatureContract, contract_of, get_store
from creditflow.store.point_in_time import historical_features

if TYPE_CHECKING:
    from feast import FeatureStore

# What identifies a labeled loan for the join: its key, the applicant's keys, its time.
ENTITY_COLUMNS = [*LOANS.key, *APPLICATIONS.key, LOANS.timestamp]
# The time split: the most recent share of labelled loans is the test window (also the
# window promotion compares models on), the share before it the validation window.
TEST_SHARE = 0.2
VALID_SHARE = 0.1
# A feedback row that repeats an ingested loan (same applicant, application and event time)
# is that loan: the loan row is kept.
SAME_APPLICATION = [*APPLICATIONS.key, *(c.name for c in APPLICATION_COLUMNS), LOANS.timestamp]
DECISIONS = ("approve", "review", "decline")


@dataclass
class TrainingSet:
    frame: pd.DataFrame  # entity columns, label and every contract feature, sorted by time
    contract: FeatureContract
    labeled_rows: int
    invalid_rows: int
    # Labeled applications from feedback: rows used, duplicates of loans left out, rows used
    # per decision band (only approved loans get outcomes: the selection is visible), rows
    # skipped (by reason) and the time the labels were read as of.
    feedback: dict = field(default_factory=dict)

    @property
    def entity_columns(self) -> list[str]:
        """The columns Feast was given (keys, event time, application fields, label)."""
        return entity_frame_columns()


def load_labeled_loans(settings: Settings, as_of: datetime | None = None) -> pd.DataFrame:
    """Every ingested loan (they passed the contract on the way in); with ``as_of``, only the
    loans known by then: ingested (``created_timestamp``) and happened (event time) by it."""
    loans = read_table(settings, LOANS)
    if as_of is not None and not loans.empty:
        as_of = clock.as_utc(as_of)
        known = (pd.to_datetime(loans[CREATED_TIMESTAMP], utc=True) <= as_of) & (
            pd.to_datetime(loans[LOANS.timestamp], utc=True) <= as_of
        )
        loans = loans[known].reset_index(drop=True)
    if loans.empty:
        when = "" if as_of is None else f" known by {as_of.isoformat()}"
        raise FileNotFoundError(
            f"no labeled loans{when} in {settings.table_dir(LOANS.name)}: run `creditflow ingest`"
        )
    return loans


def entity_frame_columns() -> list[str]:
    return ENTITY_COLUMNS + [c.name for c in APPLICATION_COLUMNS] + [LABEL_COLUMN]


def entity_frame(loans: pd.DataFrame) -> pd.DataFrame:
    """What Feast joins on: keys, event time, the application fields and the label."""
    frame = loans[entity_frame_columns()].copy()
    frame[LOANS.timestamp] = pd.to_datetime(frame[LOANS.timestamp], utc=True)
    return frame.reset_index(drop=True)


def _same_application(frame: pd.DataFrame) -> pd.MultiIndex:
    """What makes two rows the same application (times to the microsecond the log keeps)."""
    columns = frame[SAME_APPLICATION].copy()
    columns[LOANS.timestamp] = pd.to_datetime(columns[LOANS.timestamp], utc=True).dt.floor("us")
    return pd.MultiIndex.from_frame(columns)


def feedback_rows(
    settings: Settings, loans: pd.DataFrame, as_of: datetime | None = None
) -> tuple[pd.DataFrame, dict]:
    """The labeled applications of feedback (labels received by ``as_of``, default now) that
    are not already among ``loans``, in the entity frame's shape, and what was counted."""
    as_of = clock.now() if as_of is None else clock.as_utc(as_of)
    applications = labeled_applications(settings, get_engine(settings), as_of)
    duplicate = np.zeros(len(applications), dtype=bool)
    if len(applications) and len(loans):
        duplicate = _same_application(applications).isin(_same_application(loans))
    used = applications[~duplicate]
    decisions = used["decision"].value_counts()
    counts = {
        "rows": len(used),
        "duplicates_of_loans": int(duplicate.sum()),
        "by_decision": {d: int(decisions.get(d, 0)) for d in (*DECISIONS, *decisions.index)},
        "skipped": applications.attrs.get("skipped", {}),
        "as_of": as_of.isoformat(),
    }
    return used, counts


def build_training_set(
    service_name: str,
    settings: Settings | None = None,
    store: FeatureStore | None = None,
    *,
    feedback: bool = True,
    as_of: datetime | None = None,
) -> TrainingSet:
    """Labeled loans that pass the data contract, and (``feedback``) the labeled applications
    of feedback not already among them, with their point-in-time features: each feedback row
    as of its application time, so with the features the model saw. ``as_of`` (default: now)
    keeps only what was known then: loans ingested by it, labels received by it."""
    settings = settings or get_settings()
    store = store or get_store(settings)
    loans = load_labeled_loans(settings, as_of).reset_index(drop=True)
    broken = violations(loans, LOANS) != ""
    entities = entity_frame(loans[~broken])
    counts: dict = {}
    if feedback:
        rows, counts = feedback_rows(settings, loans[~broken], as_of)
        if len(rows):
            entities = pd.concat([entities, entity_frame(rows)], ignore_index=True)
    frame = historical_features(entities, service_name, settings, store)
    frame = frame.sort_values([LOANS.timestamp, *LOANS.key], kind="stable").reset_index(drop=True)
    contract = contract_of(store, service_name)
    return TrainingSet(frame, contract, labeled_rows=len(loans), invalid_rows=int(broken.sum()),
                       feedback=counts)  # fmt: skip


def time_split(
    frame: pd.DataFrame, test_share: float, valid_share: float
) -> tuple[pd.DataFrame, ...]:
    """Train / validation / test by event time (never shuffled across time)."""
    n = len(frame)
    n_test = int(round(n * test_share))
    n_valid = int(round(n * valid_share))
    ordered = frame.sort_values(LOANS.timestamp, kind="stable")
    train = ordered.iloc[: n - n_test - n_valid]
    valid = ordered.iloc[n - n_test - n_valid : n - n_test]
    test = ordered.iloc[n - n_test :]
    return train, valid, test
