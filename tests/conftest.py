"""Shared fixtures: one real demo home per test session, built the way a user builds it.

BentoML fixes its store location the first time it is used in a process, so the session's
home is chosen here, at import time, before any test module imports BentoML.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

SESSION_HOME = Path(tempfile.mkdtemp(prefix="creditflow-test-"))
os.environ["CREDITFLOW_HOME"] = str(SESSION_HOME)
os.environ["CREDITFLOW_PROFILE"] = "embedded"
os.environ.pop("CREDITFLOW_DATABASE_URL", None)

from creditflow.config import (  # noqa: E402
    FEATURE_REPO,
    Settings,
    environment,
    export_environment,
    get_settings,
)

export_environment()


def run_feast(settings: Settings, *args: str) -> str:
    """The real `feast` CLI, in the feature repo, with the given home's environment."""
    env = {**os.environ, **environment(settings)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "feast"), *args],
        cwd=FEATURE_REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"feast {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Settings:
    """A fresh CREDITFLOW_HOME for one test."""
    monkeypatch.setenv("CREDITFLOW_HOME", str(tmp_path / "home"))
    return get_settings()


@pytest.fixture(scope="session")
def feast_cli():
    """`feast_cli(settings, *args)` runs the real feast CLI against a home."""
    return run_feast


def _same_value(a, b) -> bool:
    a_missing = a is None or (isinstance(a, float) and math.isnan(a))
    b_missing = b is None or (isinstance(b, float) and math.isnan(b))
    if a_missing or b_missing:
        return a_missing and b_missing
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-12)


@pytest.fixture(scope="session")
def feature_mismatches():
    """``feature_mismatches(ours, theirs, names)``: (name, row, ours, theirs) of every value of
    two column mappings that differ (missing equals missing; numbers to 1e-12)."""

    def mismatches(ours, theirs, names) -> list:
        return [(name, row, x, y) for name in names
                for row, (x, y) in enumerate(zip(ours[name], theirs[name], strict=True))
                if not _same_value(x, y)]  # fmt: skip

    return mismatches


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _serving(target: str, env: dict[str, str], folder: Path) -> Iterator[tuple]:
    """`bentoml serve TARGET` (a bento tag or ``module:Class``) on a free local port, from
    ``folder``, until ``/readyz`` answers 200: yields (process, url); stopped after."""
    import httpx

    port = _free_port()
    log = (folder / "serve.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "bentoml"), "serve", target, "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, Path(log.name).read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the service did not become ready:\n" + Path(log.name).read_text()[-3000:])
        yield server, url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def serving():
    """``with serving(target, env, folder) as (process, url)``: a real `bentoml serve`."""
    return _serving


@pytest.fixture(scope="session")
def demo_database(demo_home):
    """``demo_database(folder) -> url``: a copy of the demo home's database (its champion and
    models) for one module's server, without the service statistics and monitoring runs that
    other tests' servers and runs left there, so what the module counts is its own."""
    import sqlite3
    from contextlib import closing

    def copy(folder: Path) -> str:
        target_file = folder / "creditflow.db"
        source = sqlite3.connect(demo_home.settings.home / "creditflow.db")
        with closing(source), closing(sqlite3.connect(target_file)) as target:
            source.backup(target)
            for table in ("service_stats", "monitoring_results", "monitoring_runs"):
                target.execute(f"delete from {table}")
            target.commit()
        return f"sqlite:///{target_file}"

    return copy


@pytest.fixture(scope="session")
def served_env(demo_home):
    """``served_env(database, **variables)``: the environment of a server on the demo home with
    its own database (``CREDITFLOW_<NAME>`` for each variable) and a fast prediction log."""

    def env(database: str, **variables: object) -> dict[str, str]:
        return {
            **os.environ,
            **environment(demo_home.settings),
            "CREDITFLOW_DATABASE_URL": database,
            "CREDITFLOW_PREDICTION_LOG_INTERVAL_S": "0.1",
            **{f"CREDITFLOW_{name.upper()}": str(value) for name, value in variables.items()},
        }

    return env


PG_ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"  # the machine's PostgreSQL


@contextmanager
def _throwaway_postgres() -> Iterator[str]:
    import sqlalchemy as sa

    name = f"creditflow_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


@pytest.fixture(scope="session")
def throwaway_postgres():
    """``with throwaway_postgres() as url``: a PostgreSQL database of its own, dropped after."""
    return _throwaway_postgres


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def sql_engine(request, tmp_path):
    """An empty database of each kind we support: a SQLite file (the embedded default) and a
    throwaway PostgreSQL database (the production profile's)."""
    import sqlalchemy as sa

    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'test.db'}" if request.param == "sqlite"
               else stack.enter_context(_throwaway_postgres()))  # fmt: skip
        engine = sa.create_engine(url)
        stack.callback(engine.dispose)
        yield engine


