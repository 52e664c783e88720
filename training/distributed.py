"""Fitting the same XGBoost model on a Dask cluster (``xgboost.dask``).

Only the fitting is distributed. The point-in-time training set is still built by the feature
store (DuckDB here; for data that outgrows one machine, Feast's warehouse offline stores do the
join), so train, validation and test windows are exactly those of :func:`training.model.fit`.
The frames are then split into one partition per worker and boosted with the same parameters;
the result is a plain ``xgb.Booster`` with the same feature names, stored categories and
``best_iteration``, so evaluation, registry and serving do not know which engine fitted it.

Pointing it at a cluster::

    creditflow train --engine dask --scheduler tcp://scheduler:8786

The workers unpickle pandas frames and XGBoost boosters, so they need the same Python
environment as the client: install the project's ``requirements.lock`` on them. Without a
scheduler address, a local cluster is started for the call and closed afterwards.
"""

from __future__ import annotations

from contextlib import ExitStack

import dask.dataframe as dd
import pandas as pd
import xgboost as xgb
from distributed import Client, LocalCluster
from xgboost import dask as dxgb

from creditflow.contract import LABEL_COLUMN
from creditflow.preprocessing.encoding import training_frame
from creditflow.store.features import FeatureContract
from creditflow.training.dataset import WEIGHT_COLUMN, sample_weights
from creditflow.training.model import EARLY_STOPPING_ROUNDS, MAX_ROUNDS, PARAMS


def labeled_frame(frame: pd.DataFrame, contract: FeatureContract) -> pd.DataFrame:
    """The model's input frame plus the label (and the recency weights, scaled as
    ``training.model.fit`` scales them), built before any cluster is started."""
    labeled = training_frame(frame, contract).reset_index(drop=True)
    labeled[LABEL_COLUMN] = frame[LABEL_COLUMN].to_numpy()
    weights = sample_weights(frame)
    if weights is not None:
        labeled[WEIGHT_COLUMN] = weights
    return labeled


def partitioned(
    labeled: pd.DataFrame, contract: FeatureContract, npartitions: int
) -> tuple[dd.DataFrame, dd.Series, dd.Series | None]:
    """Features, label and weights (None: unweighted) as dask collections with the same
    partitions.

    Every partition keeps the whole frame's categorical dtype: each worker builds its local
    DMatrix from its own partitions, and codes only agree across workers if the category lists
    do (partition-local categories would silently mix up categories between workers).
    """
    data = dd.from_pandas(labeled, npartitions=max(1, min(npartitions, len(labeled))))
    X = data[list(contract.names)]
    unknown = [name for name in contract.categorical if not X[name].cat.known]
    if unknown:
        raise ValueError(f"categories unknown after partitioning: {unknown}")
    weights = data[WEIGHT_COLUMN] if WEIGHT_COLUMN in labeled.columns else None
    return X, data[LABEL_COLUMN], weights


def fit_dask(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    contract: FeatureContract,
    params: dict | None = None,
    num_boost_round: int = MAX_ROUNDS,
    early_stopping_rounds: int = EARLY_STOPPING_ROUNDS,
    scheduler: str | None = None,
    n_workers: int = 2,
) -> xgb.Booster:
    """:func:`training.model.fit` on a Dask cluster: the scheduler's, or a local one.

    ``nthread`` is left to each worker's own thread count (xgboost.dask sets it per worker), so
    a worker never runs more threads than Dask gave it; the local cluster has one per worker.
    """
    train_frame, valid_frame = labeled_frame(train, contract), labeled_frame(valid, contract)
    with ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(
                LocalCluster(n_workers=n_workers, threads_per_worker=1, dashboard_address=None)
            )
            client = stack.enter_context(Client(cluster))
            client.wait_for_workers(n_workers)
        else:
            client = stack.enter_context(Client(scheduler))
        workers = len(client.nthreads())
        if workers == 0:
            raise RuntimeError(f"the Dask cluster at {scheduler} has no workers")

        X, y, w = partitioned(train_frame, contract, workers)
        dtrain = dxgb.DaskQuantileDMatrix(client, X, y, weight=w, enable_categorical=True)
        X_valid, y_valid, w_valid = partitioned(valid_frame, contract, workers)
        dvalid = dxgb.DaskQuantileDMatrix(
            client, X_valid, y_valid, weight=w_valid, enable_categorical=True, ref=dtrain
        )
        result = dxgb.train(
            client,
            {**PARAMS, **(params or {})},
            dtrain,
            num_boost_round=num_boost_round,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=early_stopping_rounds,
            verbose_eval=False,
        )
        return result["booster"]
