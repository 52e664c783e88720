"""The lifecycle simulation shows each scenario's declared outcome (a short run of the real loop).

Two runs of ``creditflow simulate``, each in a fresh home and a process of its own
(BentoML fixes its store the first time a process uses it): an upstream incident
(``income_units``) followed by a concept drift (``rate_regime``), and a control run. Small
volumes, fixed seeds, and scenarios strong enough that the verdicts do not hang on noise: the
income incident halves no figure by chance, and the regime change inverts the old model's
ranking (true AUC about 0.2-0.3 against 0.8).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # minutes: the whole loop, twice

LABEL_DELAY = 5
# Outcomes arrive LABEL_DELAY days late: the regime starts after the income incident (days
# 2-11) has left the monitor's window, and leaves the loop days to retrain and recover.
DRIFTS = ("income_units@2", "rate_regime@16")
SMALL = ["--per-day", "600", "--label-delay", str(LABEL_DELAY), "--history-loans", "8000",
         "--seed", "0", "--json"]  # fmt: skip


def simulate(home: Path, *args: str) -> dict:
    """One run; its JSON summary with the report's days and retraining runs."""
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "creditflow"),
            "simulate",
            "--home",
            str(home),
            *SMALL,
            *args,
        ],
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (line,) = done.stdout.strip().splitlines()  # --json: one line, whatever Feast prints
    summary = json.loads(line)
    report = json.loads(Path(summary["report_json"]).read_text())
    return {**summary, "days_": report["days"], "retrains_": report["retrains"]}


@pytest.fixture(scope="module")
def drifted(tmp_path_factory) -> dict:
    drifts = [arg for drift in DRIFTS for arg in ("--drift", drift)]
    return simulate(tmp_path_factory.mktemp("drifted") / "home", "--days", "33", *drifts)


@pytest.fixture(scope="module")
def control(tmp_path_factory) -> dict:
    # A scheduled retrain mid-run: a new champion must not make the monitor cry wolf either.
    home = tmp_path_factory.mktemp("control") / "home"
    return simulate(home, "--days", "24", "--retrain-every", "12")


def headline(run: dict, scenario: str) -> dict:
    return next(row for row in run["headlines"]["drifts"] if row["scenario"] == scenario)


def test_income_units_is_flagged_within_two_days_and_never_trained_on(drifted):
    row = headline(drifted, "income_units")
    assert row["met"], row
    assert row["days_to_alert"] <= 2
    alerted = next(d for d in drifted["days_"] if d["day"] == row["first_alert_day"])
    assert any(a["subject"] == "person_income" for a in alerted["monitor"]["alerts"])
    # Retraining was asked for and refused, saying why; no model learned from the incident.
    assert row["retrains_refused"] >= 1 and row["promotions_on_broken_data"] == 0
    refused = [r for r in drifted["retrains_"] if r["outcome"] == "refused"]
    assert all("flagged the new data as broken" in r["reasons"][0] for r in refused)


def test_rate_regime_is_seen_in_outcomes_then_retrained_promoted_and_recovered(drifted):
    row = headline(drifted, "rate_regime")
    assert row["met"], row
    # Only outcomes reveal it: no accuracy alert before the first of them arrives.
    assert LABEL_DELAY <= row["days_to_alert"] <= LABEL_DELAY + 3
    assert row["true_auc_worst"] < row["true_auc_before"] - 0.2  # the old model failed
    assert row["days_alert_to_promotion"] is not None
    promoted = [r["day"] for r in drifted["retrains_"] if r["outcome"] == "promoted"]
    assert any(day >= row["day"] + row["days_to_alert"] for day in promoted)
    # Recovered: the day's true AUC back near its level before the drift, under a new model.
    recovered = next(
        d for d in drifted["days_"] if d["day"] == row["day"] + row["days_to_recovery"]
    )
    assert recovered["model_tag"] != drifted["first_model"]["model_tag"]
    assert drifted["expected_outcomes_met"]


def test_the_control_run_raises_no_alert(control):
    assert control["false_alarms"] == 0
    assert [d["day"] for d in control["days_"] if d["monitor"]["alerts"]] == []
    assert any(r["trigger"] == "schedule" for r in control["retrains_"])
