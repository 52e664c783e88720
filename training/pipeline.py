"""`creditflow train`: dataset -> split -> fit -> evaluate -> register."""

from __future__ import annotations

import hashlib
import platform
from datetime import UTC, datetime
from importlib.metadata import version

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from creditflow.config import FEATURE_REPO, MODEL_FEATURE_SERVICE, Settings, get_settings
from creditflow.policy import break_even_threshold
from ingestion.contract import TABLES
from ingestion.offline import batch_files
from training import registry
from training.dataset import build_training_set, time_split
from training.evaluate import metrics
from training.model import PARAMS, fit, iteration_range, predict

TEST_SHARE = 0.2
VALID_SHARE = 0.1


def fingerprint(settings: Settings) -> str:
    """Hash of the source tables and feature definitions the model was trained from."""
    digest = hashlib.sha256()
    paths = [path for t in TABLES for path in batch_files(settings, t)]
    paths += sorted(FEATURE_REPO.glob("*.py"))
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _versions() -> dict[str, str]:
    packages = ("xgboost", "feast", "bentoml", "pandas", "numpy", "pyarrow", "creditflow")
    found = {}
    for name in packages:
        try:
            found[name] = version(name)
        except Exception:
            found[name] = version(f"{name}-cpu") if name == "xgboost" else "unknown"
    found["python"] = platform.python_version()
    return found


def train(
    service_name: str = MODEL_FEATURE_SERVICE,
    settings: Settings | None = None,
    test_share: float = TEST_SHARE,
    valid_share: float = VALID_SHARE,
    quiet: bool = False,
) -> dict:
    """Train, evaluate on the most recent window and register a model; returns a summary."""
    settings = settings or get_settings()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, disable=quiet, transient=True) as progress:
        step = progress.add_task("point-in-time join through Feast")
        data = build_training_set(service_name, settings)
        train_df, valid_df, test_df = time_split(data.frame, test_share, valid_share)
        progress.update(step, description=f"training XGBoost on {len(train_df):,} loans")
        booster = fit(train_df, valid_df, data.contract)
        progress.update(step, description="evaluating on the test window")
        test_metrics = metrics(
            test_df["loan_status"].to_numpy(), predict(booster, test_df, data.contract)
        )
        valid_metrics = metrics(
            valid_df["loan_status"].to_numpy(), predict(booster, valid_df, data.contract)
        )
        progress.update(step, description="registering the model")
        metadata = {
            **data.contract.to_metadata(),
            "label": "loan_status",
            "trained_at": datetime.now(UTC).isoformat(),
            "data_fingerprint": fingerprint(settings),
            "window": {
                part: [str(df["event_timestamp"].min()), str(df["event_timestamp"].max())]
                for part, df in (("train", train_df), ("valid", valid_df), ("test", test_df))
            },
            "rows": {
                "labeled": data.labeled_rows,
                "invalid_dropped": data.invalid_rows,
                "joined": len(data.frame),
                "train": len(train_df),
                "valid": len(valid_df),
                "test": len(test_df),
            },
            "metrics": {"test": test_metrics, "valid": valid_metrics},
            "decision_threshold": break_even_threshold(),
            "params": PARAMS,
            "trees": iteration_range(booster)[1],
            "versions": _versions(),
        }
        tag = registry.save(booster, metadata, labels={"stage": "candidate"})
    return {
        "model_tag": tag,
        "feature_service": service_name,
        "test_auc": round(test_metrics["roc_auc"], 4),
        "test_pr_auc": round(test_metrics["pr_auc"], 4),
        "test_brier": round(test_metrics["brier"], 4),
        "rows": metadata["rows"],
        "trees": metadata["trees"],
    }
