"""Training on a real Dask cluster gives the single-process model, usable by the pipeline."""

from __future__ import annotations

import time

import psutil
import pytest
from distributed import LocalCluster
from sklearn.metrics import roc_auc_score

from creditflow.contract import LABEL_COLUMN
from creditflow.model.registry import iteration_range
from creditflow.training.dataset import build_training_set, time_split
from creditflow.training.distributed import fit_dask
from creditflow.training.model import fit, predict

# The trees do not depend on the thread count. Pinning it keeps the single-process fit from
# oversubscribing a busy 2-core machine: its OpenMP threads then spin-wait (measured 82 s at
# nthread=2 against 1.6 s at nthread=1); the Dask workers use 1 thread each anyway.
PARAMS = {"nthread": 1}


@pytest.fixture(scope="module")
def windows(demo_home):
    data = build_training_set(demo_home.training["feature_service"], demo_home.settings)
    train, valid, test = time_split(data.frame, 0.2, 0.1)
    return train, valid, test, data.contract


def children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def new_children(before: set[int]) -> list[str]:
    """Processes started since ``before``: Dask's workers (``multiprocessing.spawn``) count,
    the resource tracker multiprocessing keeps for the rest of the session does not."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if child.pid not in before and "resource_tracker" not in command:
            found.append(command)
    return found


def test_dask_model_matches_the_single_process_one(windows):
    train, valid, test, contract = windows
    single = fit(train, valid, contract, params=PARAMS)
    before = children()
    booster = fit_dask(train, valid, contract, params=PARAMS, scheduler=None, n_workers=2)
    assert new_children(before) == []  # the local cluster's workers are gone

    assert list(booster.feature_names) == list(contract.names)
    categories = dict(booster.get_categories(export_to_arrow=True).to_arrow())
    for name in contract.categorical:
        assert categories[name] is not None and len(categories[name]) > 0
    assert booster.attr("best_iteration") is not None
    start, end = iteration_range(booster)
    assert start == 0 < end <= booster.num_boosted_rounds()

    labels = test[LABEL_COLUMN]
    single_auc = roc_auc_score(labels, predict(single, test, contract))
    dask_auc = roc_auc_score(labels, predict(booster, test, contract))
    print(f"test AUC: single process {single_auc:.4f}, dask {dask_auc:.4f}")
    assert abs(dask_auc - single_auc) <= 0.01


def test_connects_to_an_existing_scheduler_and_leaves_it_running(windows):
    train, valid, test, contract = windows
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        booster = fit_dask(
            train,
            valid,
            contract,
            params=PARAMS,
            num_boost_round=20,
            scheduler=cluster.scheduler_address,
        )
        assert booster.num_boosted_rounds() == 20
        assert list(booster.feature_names) == list(contract.names)
        assert len(cluster.scheduler_info["workers"]) == 2
        deadline = time.monotonic() + 10
        while set(cluster.scheduler.clients) - {"fire-and-forget"}:
            assert time.monotonic() < deadline, "fit_dask left its client connected"
            time.sleep(0.1)
    assert predict(booster, test, contract).shape == (len(test),)


def test_the_local_cluster_is_closed_when_training_fails(windows):
    train, valid, _, contract = windows
    before = children()
    with pytest.raises(Exception, match="not_an_objective"):
        fit_dask(train, valid, contract, params={**PARAMS, "objective": "not_an_objective"})
    assert new_children(before) == []
