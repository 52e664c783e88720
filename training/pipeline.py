"""`creditflow train`: dataset -> split -> (variants, tuning) -> fit -> calibrate -> decision
bands -> evaluate beside a baseline -> register as a candidate, with report and profile."""

from __future__ import annotations

import platform
import shutil
import subprocess
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from feast import FeatureStore
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sklearn.metrics import roc_auc_score

from creditflow.calibration import fit_calibration
from creditflow.config import LABEL_COLUMN, MODEL_FEATURE_SERVICE, REPO_ROOT, Settings, get_settings
from creditflow.features import FeatureContract, definitions_hash, get_store, variants_of
from creditflow.policy import choose_bands
from monitoring.profile import write_profile
from training import registry
from training.baseline import baseline_probabilities
from training.dataset import TEST_SHARE, VALID_SHARE, build_training_set, time_split
from training.evaluate import metrics, segments_of
from training.model import PARAMS, dmatrix, fit, iteration_range, predict
from training.promotion import champion_tag, evaluate_on, register_candidate
from training.report import ScoredModel, write_report
from training.tune import DEFAULT_TIMEOUT_S, DEFAULT_TRIALS, tune

PROFILE_FILE = "reference_profile.bin"


def _versions() -> dict[str, str]:
    found = {}
    for name in ("xgboost-cpu", "feast", "bentoml", "pandas", "numpy", "pyarrow", "creditflow"):
        try:
            found[name.removesuffix("-cpu")] = version(name)
        except Exception:
            found[name.removesuffix("-cpu")] = "unknown"
    found["python"] = platform.python_version()
    return found


def code_version() -> str:
    """The git commit of the code that trained the model (``+dirty`` if uncommitted changes)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return f"creditflow {version('creditflow')}"


def mean_abs_shap(booster: xgb.Booster, frame: pd.DataFrame, contract: FeatureContract) -> dict:
    """Mean |SHAP value| per feature, from XGBoost's own per-row contributions."""
    contributions = booster.predict(
        dmatrix(frame, contract, labeled=False),
        pred_contribs=True,
        iteration_range=iteration_range(booster),
    )
    mean_abs = np.abs(contributions[:, :-1]).mean(axis=0).tolist()
    return dict(zip(contract.names, mean_abs, strict=True))


def compare_variants(service_name: str, settings: Settings, store: FeatureStore,
                     test_share: float, valid_share: float) -> list[dict]:  # fmt: skip
    """The contract and each declared variant, trained with default parameters on one split."""
    rows = []
    for name in [service_name, *variants_of(store, service_name)]:
        data = build_training_set(name, settings, store)
        train_df, valid_df, test_df = time_split(data.frame, test_share, valid_share)
        booster = fit(train_df, valid_df, data.contract)
        rows.append({
            "feature_service": name,
            "features": len(data.contract.names),
            "valid_auc": round(float(roc_auc_score(
                valid_df[LABEL_COLUMN], predict(booster, valid_df, data.contract))), 4),
            "test_auc": round(float(roc_auc_score(
                test_df[LABEL_COLUMN], predict(booster, test_df, data.contract))), 4),
        })  # fmt: skip
    best = max(rows, key=lambda r: r["valid_auc"])["feature_service"]
    for row in rows:
        row["best_by_validation"] = row["feature_service"] == best
    return rows


def _window(df: pd.DataFrame) -> list[str]:
    return [str(df["event_timestamp"].min()), str(df["event_timestamp"].max())]


