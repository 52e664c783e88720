"""The BentoML model store as the model registry: save a trained model, load one back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import xgboost as xgb

from creditflow.config import MODEL_NAME, export_environment
from creditflow.store.features import FeatureContract

BOOSTER_FILE = "booster.ubj"
# The training rows' features (the development sample), stored with the model: the reference
# that monitoring profiles and compares live traffic with.
REFERENCE_FILE = "reference.parquet"


@dataclass
class LoadedModel:
    tag: str
    booster: xgb.Booster
    contract: FeatureContract
    metadata: dict
    iteration_range: tuple[int, int]
    nthread: int | None = None  # what the booster predicts with (None: every core)


def iteration_range(booster: xgb.Booster) -> tuple[int, int]:
    """The trees to predict with: up to the best validation round when early-stopped."""
    best = booster.attr("best_iteration")
    return (0, int(best) + 1) if best is not None else (0, 0)


def save(
    booster: xgb.Booster,
    metadata: dict,
    labels: dict | None = None,
    extras: Callable[[Path, str], dict] | None = None,
) -> str:
    """Store the booster and its metadata; returns the new model tag.

    ``extras(model_dir, tag)`` may write more files into the model (report, reference
    profile) and returns metadata entries to add.
    """
    export_environment()
    import bentoml

    with bentoml.models.create(MODEL_NAME, metadata=metadata, labels=labels or {}) as model:
        booster.save_model(model.path_of(BOOSTER_FILE))
        if extras is not None:
            model.info.metadata.update(extras(Path(model.path), str(model.tag)))
    return str(model.tag)


def load(tag: str = f"{MODEL_NAME}:latest", nthread: int | None = 1) -> LoadedModel:
    """A stored model, ready for low-latency prediction.

    ``nthread=1``: one-row predictions gain nothing from threads, and under load the extra
    threads multiply tail latency (docs/benchmarks.md). ``None`` keeps
    XGBoost's default (all cores), for batch work.
    """
    export_environment()
    import bentoml

    stored = bentoml.models.get(tag)
    return from_stored(stored, nthread)


def from_stored(stored, nthread: int | None = 1) -> LoadedModel:
    booster = xgb.Booster()
    booster.load_model(stored.path_of(BOOSTER_FILE))
    if nthread is not None:
        booster.set_param({"nthread": nthread})
    metadata = dict(stored.info.metadata)
    contract = FeatureContract.from_metadata(metadata)
    return LoadedModel(
        str(stored.tag), booster, contract, metadata, iteration_range(booster), nthread
    )
