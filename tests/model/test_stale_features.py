"""Missing is judged against what the model learned: a world whose bureau snapshots are older
than the credit_history view's TTL for most applicants, trained and scored through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from creditflow.config import MODEL_FEATURE_SERVICE, Settings
from creditflow.contract import CREDIT_HISTORY

BIN = Path(sys.executable).parent
STALE_SHARE = 0.75  # applicants whose only bureau snapshot is older than the 180-day TTL
BUREAU = [c.name for c in CREDIT_HISTORY.columns
          if c.kind != "timestamp" and c.name not in CREDIT_HISTORY.key]  # fmt: skip


def _creditflow(home: Path, *args: str) -> dict:
    """The real CLI in a home of its own (only the home set, as a user sets it); its JSON."""
    env = {"CREDITFLOW_HOME": str(home), "CREDITFLOW_PROFILE": "embedded", "PATH": str(BIN)}
    result = subprocess.run([str(BIN / "creditflow"), *args, "--json"], capture_output=True,
                            text=True, env=env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "stderr": result.stderr}


def _stale_world(end: datetime) -> dict[str, pd.DataFrame]:
    """The demo world, but most applicants' bureau file is one snapshot from long before any
    of their loans (loans fall in the year before ``end``): stale for every loan, and now."""
    from creditflow.demo_world.generator import generate_world

    world = generate_world(3000, seed=3, end=end, dirty_share=0.0)
    credit = world["credit_history"]
    people = credit["dob_ssn"].unique()
    rng = np.random.default_rng(3)
    stale = rng.choice(people, int(len(people) * STALE_SHARE), replace=False)
    is_stale = credit["dob_ssn"].isin(stale)
    old = credit[is_stale].sort_values("event_timestamp").drop_duplicates("dob_ssn").copy()
    old["event_timestamp"] = old["created_timestamp"] = pd.Timestamp(end) - pd.Timedelta(days=600)
    world["credit_history"] = pd.concat([credit[~is_stale], old], ignore_index=True)
    return world


@pytest.fixture(scope="module")
def stale_home(tmp_path_factory, feast_cli) -> tuple[Path, dict]:
    """A home with the stale world, ingested, applied, materialized; and `creditflow train`'s
    summary for the contract's FeatureService."""
    from creditflow.demo_world.generator import write_world

    home = tmp_path_factory.mktemp("stale-home")
    settings = Settings(home=home, profile="embedded")
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    raw = write_world(_stale_world(end), home / "incoming")
    for table in ("zipcodes", "credit_history", "loans"):
        _creditflow(home, "ingest", str(raw[table]), "--table", table)
    feast_cli(settings, "apply")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    feast_cli(settings, "materialize-incremental", now)
    trained = _creditflow(home, "train", "--feature-service", MODEL_FEATURE_SERVICE,
                          "--trials", "0")  # fmt: skip
    return home, trained


def test_training_reports_features_missing_in_most_rows(stale_home):
    _, trained = stale_home
    shares = trained["training_missing_share"]
    assert set(BUREAU) <= set(shares)
    for name in BUREAU:
        assert shares[name] > 0.5, (name, shares[name])
    assert shares["person_income"] == 0.0 and shares["state"] < 0.5
    (warning,) = trained["warnings"]
    assert "bankruptcies" in warning and "TTL" in warning and "person_income" not in warning
    assert warning in trained["stderr"]  # logged, besides the summary
    assert trained["feature_selection"]["how"] == "pinned"


def test_applications_without_fresh_bureau_data_are_approved_again(stale_home, tmp_path):
    """The model learned without bureau data for most loans: its absence now is no reason to
    send an application to review (which approved nothing)."""
    from creditflow.ingestion.offline import newest_applications

    home, trained = stale_home
    _creditflow(home, "promote", trained["model_tag"])
    applications = newest_applications(Settings(home=home, profile="embedded"), 400)
    source = tmp_path / "applications.csv"
    pd.DataFrame(applications).to_csv(source, index=False)
    output = tmp_path / "scored.parquet"
    summary = _creditflow(home, "score-batch", str(source), str(output))
    assert summary["scored"] == len(applications)
    scored = pd.read_parquet(output)
    no_bureau = scored["missing_features"].map(lambda names: "bankruptcies" in names)
    assert 0.5 < no_bureau.mean() < 1  # most applicants' bureau file is stale now too
    assert (scored.loc[no_bureau, "decision"] == "approve").sum() > 0
    fired = scored["rules_fired"].map(list)
    assert not any("REVIEW_MISSING_FEATURES" in rules for rules in fired[no_bureau])
