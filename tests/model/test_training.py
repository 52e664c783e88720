"""The model trained on the demo world, and what it records about itself."""

import json

import pandas as pd
import pytest

from creditflow.config import MODEL_FEATURE_SERVICE
from creditflow.features import contract_of, get_store
from ingestion.contract import LOANS, violations
from training import registry


def test_demo_world_model_reaches_the_auc_band(demo_home):
    # Below 0.80 the features or the join are broken; above 0.95 the label leaks.
    assert 0.80 <= demo_home.training["test_auc"] <= 0.95


def test_no_labeled_row_is_lost(demo_home):
    rows = demo_home.training["rows"]
    raw = pd.read_parquet(demo_home.settings.raw_dir / "loans.parquet").reset_index(drop=True)
    ingested = demo_home.ingested["loans"]
    # Dirty loans were quarantined on the way in; every other loan reaches training.
    assert ingested["quarantined"] == int((violations(raw, LOANS) != "").sum()) > 0
    assert rows["labeled"] == ingested["accepted"] == len(raw) - ingested["quarantined"]
    assert rows["invalid_dropped"] == 0
    assert rows["joined"] == rows["labeled"]
    assert rows["train"] + rows["valid"] + rows["test"] == rows["joined"]


def test_model_metadata_describes_its_contract_and_window(demo_home):
    model = registry.load(demo_home.training["model_tag"])
    meta = model.metadata
    contract = contract_of(get_store(demo_home.settings), MODEL_FEATURE_SERVICE)
    assert meta["feature_service"] == MODEL_FEATURE_SERVICE
    assert tuple(meta["feature_names"]) == contract.names
    assert tuple(meta["categorical_features"]) == contract.categorical
    assert meta["feature_types"]["person_age"] == "Int64"
    assert meta["feature_types"]["loan_intent"] == "String"
    assert meta["feature_types"]["debt_to_income"] == "Float64"
    assert list(model.booster.feature_names) == list(contract.names)
    windows = meta["window"]
    assert windows["train"][1] <= windows["valid"][0] <= windows["valid"][1] <= windows["test"][0]
    assert (
        meta["metrics"]["test"]["roc_auc"] == demo_home.training["test_auc"]
        or abs(meta["metrics"]["test"]["roc_auc"] - demo_home.training["test_auc"]) < 1e-4
    )
    assert {"xgboost", "feast", "bentoml"} <= set(meta["versions"])


def test_model_carries_calibration_bands_lineage_report_and_profile(demo_home):
    from pathlib import Path

    import bentoml

    from monitoring.profile import read_profile

    model = registry.load(demo_home.training["model_tag"])
    meta = model.metadata
    assert meta["calibration"]["method"] in ("none", "isotonic", "platt")
    bands = meta["decision_bands"]
    assert 0 <= bands["approve_below"] <= bands["decline_at"] <= 1
    assert len(meta["feature_definitions_hash"]) == 16
    assert meta["code_version"]
    assert meta["tuning"]["trials"] >= 1
    variants = {v["feature_service"]: v for v in meta["feature_variants"]}
    assert MODEL_FEATURE_SERVICE in variants and len(variants) >= 2
    assert sum(v["best_by_validation"] for v in variants.values()) == 1
    stored = Path(bentoml.models.get(demo_home.training["model_tag"]).path)
    report = json.loads((stored / "report.json").read_text())
    assert report["models"][f"candidate {demo_home.training['model_tag']}"]["roc_auc"] == (
        pytest.approx(meta["metrics"]["test"]["roc_auc"])
    )
    assert any(name.startswith("baseline") for name in report["models"])
    assert Path(demo_home.training["report"]).exists()
    profile = read_profile(stored / meta["reference_profile"]).to_pandas()
    assert set(model.contract.names) <= set(profile.index)
