"""Feast's point-in-time join, with rows out == rows in enforced."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from creditflow.config import Settings
from creditflow.contract import LOANS
from creditflow.store.features import get_service, get_store

if TYPE_CHECKING:
    from feast import FeatureStore


class RowLossError(RuntimeError):
    """The offline store returned a different number of rows than it was given."""


def point_in_time(store: FeatureStore, entities: pd.DataFrame, features: Any, key: str) -> pa.Table:
    """Feast's point-in-time join of ``features`` (a FeatureService or references) onto the
    entity rows, in the entities' order (``key`` is unique per row), as an Arrow table.

    Raises RowLossError unless rows out == rows in: some offline stores drop entity rows
    that have no feature row in the past, silently.
    """
    joined = store.get_historical_features(entity_df=entities, features=features).to_arrow()
    if joined.num_rows != len(entities):
        raise RowLossError(
            f"the offline store returned {joined.num_rows} rows for {len(entities)} entity rows"
        )
    keys = pd.Index(joined[key].to_numpy())
    if keys.has_duplicates:
        raise RowLossError("the offline store duplicated entity rows")
    return joined.take(keys.get_indexer(entities[key]))


def historical_features(
    entities: pd.DataFrame,
    service_name: str,
    settings: Settings | None = None,
    store: FeatureStore | None = None,
) -> pd.DataFrame:
    """Point-in-time correct features of a FeatureService for each loan (entity rows keyed by
    the loans' key), in the entities' order (rows out == rows in)."""
    store = store or get_store(settings)
    service = get_service(store, service_name)
    return point_in_time(store, entities, service, LOANS.key[0]).to_pandas()
