"""Data quality of live traffic: missing features, unknown categories, contract rejections.

- **Missing features**: a feature the online store did not have (an unknown applicant, or a
  value older than its view's TTL) is logged as null. Some features are missing in training
  too (``training_missing_share`` in the model's metadata): only the excess over that share is
  judged (``MISSING_SHARE_*``).
- **Unknown categories**: values of a categorical feature that the development sample never
  had; the model scores them as missing (``UNKNOWN_CATEGORY_ALERT``).
- **Contract rejections**: requests the API refused (4xx), per field or rule they broke, as a
  share of the endpoint's requests in the window, from the service's own statistics
  (``service_stats``: rejected requests never reach the prediction log) (``REJECTED_SHARE_*``).
  A new ``loan_intent`` upstream shows here, since the API validates categories.

Fewer rows than ``MIN_ROWS_FOR_DRIFT`` in the window: reported, not judged (INFO).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from creditflow.monitoring import thresholds as th
from creditflow.monitoring.drift import reference_bins
from creditflow.monitoring.logged import logged_predictions
from creditflow.monitoring.results import Result
from creditflow.monitoring.window import Window
from creditflow.tables import service_stats

# Unknown values listed in a result's details, most frequent first, at most.
UNKNOWN_LISTED = 10


def quality_results(window: Window) -> list[Result]:
    """Live rows, missing shares and unknown categories of ``window``'s model's traffic."""
    live = logged_predictions(window)
    rows = len(live)
    results = [
        Result(
            "quality", "rows", "all", float(rows), th.INFO, None, window.model_tag, {"rows": rows}
        )
    ]
    results += missing_results(window, live)
    results += unknown_category_results(window, live)
    return results


def _judged(rows: int, status: str) -> str:
    return status if rows >= th.MIN_ROWS_FOR_DRIFT else th.INFO


def missing_results(window: Window, live: pd.DataFrame) -> list[Result]:
    """Per feature, the share of live rows without a value, judged by its excess over the share
    of training rows without one."""
    training = window.model.metadata.get("training_missing_share") or {}
    rows = len(live)
    results = []
    for name in window.model.contract.names:
        share = float(live[name].isna().mean()) if rows else None
        trained = float(training.get(name) or 0.0)
        excess = None if share is None else max(share - trained, 0.0)
        status = th.status_of(excess, th.MISSING_SHARE_WATCH, th.MISSING_SHARE_ALERT)
        details = {
            "rows": rows,
            "missing": int(live[name].isna().sum()),
            "training_share": trained,
            "excess": excess,
        }
        results.append(
            Result(
                "quality",
                "missing_share",
                name,
                share,
                _judged(rows, status),
                trained + th.MISSING_SHARE_ALERT,
                window.model_tag,
                details,
            )
        )
    return results


def unknown_category_results(window: Window, live: pd.DataFrame) -> list[Result]:
    """Per categorical feature, the share of live values (present ones) that the development
    sample never had, with the most frequent of them."""
    binned = reference_bins(window)
    rows = len(live)
    results = []
    for name in window.model.contract.categorical:
        bins = binned[name][0]
        column = live[name]
        present = int(column.notna().sum())
        counts = column.value_counts(dropna=True)
        counts.index = counts.index.astype(str)
        unknown = counts[~counts.index.isin(bins.categories)]
        unknown = unknown[unknown > 0].sort_values(ascending=False)
        share = float(unknown.sum()) / present if present else None
        status = th.status_of(share, th.UNKNOWN_CATEGORY_ALERT, th.UNKNOWN_CATEGORY_ALERT)
        details = {
            "rows": rows,
            "present": present,
            "unknown": int(unknown.sum()),
            "values": {str(k): int(v) for k, v in unknown.head(UNKNOWN_LISTED).items()},
            "reference_categories": len(bins.categories),
        }
        results.append(
            Result(
                "quality",
                "unknown_category_share",
                name,
                share,
                _judged(rows, status),
                th.UNKNOWN_CATEGORY_ALERT,
                window.model_tag,
                details,
            )
        )
    return results


def rejection_results(engine: sa.Engine, start: datetime, as_of: datetime) -> list[Result]:
    """Per endpoint and field (or rule) the API's contract rejections named, their share of the
    endpoint's requests, from the service statistics of windows that started in
    ``(start, as_of]``; and per endpoint the share of all its requests that were rejected
    (INFO). Subjects are ``<endpoint>:<field>`` (``_body``: no field named). Not per model."""
    stats = service_stats.c
    query = sa.select(stats.endpoint, stats.requests, stats.rejected, stats.rejections).where(
        stats.window_start > start, stats.window_start <= as_of
    )
    requests: dict[str, int] = {}
    rejected: dict[str, int] = {}
    fields: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for endpoint, n, refused, by_field in conn.execute(query):
            requests[endpoint] = requests.get(endpoint, 0) + int(n)
            rejected[endpoint] = rejected.get(endpoint, 0) + int(refused)
            named = fields.setdefault(endpoint, {})
            for field, count in (by_field or {}).items():
                named[field] = named.get(field, 0) + int(count)
    results = []
    for endpoint in sorted(requests):
        total = requests[endpoint]
        share = rejected[endpoint] / total if total else None
        results.append(
            Result(
                "quality",
                "rejected_share",
                f"{endpoint}:all",
                share,
                th.INFO,
                None,
                None,
                {
                    "endpoint": endpoint,
                    "field": None,
                    "rejected": rejected[endpoint],
                    "requests": total,
                },
            )
        )
        for field, count in sorted(fields[endpoint].items(), key=lambda kv: -kv[1]):
            share = count / total if total else None
            status = th.status_of(share, th.REJECTED_SHARE_WATCH, th.REJECTED_SHARE_ALERT)
            status = status if total >= th.MIN_ROWS_FOR_DRIFT else th.INFO
            details = {"endpoint": endpoint, "field": field, "rejected": count, "requests": total}
            results.append(
                Result(
                    "quality",
                    "rejected_share",
                    f"{endpoint}:{field}",
                    share,
                    status,
                    th.REJECTED_SHARE_ALERT,
                    None,
                    details,
                )
            )
    return results
