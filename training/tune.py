"""Bounded hyper-parameter search: a number of trials and a time limit, whichever ends first.

Each trial trains with early stopping on the validation window and is scored by validation
ROC AUC (weighted by the rows' recency weights, if any); the test window is never looked at here.
"""

from __future__ import annotations

import time

import optuna
import pandas as pd
from sklearn.metrics import roc_auc_score

from creditflow.contract import LABEL_COLUMN
from creditflow.store.features import FeatureContract
from creditflow.training.dataset import sample_weights
from creditflow.training.model import fit, predict

DEFAULT_TRIALS = 12
DEFAULT_TIMEOUT_S = 45.0


def _space(trial: optuna.Trial) -> dict:
    return {
        "max_depth": trial.suggest_int("max_depth", 3, 8),
        "eta": trial.suggest_float("eta", 0.02, 0.2, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 1, 30, log=True),
        "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "lambda": trial.suggest_float("lambda", 1e-3, 10, log=True),
    }


def tune(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    contract: FeatureContract,
    trials: int = DEFAULT_TRIALS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    seed: int = 0,
) -> dict:
    """Best parameters found within the budget, with the trial history for the report."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    labels, weights = valid[LABEL_COLUMN].to_numpy(), sample_weights(valid)

    def objective(trial: optuna.Trial) -> float:
        booster = fit(train, valid, contract, params=_space(trial))
        trial.set_user_attr("trees", int(booster.attr("best_iteration") or 0) + 1)
        return float(
            roc_auc_score(labels, predict(booster, valid, contract), sample_weight=weights)
        )

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials, timeout=timeout_s)
    history = [
        {"trial": t.number, "valid_auc": round(t.value, 5), "trees": t.user_attrs.get("trees"),
         **{k: round(v, 5) if isinstance(v, float) else v for k, v in t.params.items()}}
        for t in study.trials
        if t.value is not None
    ]  # fmt: skip
    return {
        "best_params": study.best_params,
        "best_valid_auc": float(study.best_value),
        "trials": len(history),
        "seconds": round(time.perf_counter() - started, 1),
        "history": history,
    }
