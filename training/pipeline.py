"""`creditflow train`: dataset -> split -> (variants, tuning) -> fit -> calibrate -> decision
bands -> evaluate beside a baseline -> register as a candidate, with report and profile."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from feast import FeatureStore
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sklearn.metrics import roc_auc_score

from creditflow import clock
from creditflow.config import MODEL_FEATURE_SERVICE, Settings, get_settings
from creditflow.contract import LABEL_COLUMN
from creditflow.model import registry
from creditflow.model.evaluate import approved_band_gap, metrics, segments_of
from creditflow.model.registry import REFERENCE_FILE, iteration_range
from creditflow.model.stages import champion_tag, register_candidate
from creditflow.postprocessing.policy import choose_bands, decide
from creditflow.postprocessing.rules import MAX_TRAINING_MISSING_SHARE, ModelRules
from creditflow.store.features import FeatureContract, definitions_hash, get_store, variants_of
from creditflow.training.baseline import baseline_probabilities
from creditflow.training.calibrate import fit_calibration
from creditflow.training.dataset import (
    TEST_SHARE,
    VALID_SHARE,
    TrainingSet,
    build_training_set,
    sample_weights,
    time_split,
)
from creditflow.training.model import PARAMS, dmatrix, fit, predict
from creditflow.training.promotion import evaluate_on
from creditflow.training.reference import development_sample
from creditflow.training.report import ScoredModel, write_report
from creditflow.training.tune import DEFAULT_TIMEOUT_S, DEFAULT_TRIALS, tune
from creditflow.versions import code_version, library_versions


def mean_abs_shap(booster: xgb.Booster, frame: pd.DataFrame, contract: FeatureContract) -> dict:
    """Mean |SHAP value| per feature, from XGBoost's own per-row contributions."""
    contributions = booster.predict(
        dmatrix(frame, contract, labeled=False),
        pred_contribs=True,
        iteration_range=iteration_range(booster),
    )
    mean_abs = np.abs(contributions[:, :-1]).mean(axis=0).tolist()
    return dict(zip(contract.names, mean_abs, strict=True))


log = logging.getLogger(__name__)

# A declared variant replaces the contract only if it beats it on the validation window by this
# much ROC AUC: a smaller edge is noise, and the contract is the reviewed default.
MIN_VARIANT_VALID_GAIN = 0.002


def compare_variants(service_name: str, settings: Settings, store: FeatureStore,
                     test_share: float, valid_share: float,
                     datasets: dict[str, TrainingSet] | None = None,
                     as_of: datetime | None = None,
                     excluded: Sequence[tuple[datetime, datetime]] = ()) -> list[dict]:  # fmt: skip
    """The contract and each declared variant, trained with default parameters on one split and
    scored on the validation window only (weighted as training is): the test window judges the
    final model alone.
    ``datasets`` receives each one's training set, so the chosen one is not joined twice."""
    rows = []
    for name in [service_name, *variants_of(store, service_name)]:
        data = build_training_set(name, settings, store, as_of=as_of, excluded=excluded)
        if datasets is not None:
            datasets[name] = data
        train_df, valid_df, _ = time_split(data.frame, test_share, valid_share)
        booster = fit(train_df, valid_df, data.contract)
        rows.append({
            "feature_service": name,
            "features": len(data.contract.names),
            "valid_auc": round(float(roc_auc_score(
                valid_df[LABEL_COLUMN], predict(booster, valid_df, data.contract),
                sample_weight=sample_weights(valid_df))), 4),
        })  # fmt: skip
    best = max(rows, key=lambda r: r["valid_auc"])["feature_service"]
    for row in rows:
        row["best_by_validation"] = row["feature_service"] == best
    return rows


def choose_feature_service(rows: list[dict], contract: str) -> tuple[str, str]:
    """The FeatureService to tune and train, from ``compare_variants`` rows, and why: the
    validation winner, if it is the contract or beats it by MIN_VARIANT_VALID_GAIN."""
    base = next(row for row in rows if row["feature_service"] == contract)
    best = max(rows, key=lambda row: row["valid_auc"])
    gain = best["valid_auc"] - base["valid_auc"]
    versus = f"validation ROC AUC {best['valid_auc']:.4f} vs {base['valid_auc']:.4f}"
    if best is base:
        chosen = contract
        why = f"{contract} has the best validation ROC AUC ({base['valid_auc']:.4f}) of all"
    elif gain < MIN_VARIANT_VALID_GAIN:
        chosen = contract
        why = (f"{best['feature_service']} leads by {gain:.4f} only ({versus}), less than the "
               f"{MIN_VARIANT_VALID_GAIN} a variant needs to replace {contract}")  # fmt: skip
    else:
        chosen = best["feature_service"]
        why = (f"{chosen} beats {contract} by {gain:.4f} ({versus}), at least the "
               f"{MIN_VARIANT_VALID_GAIN} a variant needs")  # fmt: skip
    for row in rows:
        row["chosen"] = row["feature_service"] == chosen
    return chosen, why


