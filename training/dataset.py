"""The training set: labeled loans joined point-in-time to their features through Feast."""

from __future__ import annotations

import math
from collections.abc import Sequence
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
# What a test window needs at least: it is also the window `creditflow retrain` compares
# champion and challenger on (retraining.job.MIN_COMPARISON_ROWS).
MIN_TEST_ROWS = 500
# A training window (settings.training_window_days) holding fewer labelled rows than this is
# widened to the newest this many, so that its test window holds MIN_TEST_ROWS.
MIN_WINDOW_ROWS = math.ceil(MIN_TEST_ROWS / TEST_SHARE)
# Recency weights (settings.training_half_life_days) travel with the rows in this column, so
# that every fit, early stop, tuning trial and calibration on any split of them sees them.
WEIGHT_COLUMN = "sample_weight"
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
    # The training window and recency weights applied (``recent_rows``, ``recency_weights``).
    recency: dict = field(default_factory=dict)

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


def in_windows(times: pd.Series, windows: Sequence[tuple[datetime, datetime]]) -> np.ndarray:
    """Whether each time falls in one of the ``(start, end]`` windows."""
    times = pd.to_datetime(times, utc=True)
    inside = np.zeros(len(times), dtype=bool)
    for start, end in windows:
        inside |= ((times > pd.Timestamp(start)) & (times <= pd.Timestamp(end))).to_numpy()
    return inside


def feedback_rows(
    settings: Settings,
    loans: pd.DataFrame,
    as_of: datetime | None = None,
    excluded: Sequence[tuple[datetime, datetime]] = (),
) -> tuple[pd.DataFrame, dict]:
    """The labeled applications of feedback (labels received by ``as_of``, default now) that
    are not already among ``loans``, in the entity frame's shape, and what was counted.
    Applications made in an ``excluded`` window ``(start, end]`` are left out (retraining
    passes the windows monitoring flagged as broken data)."""
    as_of = clock.now() if as_of is None else clock.as_utc(as_of)
    applications = labeled_applications(settings, get_engine(settings), as_of)
    duplicate = np.zeros(len(applications), dtype=bool)
    if len(applications) and len(loans):
        duplicate = _same_application(applications).isin(_same_application(loans))
    flagged = in_windows(applications[LOANS.timestamp], excluded) & ~duplicate
    used = applications[~duplicate & ~flagged]
    decisions = used["decision"].value_counts()
    counts = {
        "rows": len(used),
        "duplicates_of_loans": int(duplicate.sum()),
        "in_flagged_windows": int(flagged.sum()),
        "by_decision": {d: int(decisions.get(d, 0)) for d in (*DECISIONS, *decisions.index)},
        "skipped": applications.attrs.get("skipped", {}),
        "as_of": as_of.isoformat(),
    }
    return used, counts


def recent_rows(entities: pd.DataFrame, window_days: float | None) -> tuple[pd.DataFrame, dict]:
    """The labelled rows of the last ``window_days`` before the newest one (None: all of them),
    or the newest ``MIN_WINDOW_ROWS`` if the window holds fewer; and what was kept (no None
    values: the registry's metadata holds none)."""
    described: dict = {"rows_offered": len(entities)}
    if window_days is not None:
        described["window_days"] = window_days
    if entities.empty:
        return entities, {**described, "rows_kept": 0, "widened": False}
    times = pd.to_datetime(entities[LOANS.timestamp], utc=True)
    newest = times.max()
    if window_days is None:
        described.update(rows_kept=len(entities), widened=False, start=str(times.min()))
        return entities, {**described, "newest": str(newest)}
    keep = (times > newest - pd.Timedelta(days=window_days)).to_numpy()
    widened = bool(keep.sum() < min(MIN_WINDOW_ROWS, len(entities)))
    if widened:
        order = np.argsort(times.to_numpy(), kind="stable")
        keep = np.zeros(len(entities), dtype=bool)
        keep[order[-MIN_WINDOW_ROWS:]] = True
    kept = entities[keep]
    first = pd.to_datetime(kept[LOANS.timestamp], utc=True).min()
    described.update(rows_kept=len(kept), widened=widened, start=str(first), newest=str(newest))
    return kept, described


