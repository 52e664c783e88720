"""Observability survives restarts: a second `bentoml serve` on the same home, one that fails to
bind and one that runs beside the first, leaves the first server's /metrics whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from creditflow.bento.metrics_dir import METRICS_FOLDER
from creditflow.config import environment
from creditflow.ingestion.offline import newest_applications

TARGET = "creditflow.bento.service:CreditScorer"  # as `make demo` serves it
BENTOML = str(Path(sys.executable).parent / "bentoml")


def _metrics(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def _assert_ours_reported(url: str) -> None:
    text = _metrics(url)
    assert "creditflow_prediction_log_dropped_total" in text  # from the prediction log
    assert "creditflow_decisions_total{" in text  # from the worker, after a /predict
    assert 'creditflow_request_seconds_count{endpoint="predict"}' in text


def test_a_second_start_on_the_home_leaves_the_first_servers_metrics(demo_home, serving,
                                                                      tmp_path):  # fmt: skip
    env = {**os.environ, **environment(demo_home.settings)}
    application = newest_applications(demo_home.settings, 1)[0]
    metrics_root = demo_home.settings.bentoml_home / METRICS_FOLDER
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with serving(TARGET, env, tmp_path / "first") as (_, url):
        assert httpx.post(f"{url}/predict", json=application, timeout=10).status_code == 200
        _assert_ours_reported(url)

        # A start that cannot bind: the first server's port is taken.
        port = url.rsplit(":", 1)[1]
        failed = subprocess.run(
            [BENTOML, "serve", TARGET, "--host", "127.0.0.1", "--port", port],
            cwd=tmp_path / "second", env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert failed.returncode != 0, failed.stdout[-2000:] + failed.stderr[-2000:]
        _assert_ours_reported(url)

        # A second server on the same home, beside the first.
        with serving(TARGET, env, tmp_path / "second") as (_, second_url):
            _assert_ours_reported(url)
            assert httpx.post(f"{second_url}/predict", json=application, timeout=10).is_success
            _assert_ours_reported(second_url)
            assert len([p for p in metrics_root.iterdir() if p.is_dir()]) == 2
        _assert_ours_reported(url)  # after the second stopped too
        assert httpx.post(f"{url}/predict", json=application, timeout=10).status_code == 200
        _assert_ours_reported(url)
    # Each server's directory goes with it.
    assert not [p for p in metrics_root.iterdir() if p.is_dir()]
