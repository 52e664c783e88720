"""The running service follows the registry: a promotion and a rollback under load, a broken
model refused, a shadow model scored and logged but never returned, and the exploration policy
giving /predict and the in-process Scorer the same answer for the same prediction id.

The server and the CLI share a copy of the demo home's database. The promoted model is a
candidate on another FeatureService; the broken and shadow models are the champion's booster
stored again under a new tag (a new model as far as the registry goes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import bentoml
import httpx
import pytest
import sqlalchemy as sa

from creditflow.bento.scoring import Scorer
from creditflow.config import Settings
from creditflow.ingestion.offline import newest_applications
from creditflow.model import registry
from creditflow.model.stages import SHADOW, register_candidate, set_stage
from creditflow.postprocessing.exploration import EXPLORATION, drawn
from creditflow.store.features import get_store
from creditflow.tables import predictions

TARGET = "creditflow.bento.service:CreditScorer"
TOKEN = f"token-{uuid.uuid4().hex}"
SHARE = 0.3
CLIENTS = 4


@pytest.fixture(scope="module")
def database(demo_database, tmp_path_factory) -> str:
    return demo_database(tmp_path_factory.mktemp("swap"))


@pytest.fixture(scope="module")
def settings(demo_home, database) -> Settings:
    return Settings(home=demo_home.settings.home, database_url=database)


def _copy_of(tag: str, settings: Settings) -> str:
    """The model stored again under a new tag, registered as a candidate in our database."""
    model = registry.load(tag)
    new = registry.save(model.booster, {**model.metadata, "copy_of": tag})
    register_candidate(new, settings)
    return new


@pytest.fixture(scope="module")
def env(served_env, database) -> dict[str, str]:
    return served_env(database, api_token=TOKEN, champion_check_s=0.5, exploration_share=SHARE)


@pytest.fixture(scope="module")
def server(env, tmp_path_factory, serving):
    with serving(TARGET, env, tmp_path_factory.mktemp("served")) as (_, url):
        yield url


def _cli(env: dict, *args: str) -> dict:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "creditflow"), *args, "--json"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


class Load:
    """CLIENTS threads posting /predict in a loop; each keeps its answers' (status, tag)."""

    def __init__(self, url: str, applications: list[dict]) -> None:
        self.stop = threading.Event()
        self.seen: list[list[tuple[int, str | None]]] = [[] for _ in range(CLIENTS)]
        self.threads = [threading.Thread(target=self._client, args=(url, applications, k))
                        for k in range(CLIENTS)]  # fmt: skip
        for thread in self.threads:
            thread.start()

    def _client(self, url: str, applications: list[dict], k: int) -> None:
        with httpx.Client(timeout=30) as client:
            i = k
            while not self.stop.is_set():
                r = client.post(f"{url}/predict", json=applications[i % len(applications)])
                self.seen[k].append((r.status_code, r.json().get("model_tag")))
                i += CLIENTS

    def latest(self) -> set[str | None]:
        return {seen[-1][1] for seen in self.seen if seen}

    def wait_for(self, tag: str) -> None:
        deadline = time.monotonic() + 60
        while self.latest() != {tag}:
            assert time.monotonic() < deadline, f"still answering {self.latest()}, not {tag}"
            time.sleep(0.2)
        time.sleep(0.5)  # a little traffic on the new model

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def _runs(tags: list) -> list:
    """The tags with repeats collapsed: A A B B A -> A B A."""
    return [t for i, t in enumerate(tags) if i == 0 or tags[i - 1] != t]


def test_promotion_and_rollback_under_load(server, env, settings, demo_home,
                                          application_only_model):  # fmt: skip
    """The new champion reads another FeatureService (application fields only): the worker
    loads its own reader of it beside the old model's, then swaps."""
    old = demo_home.training["model_tag"]
    new = application_only_model
    assert (
        registry.load(new).metadata["feature_service"]
        != registry.load(old).metadata["feature_service"]
    )
    register_candidate(new, settings)
    load = Load(server, newest_applications(demo_home.settings, 50))
    try:
        load.wait_for(old)
        _cli(env, "promote", new, "--force")
        load.wait_for(new)
        _cli(env, "rollback")
        load.wait_for(old)
    finally:
        load.finish()
    for seen in load.seen:
        assert {status for status, _ in seen} == {200}
        assert _runs([tag for _, tag in seen]) == [old, new, old]  # one switch per transition