def training_missing_share(frame: pd.DataFrame, contract: FeatureContract) -> dict[str, float]:
    """Per contract feature, the share of the rows without a value (none, or older than its
    view's TTL): what the model learned with, and what the missing-features rule is judged by."""
    return {name: round(float(frame[name].isna().mean()), 4) for name in contract.names}


def missing_warnings(shares: dict[str, float], service_name: str) -> list[str]:
    """A warning when features are missing in most training rows: the model learns without
    them, which is rarely meant (a source older than its view's TTL, or a broken one)."""
    mostly = {name: share for name, share in shares.items() if share > MAX_TRAINING_MISSING_SHARE}
    if not mostly:
        return []
    listed = ", ".join(f"{name} {share:.0%}" for name, share in mostly.items())
    return [
        f"{len(mostly)} of {len(shares)} features of {service_name} are missing in more than "
        f"{MAX_TRAINING_MISSING_SHARE:.0%} of the training rows ({listed}): are their sources "
        "older than their feature view's TTL, or broken? The model learned without them, and "
        "REVIEW_MISSING_FEATURES ignores them for this model."
    ]


def _window(df: pd.DataFrame) -> list[str]:
    return [str(df["event_timestamp"].min()), str(df["event_timestamp"].max())]


def train(
    service_name: str | None = None,
    settings: Settings | None = None,
    test_share: float = TEST_SHARE,
    valid_share: float = VALID_SHARE,
    trials: int = DEFAULT_TRIALS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    variants: bool = True,
    engine: str = "local",
    scheduler: str | None = None,
    quiet: bool = False,
    as_of: datetime | None = None,
    excluded: Sequence[tuple[datetime, datetime]] = (),
) -> dict:
    """Train, evaluate and register a candidate model; returns a summary.

    ``service_name`` pins the FeatureService. By default the contract (MODEL_FEATURE_SERVICE)
    and its declared variants are compared on the validation window and the winner is tuned
    and trained (``choose_feature_service``); ``variants=False`` trains the contract itself.
    ``as_of`` trains on what was known then only (loans ingested, labels received by it);
    feedback rows of applications made in an ``excluded`` window are left out.
    The settings' training window and half-life (``training_window_days``,
    ``training_half_life_days``) favour recent outcomes: the splits are taken within the
    window, and fitting, early stopping, tuning, calibration and the baseline are weighted;
    the test metrics (and the gate's comparison) are not: they judge the newest rows as they are.
    """
    settings = settings or get_settings()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, disable=quiet, transient=True) as progress:
        step = progress.add_task("point-in-time join through Feast")
        store = get_store(settings)  # one registry load for the whole run
        variant_rows: list[dict] = []
        datasets: dict[str, TrainingSet] = {}
        if service_name is not None:
            how, why = "pinned", f"{service_name} was pinned: no variant comparison"
        elif variants:
            progress.update(step, description="comparing feature variants on validation")
            variant_rows = compare_variants(MODEL_FEATURE_SERVICE, settings, store, test_share,
                                            valid_share, datasets, as_of, excluded)  # fmt: skip
            service_name, why = choose_feature_service(variant_rows, MODEL_FEATURE_SERVICE)
            how = "validation"
        else:
            service_name = MODEL_FEATURE_SERVICE
            how, why = "contract", f"{service_name}, the contract: variants were not compared"
        selection = {"feature_service": service_name, "how": how, "why": why}
        data = datasets.get(service_name) or build_training_set(
            service_name, settings, store, as_of=as_of, excluded=excluded
        )
        contract = data.contract
        train_df, valid_df, test_df = time_split(data.frame, test_share, valid_share)
        y_valid, y_test = valid_df[LABEL_COLUMN].to_numpy(), test_df[LABEL_COLUMN].to_numpy()
        missing_share = training_missing_share(train_df, contract)
        warnings = missing_warnings(missing_share, service_name)
        for warning in warnings:
            log.warning(warning)
        rules = ModelRules.for_model(service_name, contract.names, missing_share)

        tuning = None
        if trials > 0:
            progress.update(step, description=f"tuning ({trials} trials, {timeout_s:g} s at most)")
            tuning = tune(train_df, valid_df, contract, trials=trials, timeout_s=timeout_s)
        params = tuning["best_params"] if tuning else {}

        progress.update(step, description=f"training XGBoost on {len(train_df):,} loans ({engine})")
        if engine == "dask":
            from creditflow.training.distributed import fit_dask

            booster = fit_dask(train_df, valid_df, contract, params=params, scheduler=scheduler)
        elif engine == "local":
            booster = fit(train_df, valid_df, contract, params=params)
        else:
            raise ValueError(f"unknown engine {engine!r}: local or dask")

        progress.update(step, description="calibrating, choosing decision bands, evaluating")
        raw_valid = predict(booster, valid_df, contract)
        raw_test = predict(booster, test_df, contract)
        calibration, calibration_info = fit_calibration(y_valid, raw_valid,
                                                        sample_weights(valid_df))  # fmt: skip
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
            "trained_at": clock.now().isoformat(),
            "trained_as_of": (clock.now() if as_of is None else clock.as_utc(as_of)).isoformat(),
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
                "feedback": data.feedback.get("rows", 0),
                "joined": len(data.frame),
                "train": len(train_df),
                "valid": len(valid_df),
                "test": len(test_df),
            },
            "metrics": {
                "test": test_metrics,
                # Where outcomes arrive in production: the approved band's realized vs expected
                # AUC (monitoring allows for this gap).
                "test_approved": approved_band_gap(
                    y_test, p_test, decide(p_test, bands) == "approve"
                ),
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
            "feature_selection": selection,
            # Labeled applications from feedback: used, duplicates of loans, by decision band.
            "feedback": data.feedback,
            # The training window and recency weights (settings), and what they kept.
            "recency": data.recency,
            "training_missing_share": missing_share,
            "rules": rules.to_metadata(),
            "warnings": warnings,
            "trees": iteration_range(booster)[1],
            "versions": library_versions(),
        }

        reference, reference_info = development_sample(settings, train_df, contract)
        metadata["reference_sample"] = reference_info  # where the development sample came from

        def extras(model_dir: Path, tag: str) -> dict:
            # The development sample: what monitoring compares live traffic with.
            reference.to_parquet(model_dir / REFERENCE_FILE)
            report_dir = settings.reports_dir / tag.replace(":", "_")
            write_report(
                report_dir,
                title=f"Evaluation of {tag} on the test window {_window(test_df)}",
                labels=y_test,
                models=[ScoredModel(f"candidate {tag}", p_test), *beside],
                segments=segments_of(test_df),
                importance=importance,
                extra={
                    **({"warnings": warnings} if warnings else {}),
                    "feature service": selection,
                    "feature variants (default parameters, validation window)": variant_rows,
                    "business rules": {
                        "applied": list(rules.applicable),
                        "not applicable": rules.not_applicable,
                    },
                    "missing in the training rows (share, by feature)": missing_share,
                    "tuning trials": (tuning or {}).get("history", []),
                    "decision bands (chosen on validation)": bands,
                    "calibration": calibration_info,
                    "windows": metadata["window"],
                    "rows": metadata["rows"],
                    "recency (training window and weights)": data.recency,
                    "feedback rows (outcomes of logged predictions; only approved loans get "
                    "outcomes, so by decision band)": data.feedback,
                },
            )
            for name in ("report.html", "report.json"):
                shutil.copy(report_dir / name, model_dir / name)
            return {"report": str(report_dir / "report.html"), "reference_data": REFERENCE_FILE}

        progress.update(step, description="registering the model")
        tag = registry.save(booster, metadata, labels={"feature_service": service_name},
                            extras=extras)  # fmt: skip
        register_candidate(tag, settings, {"test_auc": test_metrics["roc_auc"]})
    return {
        "model_tag": tag,
        "stage": "candidate",
        "feature_service": service_name,
        "feature_selection": selection,
        "warnings": warnings,
        "rules_applied": list(rules.applicable),
        "rules_not_applicable": rules.not_applicable,
        "training_missing_share": missing_share,
        "test_auc": round(test_metrics["roc_auc"], 4),
        "test_pr_auc": round(test_metrics["pr_auc"], 4),
        "test_brier": round(test_metrics["brier"], 4),
        "test_ece": round(test_metrics["ece"], 4),
        "baseline_test_auc": round(metadata["metrics"]["baseline_test"]["roc_auc"], 4),
        "calibration": calibration.method,
        "decision_bands": {k: round(bands[k], 4) for k in ("approve_below", "decline_at")},
        "tuning_trials": (tuning or {}).get("trials", 0),
        "rows": metadata["rows"],
        "feedback_rows": data.feedback.get("rows", 0),
        "feedback": data.feedback,
        "recency": data.recency,
        "trees": metadata["trees"],
        "report": str(settings.reports_dir / tag.replace(":", "_") / "report.html"),
    }
