"""Each server's Prometheus multiprocess directory is its own (bento/metrics_dir.py): a start
neither empties a running server's directory nor leaves its own behind."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from creditflow.bento.metrics_dir import METRICS_FOLDER, own_metrics_dir

# What `bentoml serve` does once it has imported the service: BentoML prepares its directory.
START = """
import sys
from pathlib import Path
from creditflow.bento.metrics_dir import own_metrics_dir
from bentoml.serving import ensure_prometheus_dir
own_metrics_dir(Path(sys.argv[1]))
directory = Path(ensure_prometheus_dir())
(directory / "counter_1.db").write_bytes(b"x")
print(directory)
"""


def _start(bentoml_home: Path, **env: str) -> Path:
    result = subprocess.run([sys.executable, "-c", START, str(bentoml_home)],
                            capture_output=True, text=True, env={**os.environ, **env},
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


def test_a_start_leaves_a_running_servers_directory_and_takes_its_own_away(tmp_path):
    root = tmp_path / METRICS_FOLDER
    root.mkdir()
    running = root / "1-running"  # a server still running: its lock is held
    running.mkdir()
    (running / "counter_2.db").write_bytes(b"y")
    with (root / "1-running.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        gone = root / "2-killed"  # a server killed: its lock is free
        gone.mkdir()
        (root / "2-killed.lock").touch()

        directory = _start(tmp_path)

        assert directory.parent == root
        assert directory != running
        assert (running / "counter_2.db").read_bytes() == b"y"
        assert not gone.exists()
        assert not (root / "2-killed.lock").exists()
        # Its own went when it exited.
        assert not directory.exists()
        assert not directory.with_suffix(".lock").exists()
        assert sorted(p.name for p in root.iterdir()) == ["1-running", "1-running.lock"]


def test_a_worker_keeps_its_servers_directory(tmp_path, monkeypatch):
    server = tmp_path / METRICS_FOLDER / "1-server"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(server))
    assert own_metrics_dir(tmp_path) is None
    assert not (tmp_path / METRICS_FOLDER).exists()


def test_a_knob_that_no_longer_takes_the_directory_is_refused_with_a_warning(
    tmp_path, monkeypatch, caplog
):
    """The self-check of the BentoML internal: if setting the directory stops working (a BentoML
    change), the server keeps BentoML's own directory, says so, and leaves nothing behind."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    knob = BentoMLContainer.prometheus_multiproc_dir
    before = knob.get()
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(type(knob), "set", lambda self, value: None)  # the change: ignored
    assert own_metrics_dir(tmp_path) is None
    assert knob.get() == before
    assert "did not take the metrics directory" in caplog.text
    assert not [p for p in (tmp_path / METRICS_FOLDER).iterdir() if not p.name.startswith(".")]