@dataclass
class DemoHome:
    settings: Settings
    materialized_at: datetime
    training: dict  # the summary `creditflow train --json` prints
    ingested: dict  # table -> the summary `creditflow ingest --json` prints


@pytest.fixture(scope="session")
def demo_home() -> DemoHome:
    """The default demo world, ingested, registered, materialized and trained on."""
    from creditflow.demo_world.generator import generate_world, write_world
    from creditflow.ingestion.ingest import ingest
    from creditflow.ingestion.readers import read_files
    from creditflow.training.pipeline import train
    from creditflow.training.promotion import promote

    # Built in the session's home whatever the test that first asks for it has set (a module's
    # own home, say): code below that reads the environment (BentoML's store, the registry's
    # export_environment) must see this home.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CREDITFLOW_HOME", str(SESSION_HOME))
        env.setenv("CREDITFLOW_PROFILE", "embedded")
        env.delenv("CREDITFLOW_DATABASE_URL", raising=False)
        settings = get_settings()
        for key, value in environment(settings).items():
            env.setenv(key, value)
        raw = write_world(generate_world(), settings.raw_dir)
        ingested = {table: ingest(table, read_files(p), settings) for table, p in raw.items()}
        run_feast(settings, "apply")
        materialized_at = datetime.now(UTC).replace(microsecond=0)
        run_feast(settings, "materialize-incremental",
                  materialized_at.strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
        summary = train(settings=settings, trials=4, timeout_s=30, quiet=True)
        promote(summary["model_tag"], settings=settings)  # the first model becomes champion
    return DemoHome(settings, materialized_at, summary, ingested)


@pytest.fixture(scope="session")
def application_only_model(demo_home) -> str:
    """A candidate trained on the application fields only (another FeatureService: no bureau,
    no zipcode data), weaker than the demo champion."""
    from creditflow.config import MODEL_FEATURE_SERVICE
    from creditflow.training.pipeline import train

    summary = train(f"{MODEL_FEATURE_SERVICE}_application_only", demo_home.settings, trials=0,
                    variants=False, quiet=True)  # fmt: skip
    assert summary["test_auc"] < demo_home.training["test_auc"]
    return summary["model_tag"]


# Test lanes. `make test` runs everything; `make test-fast` runs `-m "not integration"`: unit
# tests that need no PostgreSQL, Redis, demo home (a trained model) or server. A test is marked
# here, from what it uses, so that no one has to remember to; `@pytest.mark.integration` marks
# one by hand. item.fixturenames holds every fixture a test uses, through other fixtures too.
INTEGRATION_FIXTURES = {
    "demo_home",  # generates, ingests, materializes and trains: minutes
    "throwaway_postgres",  # the machine's PostgreSQL
    "feast_cli",  # a home of its own built with the real feast CLI: tens of seconds a module
}
INTEGRATION_MODULES = {
    Path(__file__).parent / "service" / "test_http.py",  # builds a bento, starts `bentoml serve`
    Path(__file__).parent / "service" / "test_production_profile.py",  # PostgreSQL and Redis
}
# A test whose own code names the machine's PostgreSQL or Redis connects to it.
SERVICE_ADDRESSES = ("127.0.0.1:5432", "127.0.0.1:6379")
# (sql_engine's postgresql parameter carries the marker itself.)


def _names_a_service(item) -> bool:
    try:
        source = inspect.getsource(item.function)
    except (AttributeError, OSError, TypeError):
        return False
    return any(address in source for address in SERVICE_ADDRESSES)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if (INTEGRATION_FIXTURES & set(item.fixturenames) or item.path in INTEGRATION_MODULES
                or _names_a_service(item)):  # fmt: skip
            item.add_marker(pytest.mark.integration)
