"""Champion / challenger: a worse challenger is refused, --force and rollback are logged."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from creditflow.config import MODEL_FEATURE_SERVICE
from training import promotion
from training.pipeline import train


@pytest.fixture(scope="module")
def weak_challenger(demo_home) -> str:
    """A candidate trained on the application fields only (no bureau, no zipcode data)."""
    summary = train(f"{MODEL_FEATURE_SERVICE}_application_only", demo_home.settings, trials=0,
                    variants=False, quiet=True)  # fmt: skip
    assert summary["test_auc"] < demo_home.training["test_auc"]
    return summary["model_tag"]


def test_the_first_model_became_champion(demo_home):
    assert promotion.champion_tag(demo_home.settings) == demo_home.training["model_tag"]


def test_a_worse_challenger_is_refused_with_the_reason(demo_home, weak_challenger):
    champion = promotion.champion_tag(demo_home.settings)
    outcome = promotion.promote(weak_challenger, settings=demo_home.settings)
    assert outcome["promoted"] is False
    assert any("does not beat the champion" in reason for reason in outcome["reasons"])
    assert promotion.champion_tag(demo_home.settings) == champion
    refused = promotion.events(demo_home.settings)[0]
    assert (refused["tag"], refused["action"]) == (weak_challenger, "refused")


def test_the_cli_exits_3_when_refused(demo_home, weak_challenger):
    # Only the home, as a user sets it: the CLI must find the BentoML store by itself.
    env = {
        "CREDITFLOW_HOME": str(demo_home.settings.home),
        "PATH": str(Path(sys.executable).parent),
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "creditflow"), "promote", weak_challenger, "--json"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["promoted"] is False


def test_force_promotes_and_is_logged_then_rollback_restores(demo_home, weak_challenger):
    original = promotion.champion_tag(demo_home.settings)
    forced = promotion.promote(weak_challenger, force=True, settings=demo_home.settings)
    assert forced["promoted"] and forced["reasons"]
    event = promotion.events(demo_home.settings)[0]
    assert (event["action"], event["forced"]) == ("promoted", True)
    assert event["reason"].startswith("forced despite")
    stages = promotion.stages(demo_home.settings)
    assert (stages[weak_challenger], stages[original]) == ("champion", "retired")

    restored = promotion.rollback(demo_home.settings)
    assert restored == {"champion": original, "retired": weak_challenger}
    assert promotion.champion_tag(demo_home.settings) == original
    listed = {m["tag"]: m["stage"] for m in promotion.list_models(demo_home.settings)}
    assert listed[original] == "champion" and listed[weak_challenger] == "retired"


def test_rollback_without_a_previous_champion_fails_clearly(demo_home):
    # The demo champion was the first one: after the rollback above it replaced nobody.
    with pytest.raises(promotion.PromotionError, match="nothing to roll back|replaced no"):
        promotion.rollback(demo_home.settings)