def train(
    service_name: str = MODEL_FEATURE_SERVICE,
    settings: Settings | None = None,
    test_share: float = TEST_SHARE,
    valid_share: float = VALID_SHARE,
    trials: int = DEFAULT_TRIALS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    variants: bool = True,
    engine: str = "local",
    scheduler: str | None = None,
    quiet: bool = False,
) -> dict:
    """Train, evaluate and register a candidate model; returns a summary."""
    settings = settings or get_settings()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, disable=quiet, transient=True) as progress:
        step = progress.add_task("point-in-time join through Feast")
        store = get_store(settings)  # one registry load for the whole run
        data = build_training_set(service_name, settings, store)
        contract = data.contract
        train_df, valid_df, test_df = time_split(data.frame, test_share, valid_share)
        y_valid, y_test = valid_df[LABEL_COLUMN].to_numpy(), test_df[LABEL_COLUMN].to_numpy()

        variant_rows: list[dict] = []
        if variants:
            progress.update(step, description="comparing feature variants")
            variant_rows = compare_variants(service_name, settings, store, test_share, valid_share)
        tuning = None
        if trials > 0:
            progress.update(step, description=f"tuning ({trials} trials, {timeout_s:g} s at most)")
            tuning = tune(train_df, valid_df, contract, trials=trials, timeout_s=timeout_s)
        params = tuning["best_params"] if tuning else {}

        progress.update(step, description=f"training XGBoost on {len(train_df):,} loans ({engine})")
        if engine == "dask":
            from training.distributed import fit_dask

            booster = fit_dask(train_df, valid_df, contract, params=params, scheduler=scheduler)
        elif engine == "local":
            booster = fit(train_df, valid_df, contract, params=params)
        else:
            raise ValueError(f"unknown engine {engine!r}: local or dask")

        progress.update(step, description="calibrating, choosing decision bands, evaluating")
        raw_valid = predict(booster, valid_df, contract)
        raw_test = predict(booster, test_df, contract)
        calibration, calibration_info = fit_calibration(y_valid, raw_valid)
        p_valid, p_test = calibration.apply(raw_valid), calibration.apply(raw_test)
        bands = choose_bands(y_valid, p_valid)
        test_metrics = metrics(y_test, p_test)
        beside = [ScoredModel("baseline: logistic regression",
                              baseline_probabilities(train_df, test_df, contract))]  # fmt: skip
        current = champion_tag(settings)
        if current is not None:
            entities = test_df[[c for c in test_df.columns if c in data.entity_columns]]
            champion_p = evaluate_on(current, entities, settings)["probabilities"]
            beside.append(ScoredModel(f"champion {current}", champion_p))
        importance = {
            "gain": booster.get_score(importance_type="gain"),
            "shap": mean_abs_shap(booster, test_df, contract),
        }
        metadata = {
            **contract.to_metadata(),
            "feature_definitions_hash": definitions_hash(store, service_name),
            "label": LABEL_COLUMN,
            "trained_at": datetime.now(UTC).isoformat(),
            "code_version": code_version(),
            "engine": engine,
            "window": {
                "train": _window(train_df),
                "valid": _window(valid_df),
                "test": _window(test_df),
            },  # fmt: skip
            "rows": {
                "labeled": data.labeled_rows,
                "invalid_dropped": data.invalid_rows,
                "joined": len(data.frame),
                "train": len(train_df),
                "valid": len(valid_df),
                "test": len(test_df),
            },
            "metrics": {
                "test": test_metrics,
                "test_uncalibrated": metrics(y_test, raw_test),
                "valid": metrics(y_valid, p_valid),
                "baseline_test": metrics(y_test, beside[0].probabilities),
            },
            "calibration": calibration.to_metadata(),
            "calibration_selection": calibration_info,
            "decision_bands": bands,
            "params": {**PARAMS, **params},
            "tuning": {k: v for k, v in (tuning or {}).items() if k != "history"},
            "feature_variants": variant_rows,
            "trees": iteration_range(booster)[1],
            "versions": _versions(),
        }

        def extras(model_dir: Path, tag: str) -> dict:
            write_profile(train_df[list(contract.names)], model_dir / PROFILE_FILE)
            report_dir = settings.reports_dir / tag.replace(":", "_")
            write_report(
                report_dir,
                title=f"Evaluation of {tag} on the test window {_window(test_df)}",
                labels=y_test,
                models=[ScoredModel(f"candidate {tag}", p_test), *beside],
                segments=segments_of(test_df),
                importance=importance,
                extra={
                    "feature variants (default parameters)": variant_rows,
                    "tuning trials": (tuning or {}).get("history", []),
                    "decision bands (chosen on validation)": bands,
                    "calibration": calibration_info,
                    "windows": metadata["window"],
                    "rows": metadata["rows"],
                },
            )
            for name in ("report.html", "report.json"):
                shutil.copy(report_dir / name, model_dir / name)
            return {"report": str(report_dir / "report.html"), "reference_profile": PROFILE_FILE}

        progress.update(step, description="registering the model")
        tag = registry.save(booster, metadata, labels={"feature_service": service_name},
                            extras=extras)  # fmt: skip
        register_candidate(tag, settings, {"test_auc": test_metrics["roc_auc"]})
    return {
        "model_tag": tag,
        "stage": "candidate",
        "feature_service": service_name,
        "test_auc": round(test_metrics["roc_auc"], 4),
        "test_pr_auc": round(test_metrics["pr_auc"], 4),
        "test_brier": round(test_metrics["brier"], 4),
        "test_ece": round(test_metrics["ece"], 4),
        "baseline_test_auc": round(metadata["metrics"]["baseline_test"]["roc_auc"], 4),
        "calibration": calibration.method,
        "decision_bands": {k: round(bands[k], 4) for k in ("approve_below", "decline_at")},
        "tuning_trials": (tuning or {}).get("trials", 0),
        "rows": metadata["rows"],
        "trees": metadata["trees"],
        "report": str(settings.reports_dir / tag.replace(":", "_") / "report.html"),
    }
