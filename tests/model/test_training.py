"""The model trained on the demo world, and what it records about itself."""

import json
from pathlib import Path

import pandas as pd
import pytest

from creditflow.config import MODEL_FEATURE_SERVICE
from creditflow.contract import LOANS, violations
from creditflow.model import registry
from creditflow.store.features import contract_of, get_store
from creditflow.training.pipeline import MIN_VARIANT_VALID_GAIN, choose_feature_service


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
    chosen = demo_home.training["feature_service"]  # by validation, among the contract's variants
    contract = contract_of(get_store(demo_home.settings), chosen)
    assert meta["feature_service"] == chosen == meta["feature_selection"]["feature_service"]
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

    from creditflow.monitoring.profile import reference_profile

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
    reference = pd.read_parquet(stored / meta["reference_data"])
    assert list(reference.columns) == list(model.contract.names)
    assert len(reference) == meta["rows"]["train"]
    profile = reference_profile(stored).to_pandas()
    assert set(model.contract.names) <= set(profile.index)
    assert profile.loc["loan_amnt", "counts/n"] == meta["rows"]["train"]


def test_the_feature_service_is_chosen_on_the_validation_window(demo_home):
    meta = registry.load(demo_home.training["model_tag"]).metadata
    selection, rows = meta["feature_selection"], meta["feature_variants"]
    assert selection["how"] == "validation" and selection["why"]
    chosen = [row["feature_service"] for row in rows if row["chosen"]]
    assert chosen == [selection["feature_service"]]
    assert all("test_auc" not in row for row in rows)  # the test window judges the final model only
    best = max(rows, key=lambda row: row["valid_auc"])
    contract = next(row for row in rows if row["feature_service"] == MODEL_FEATURE_SERVICE)
    expected = (best if best["valid_auc"] >= contract["valid_auc"] + MIN_VARIANT_VALID_GAIN
                else contract)  # fmt: skip
    assert selection["feature_service"] == expected["feature_service"]
    assert demo_home.training["feature_selection"] == selection


def test_a_variant_replaces_the_contract_only_by_a_clear_validation_win():
    def rows(**valid_auc):
        return [{"feature_service": name, "valid_auc": auc} for name, auc in valid_auc.items()]

    assert choose_feature_service(rows(base=0.80, wide=0.82, narrow=0.79), "base")[0] == "wide"
    close = rows(base=0.80, wide=0.80 + MIN_VARIANT_VALID_GAIN / 2)
    chosen, why = choose_feature_service(close, "base")
    assert chosen == "base" and "wide leads by" in why
    assert choose_feature_service(rows(base=0.85, wide=0.82), "base")[0] == "base"


def test_training_records_missing_shares_and_the_rules_that_apply(demo_home):
    meta = registry.load(demo_home.training["model_tag"]).metadata
    shares = meta["training_missing_share"]
    assert set(shares) == set(meta["feature_names"])
    assert shares["person_income"] == 0.0 and 0 < shares["bankruptcies"] < 0.2  # thin files
    assert demo_home.training["warnings"] == meta["warnings"] == []
    assert meta["rules"]["missing_watched"] == meta["feature_names"]  # the model had them all
    assert meta["rules"]["not_applicable"] == {}
    assert demo_home.training["training_missing_share"] == shares
    report = json.loads(Path(demo_home.training["report"]).with_suffix(".json").read_text())
    assert report["details"]["missing in the training rows (share, by feature)"] == shares
    assert report["details"]["feature service"] == meta["feature_selection"]