def test_a_broken_model_is_refused_and_the_old_one_serves_on(server, env, settings, demo_home):
    old = demo_home.training["model_tag"]
    broken = _copy_of(old, settings)

    booster = Path(bentoml.models.get(broken).path_of(registry.BOOSTER_FILE))
    booster.write_bytes(b"not a booster")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{server}/admin/reload", json={}, timeout=60).status_code == 401
    # Named champion in the registry directly: `promote` itself would refuse to load it.
    with sa.create_engine(settings.sql_url).begin() as conn:
        set_stage(conn, old, "retired")
        set_stage(conn, broken, "champion")
    answer = httpx.post(f"{server}/admin/reload", json={}, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["champion"] == old and broken in answer.json()["refused"]
    application = newest_applications(demo_home.settings, 1)[0]
    assert httpx.post(f"{server}/predict", json=application).json()["model_tag"] == old
    metrics = httpx.get(f"{server}/metrics").text
    assert 'creditflow_model_refused_total{role="champion"}' in metrics
    with sa.create_engine(settings.sql_url).begin() as conn:  # the good champion back
        set_stage(conn, broken, "retired")
        set_stage(conn, old, "champion")


def _logged(engine: sa.Engine, request_ids: list[str], rows: int) -> list[dict]:
    deadline = time.monotonic() + 60
    query = sa.select(predictions).where(predictions.c.request_id.in_(request_ids))
    while True:
        with engine.connect() as conn:
            found = [dict(r) for r in conn.execute(query).mappings()]
        if len(found) >= rows:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {rows} rows logged"
        time.sleep(0.2)


def test_shadow_logged_never_returned_and_exploration_same_on_every_path(
    server, settings, database, demo_home
):
    champion = demo_home.training["model_tag"]
    shadow = _copy_of(champion, settings)
    with sa.create_engine(database).begin() as conn:
        set_stage(conn, shadow, SHADOW)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    reloaded = httpx.post(f"{server}/admin/reload", json={}, headers=headers, timeout=60).json()
    assert reloaded["champion"] == champion and reloaded["shadow"] == shadow, reloaded
    applications = newest_applications(demo_home.settings, 200)
    answers = [httpx.post(f"{server}/predict", json=a, timeout=30).json() for a in applications]
    assert {a["model_tag"] for a in answers} == {champion}
    ids = [a["prediction_id"] for a in answers]
    logged = _logged(sa.create_engine(database), ids, 2 * len(ids))
    by_role: dict[str, dict] = {"champion": {}, "shadow": {}}
    for row in logged:
        by_role[row["role"]][row["request_id"]] = row
    assert set(by_role["champion"]) == set(by_role["shadow"]) == set(ids)
    assert {r["model_tag"] for r in by_role["shadow"].values()} == {shadow}
    assert all(by_role["champion"][i]["prediction_id"] == i for i in ids)

    # Exploration: drawn from the id, logged, and the in-process Scorer agrees for the same ids.
    explored = [a for a in answers if a["decided_by"] == EXPLORATION]
    assert explored, "no review-band application was explored: raise SHARE or the sample"
    assert all(drawn([a["prediction_id"]], SHARE)[0] for a in explored)
    assert all(by_role["champion"][a["prediction_id"]]["explored"] for a in explored)
    scorer = Scorer(registry.load(champion), get_store(demo_home.settings), exploration_share=SHARE)
    again = scorer.score(applications, prediction_ids=ids)
    assert [s.decision for s in again] == [a["decision"] for a in answers]
    assert [s.decided_by for s in again] == [a["decided_by"] for a in answers]
