"""Readiness: the model is loaded and the online store answers."""

import shutil

import pytest

from creditflow.bento.scoring import Scorer
from creditflow.config import get_settings
from creditflow.model import registry
from creditflow.store.features import get_store


def test_ready_with_a_working_store(demo_home):
    scorer = Scorer(registry.load(demo_home.training["model_tag"]), get_store(demo_home.settings))
    assert scorer.store_reachable() is True


def test_not_ready_when_the_online_store_cannot_be_opened(demo_home, tmp_path, monkeypatch):
    model = registry.load(demo_home.training["model_tag"])
    for key in ("CREDITFLOW_HOME", "BENTOML_HOME", "FEAST_FS_YAML_FILE_PATH"):
        monkeypatch.setenv(key, "")
    monkeypatch.setenv("CREDITFLOW_HOME", str(tmp_path / "broken-home"))
    broken = get_settings()
    broken.feast_dir.mkdir(parents=True)
    shutil.copy(demo_home.settings.feast_dir / "registry.db", broken.feast_dir / "registry.db")
    (broken.feast_dir / "online.db").mkdir()  # SQLite cannot open a folder
    scorer = Scorer(model, get_store(broken))
    assert scorer.store_reachable() is False
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises, scoring fails
        scorer.online_features([{"dob_ssn": "19800101_0001", "zipcode": 1}])