def recency_weights(times: pd.Series, half_life_days: float) -> np.ndarray:
    """Each row's weight, halved for every ``half_life_days`` of its age: the newest row's
    event time minus its own (the newest rows weigh 1)."""
    if not half_life_days > 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days}")
    times = pd.to_datetime(times, utc=True)
    age_days = (times.max() - times).dt.total_seconds().to_numpy() / 86_400.0
    return np.exp2(-age_days / half_life_days)


def sample_weights(frame: pd.DataFrame) -> np.ndarray | None:
    """The rows' recency weights scaled to mean 1 (None: unweighted), as XGBoost, tuning and
    calibration take them: the scale keeps XGBoost's regularisation (in hessian units, such as
    ``min_child_weight``) what it is unweighted, whichever split the rows are."""
    if WEIGHT_COLUMN not in frame.columns or frame.empty:
        return None
    weights = frame[WEIGHT_COLUMN].to_numpy(dtype=np.float64)
    return weights / weights.mean()


def build_training_set(
    service_name: str,
    settings: Settings | None = None,
    store: FeatureStore | None = None,
    *,
    feedback: bool = True,
    as_of: datetime | None = None,
    excluded: Sequence[tuple[datetime, datetime]] = (),
) -> TrainingSet:
    """Labeled loans that pass the data contract, and (``feedback``) the labeled applications
    of feedback not already among them, with their point-in-time features: each feedback row
    as of its application time, so with the features the model saw. ``as_of`` (default: now)
    keeps only what was known then: loans ingested by it, labels received by it. The
    settings' training window keeps the recent rows only (``recent_rows``) and their half-life
    weighs them (``recency_weights``, in ``WEIGHT_COLUMN``). Feedback rows of applications made
    in an ``excluded`` window are left out (see :func:`feedback_rows`)."""
    settings = settings or get_settings()
    store = store or get_store(settings)
    loans = load_labeled_loans(settings, as_of).reset_index(drop=True)
    broken = violations(loans, LOANS) != ""
    entities = entity_frame(loans[~broken])
    counts: dict = {}
    if feedback:
        rows, counts = feedback_rows(settings, loans[~broken], as_of, excluded)
        if len(rows):
            entities = pd.concat([entities, entity_frame(rows)], ignore_index=True)
    entities, recency = recent_rows(entities, settings.training_window_days)
    frame = historical_features(entities, service_name, settings, store)
    frame = frame.sort_values([LOANS.timestamp, *LOANS.key], kind="stable").reset_index(drop=True)
    half_life = settings.training_half_life_days
    if half_life is not None and len(frame):
        recency["half_life_days"] = half_life
        weights = recency_weights(frame[LOANS.timestamp], half_life)
        frame[WEIGHT_COLUMN] = weights
        # Kish's effective sample size: how many equally weighted rows they are worth.
        recency["effective_rows"] = round(float(weights.sum() ** 2 / (weights**2).sum()), 1)
        recency["min_weight"] = float(weights.min())
    contract = contract_of(store, service_name)
    return TrainingSet(frame, contract, labeled_rows=len(loans), invalid_rows=int(broken.sum()),
                       feedback=counts, recency=recency)  # fmt: skip


def time_split(
    frame: pd.DataFrame, test_share: float, valid_share: float
) -> tuple[pd.DataFrame, ...]:
    """Train / validation / test by event time (never shuffled across time): about the newest
    ``test_share`` of the rows, the ``valid_share`` before them, the rest. Rows with the same
    event time stay in one window (the later one), so that the rows after the validation
    window, which `creditflow retrain` compares models on, are exactly the test window."""
    n = len(frame)
    n_test = int(round(n * test_share))
    n_valid = int(round(n * valid_share))
    ordered = frame.sort_values(LOANS.timestamp, kind="stable")
    times = pd.to_datetime(ordered[LOANS.timestamp], utc=True).to_numpy()

    def first_of_its_time(row: int) -> int:
        return row if row >= n else int(np.searchsorted(times, times[row], side="left"))

    test_start = first_of_its_time(n - n_test)
    valid_start = first_of_its_time(max(test_start - n_valid, 0))
    train = ordered.iloc[:valid_start]
    valid = ordered.iloc[valid_start:test_start]
    test = ordered.iloc[test_start:]
    return train, valid, test
