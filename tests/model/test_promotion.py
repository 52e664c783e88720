"""Champion / challenger: a worse challenger is refused, --force and rollback are logged."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from creditflow.model import stages
from creditflow.training import promotion


@pytest.fixture(scope="module")
def weak_challenger(application_only_model) -> str:
    return application_only_model


def test_the_first_model_became_champion(demo_home):
    assert stages.champion_tag(demo_home.settings) == demo_home.training["model_tag"]


def test_a_worse_challenger_is_refused_with_the_reason(demo_home, weak_challenger):
    champion = stages.champion_tag(demo_home.settings)
    outcome = promotion.promote(weak_challenger, settings=demo_home.settings)
    assert outcome["promoted"] is False
    assert any("does not beat the champion" in reason for reason in outcome["reasons"])
    assert stages.champion_tag(demo_home.settings) == champion
    refused = stages.events(demo_home.settings)[0]
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
    original = stages.champion_tag(demo_home.settings)
    forced = promotion.promote(weak_challenger, force=True, settings=demo_home.settings)
    assert forced["promoted"] and forced["reasons"]
    event = stages.events(demo_home.settings)[0]
    assert (event["action"], event["forced"]) == ("promoted", True)
    assert event["reason"].startswith("forced despite")
    now = stages.stages(demo_home.settings)
    assert (now[weak_challenger], now[original]) == ("champion", "retired")

    restored = stages.rollback(demo_home.settings)
    assert restored == {"champion": original, "retired": weak_challenger}
    assert stages.champion_tag(demo_home.settings) == original
    listed = {m["tag"]: m["stage"] for m in stages.list_models(demo_home.settings)}
    assert listed[original] == "champion" and listed[weak_challenger] == "retired"


def test_rollback_without_a_previous_champion_fails_clearly(demo_home):
    # The demo champion was the first one: after the rollback above it replaced nobody.
    with pytest.raises(stages.StageError, match="nothing to roll back|replaced no"):
        stages.rollback(demo_home.settings)


def test_a_champion_without_bureau_features_serves_every_path(
    demo_home, weak_challenger, tmp_path, serving
):
    """Any model the registry holds can serve: a champion on the application fields alone (no
    ``bankruptcies``) answers /predict and /predict_batch (over HTTP from `bentoml serve`, and
    the service's in-process Scorer) and score-batch, without the rule it cannot apply, which
    training recorded as not applicable."""
    import os

    import httpx

    from creditflow.batch.score import score_batch
    from creditflow.bento.scoring import Scorer
    from creditflow.config import environment
    from creditflow.ingestion.offline import newest_applications
    from creditflow.model import registry
    from creditflow.store.features import get_store

    settings = demo_home.settings
    rules = registry.load(weak_challenger).metadata["rules"]
    assert "bankruptcies" in rules["not_applicable"]["HARD_DECLINE_BANKRUPTCIES"]
    assert "HARD_DECLINE_BANKRUPTCIES" not in rules["applicable"]
    original = stages.champion_tag(settings)
    promotion.promote(weak_challenger, force=True, settings=settings)
    try:
        champion = registry.load(stages.require_champion(settings))  # as the service loads it
        assert champion.tag == weak_challenger
        scorer = Scorer(champion, get_store(settings))
        applications = newest_applications(settings, 40)
        single = scorer.score(applications[:1])  # /predict
        batch = scorer.score(applications)  # /predict_batch
        assert single[0].decision == batch[0].decision
        assert {s.decision for s in batch} <= {"approve", "review", "decline"}
        assert not any("HARD_DECLINE_BANKRUPTCIES" in s.rules_fired for s in batch)

        source = tmp_path / "applications.csv"
        pd.DataFrame(applications).to_csv(source, index=False)
        summary = score_batch(str(source), tmp_path / "scored.parquet", settings=settings)
        assert (summary["model_tag"], summary["scored"]) == (weak_challenger, len(applications))
        scored = pd.read_parquet(tmp_path / "scored.parquet")
        assert scored["decision"].tolist() == [s.decision for s in batch]

        env = {**os.environ, **environment(settings)}
        target = "creditflow.bento.service:CreditScorer"  # serves the champion of the moment
        with serving(target, env, tmp_path) as (_, url):
            one = httpx.post(f"{url}/predict", json=applications[0], timeout=10)
            assert one.status_code == 200, one.text
            assert one.json()["model_tag"] == weak_challenger
            assert one.json()["decision"] == batch[0].decision
            many = httpx.post(f"{url}/predict_batch", json={"applications": applications[:20]},
                              timeout=30)  # fmt: skip
            assert many.status_code == 200, many.text
            assert [a["decision"] for a in many.json()] == [s.decision for s in batch[:20]]
            assert not any("HARD_DECLINE_BANKRUPTCIES" in a["rules_fired"] for a in many.json())
    finally:
        stages.rollback(settings)
    assert stages.champion_tag(settings) == original


def _shadow_traffic(settings, champion: str, candidate: str, good_shadow: bool) -> list[str]:
    """800 answered requests with outcomes: the champion's answers follow the outcome, the
    shadow's answers follow it too (``good_shadow``) or are noise. Returns the rows' ids."""
    import numpy as np
    import sqlalchemy as sa

    from creditflow import clock
    from creditflow.contract import APPLICATIONS, LOANS
    from creditflow.db import get_engine
    from creditflow.feedback.logged_predictions import prediction_row, write_predictions
    from creditflow.ingestion.offline import read_table
    from creditflow.tables import labels

    rng = np.random.default_rng(1)
    loans = read_table(settings, LOANS).dropna(subset=["loan_status"]).sample(800, random_state=1)
    y = loans["loan_status"].to_numpy(dtype=int)
    signal = np.clip(0.15 + 0.5 * y + rng.normal(0, 0.15, len(y)), 0.001, 0.999)
    noise = rng.uniform(0.001, 0.999, len(y))
    at = clock.now() - pd.Timedelta(days=10)
    served, shadowed = [], []
    for i, loan in enumerate(loans.to_dict("records")):
        application = {k: (v.item() if hasattr(v, "item") else v)
                       for k, v in loan.items() if k in APPLICATIONS.names}  # fmt: skip
        row = prediction_row(settings, application, at, model_tag=champion,
                             default_probability=float(signal[i]))  # fmt: skip
        row.update(role="champion", request_id=row["prediction_id"])
        answer = float(signal[i] if good_shadow else noise[i])
        twin = prediction_row(settings, application, at, model_tag=candidate,
                              default_probability=answer)  # fmt: skip
        twin.update(role="shadow", request_id=row["prediction_id"])
        served.append(row)
        shadowed.append(twin)
    engine = get_engine(settings)
    ids = write_predictions(engine, served + shadowed)
    with engine.begin() as conn:
        conn.execute(sa.insert(labels), [
            {"prediction_id": r["prediction_id"], "outcome": int(o), "source": "test",
             "outcome_at": at + pd.Timedelta(days=1), "received_at": at + pd.Timedelta(days=2)}
            for r, o in zip(served, y, strict=True)
        ])  # fmt: skip
    return ids


def _forget(settings, ids: list[str]) -> None:
    import sqlalchemy as sa

    from creditflow.db import get_engine
    from creditflow.tables import labels, predictions

    with get_engine(settings).begin() as conn:
        conn.execute(sa.delete(labels).where(labels.c.prediction_id.in_(ids)))
        conn.execute(sa.delete(predictions).where(predictions.c.prediction_id.in_(ids)))


def test_the_gate_vetoes_what_a_candidate_got_wrong_in_shadow(demo_home, application_only_model):
    """Offline the demo model beats the weaker application-only champion; scored in shadow on
    live requests whose outcomes arrived, its answers were noise: refused for that reason. With
    answers as good as the champion's there, it is promoted."""
    settings = demo_home.settings
    candidate, weak = demo_home.training["model_tag"], application_only_model
    promotion.promote(weak, force=True, settings=settings)
    ids = _shadow_traffic(settings, weak, candidate, good_shadow=False)
    try:
        refused = promotion.promote(candidate, settings=settings)
        assert refused["promoted"] is False
        assert refused["shadow"]["used"] is True and refused["shadow"]["rows"] == 800
        assert refused["interval"]["low"] > 0  # offline it is better
        assert any(r.startswith("on live traffic in shadow (800 labelled requests) it is worse")
                   for r in refused["reasons"]), refused["reasons"]  # fmt: skip
        assert stages.champion_tag(settings) == weak
        _forget(settings, ids)
        ids = _shadow_traffic(settings, weak, candidate, good_shadow=True)
        promoted = promotion.promote(candidate, settings=settings)
        assert promoted["promoted"] is True, promoted["reasons"]
        assert promoted["shadow"]["used"] is True and not promoted["shadow"]["reasons"]
    finally:
        _forget(settings, ids)
        if stages.champion_tag(settings) != candidate:  # the session's demo champion back
            promotion.promote(candidate, force=True, settings=settings)
    assert stages.champion_tag(settings) == candidate
