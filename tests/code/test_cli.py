"""The `creditflow` command keeps its promises: every command takes --json, and a failure is a
non-zero exit with ``{"ok": false, ...}`` (a refused promotion: exit 3, ``"refused": true``).

The failing invocations run the real command in a subprocess on an empty home of their own
(a command exports its home into the environment, which must not leak into this session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from creditflow import cli
from creditflow.ingestion import ledger
from creditflow.migrate import upgrade_engine

CREDITFLOW = str(Path(sys.executable).parent / "creditflow")
UNOPENABLE_DB = "sqlite:////nonexistent-creditflow-dir/creditflow.db"


def _commands(group, prefix: str = "") -> dict:
    found = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group: `creditflow db ...`
            found |= _commands(command, f"{prefix}{name} ")
        else:
            found[prefix + name] = command
    return found


COMMANDS = _commands(typer.main.get_command(cli.app))


def test_every_command_takes_json():
    assert len(COMMANDS) >= 13
    lacking = [name for name, command in COMMANDS.items()
               if not any("--json" in p.opts for p in command.params)]  # fmt: skip
    assert not lacking


# One failing invocation per command (run from tmp_path, on an empty home).
FAILURES = {
    "generate": (["--loans", "100", "--out", "/dev/null/raw"], {}),
    "train": ([], {}),  # no data
    "promote": ([], {}),  # no candidate
    "rollback": ([], {}),  # no champion
    "models": ([], {"CREDITFLOW_DATABASE_URL": UNOPENABLE_DB}),
    "ingest": (["missing.csv", "--table", "loans"], {}),
    "push": (["missing.csv"], {}),
    "quarantine": (["--table", "nosuch"], {}),
    "score-batch": (["missing.csv", "out.parquet"], {}),  # no champion
    "sample-request": ([], {}),  # no loans
    "env": ([], {"CREDITFLOW_PROFILE": "nosuch"}),
    "db upgrade": ([], {"CREDITFLOW_DATABASE_URL": UNOPENABLE_DB}),
    "db current": ([], {"CREDITFLOW_DATABASE_URL": UNOPENABLE_DB}),
    "monitor": ([], {"CREDITFLOW_DATABASE_URL": UNOPENABLE_DB}),
    "feedback import": (["missing.csv"], {}),
    "forget": (["not-a-key"], {}),  # refused: not YYYYMMDD_NNNN
    "retrain": (["--history"], {"CREDITFLOW_DATABASE_URL": UNOPENABLE_DB}),
    "shadow": (["nosuch:model"], {}),  # unknown model
    "simulate": (["--days", "1", "--home", "/etc"], {}),  # refused: not a new or empty folder
}


def _creditflow(args: list[str], home: Path, env: dict | None = None, **kwargs):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("BENTOML_HOME", "FEAST_FS_YAML_FILE_PATH")}  # fmt: skip
    environ |= {"CREDITFLOW_HOME": str(home), "CREDITFLOW_PROFILE": "embedded", **(env or {})}
    return subprocess.run([CREDITFLOW, *args], env=environ, capture_output=True, text=True,
                          timeout=300, **kwargs)  # fmt: skip


def test_every_command_has_a_failure_case():
    assert set(FAILURES) == set(COMMANDS)


# These import the whole training or scoring stack in a subprocess: seconds each, so they run
# in the full suite, not in the fast lane.
SLOW = {"train", "promote", "score-batch"}


@pytest.mark.parametrize(
    "command",
    [pytest.param(c, marks=pytest.mark.integration) if c in SLOW else c for c in sorted(FAILURES)],
)
def test_a_failure_exits_non_zero_with_ok_false(command, tmp_path):
    args, env = FAILURES[command]
    result = _creditflow([*command.split(), *args, "--json"], tmp_path / "home", env,
                         cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    summary = json.loads(lines[0])
    assert summary["ok"] is False and summary["error"]


def test_quarantine_limit_is_at_least_zero(tmp_path):
    """A negative limit is a usage error (exit 2), not "every row"."""
    result = _creditflow(["quarantine", "--limit", "-1", "--json"], tmp_path / "home")
    assert result.returncode == 2 and not result.stdout


def test_env_alone_puts_this_installation_first_on_path(tmp_path):
    """`eval "$(creditflow env)"` is enough: no virtualenv to activate first."""
    script = f'eval "$({CREDITFLOW} env)" && command -v creditflow feast bentoml'
    home = {"CREDITFLOW_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin",
            "CREDITFLOW_PROFILE": "embedded"}  # fmt: skip
    found = subprocess.run(["bash", "-c", script], env=home, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert found.returncode == 0, found.stderr
    scripts = Path(sys.executable).parent
    assert found.stdout.split() == [str(scripts / n) for n in ("creditflow", "feast", "bentoml")]


# In-process: commands whose work is replaced, in this session's own home.
runner = CliRunner()


def test_a_refused_promotion_is_not_ok_and_exits_3(monkeypatch):
    from creditflow.training import promotion

    def refuse(tag, force, min_gain):
        return {"candidate": "credit_risk:new", "champion_before": "credit_risk:old",
                "champion": "credit_risk:old", "promoted": False, "forced": False,
                "reasons": ["ROC AUC gain 0.0001 < 0.002"]}  # fmt: skip

    monkeypatch.setattr(promotion, "promote", refuse)
    result = runner.invoke(cli.app, ["promote", "--json"])
    assert result.exit_code == cli.ExitCode.REFUSED
    summary = json.loads(result.stdout)
    assert summary["ok"] is False and summary["refused"] is True
    assert summary["reasons"] == ["ROC AUC gain 0.0001 < 0.002"]
    text = runner.invoke(cli.app, ["promote"])
    assert text.exit_code == cli.ExitCode.REFUSED and "refused: ROC AUC gain" in text.stdout


LONG_TAG = "credit_risk:" + "x7" * 20


@pytest.mark.parametrize("columns", [40, 60, 80, 250])
def test_models_never_cut_a_tag(monkeypatch, columns):
    """Rich shortens cells to fit the terminal (`credit_risk:x7x7…`): a tag must stay whole."""
    from creditflow.model import stages

    row = {"tag": LONG_TAG, "stage": "champion", "feature_service": "credit_model_v1",
           "created": datetime(2026, 12, 1, tzinfo=UTC).isoformat(), "test_auc": 0.81234,
           "test_brier": 0.1, "test_ece": None, "rows": 1000}  # fmt: skip
    monkeypatch.setattr(stages, "list_models", lambda: [row, {**row, "tag": "credit_risk:b"}])
    result = runner.invoke(cli.app, ["models"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    assert LONG_TAG in result.stdout and "credit_risk:b" in result.stdout
    assert "0.8123" in result.stdout and "champion" in result.stdout
    assert "…" not in result.stdout
    assert ("┃ tag" in result.stdout) is (columns == 250)  # a table when it fits
    summary = json.loads(runner.invoke(cli.app, ["models", "--json"]).stdout)
    assert summary["ok"] is True and summary["models"][0]["tag"] == LONG_TAG


def test_quarantined_rows_validates_table_and_limit(sql_engine):
    upgrade_engine(sql_engine)
    summary = {"table": "loans", "batch_id": "b1", "source": "test", "rows_in": 5, "late": 0,
               "accepted": 0, "quarantined": 5, "reasons": {}, "warnings": {}}  # fmt: skip
    rows = [(i, "loan_amnt: below 0", json.dumps({"loan_amnt": -i})) for i in range(5)]
    ledger.record(sql_engine, summary, datetime.now(UTC), rows)
    assert len(ledger.quarantined_rows(sql_engine, "loans", limit=2)) == 2
    everything = ledger.quarantined_rows(sql_engine, "loans", limit=0)
    assert [r["row_number"] for r in everything] == list(range(5))
    assert ledger.quarantined_rows(sql_engine, "zipcodes", limit=0) == []
    with pytest.raises(ValueError, match="unknown table 'nosuch'"):
        ledger.quarantined_rows(sql_engine, "nosuch")
    with pytest.raises(ValueError, match="limit"):
        ledger.quarantined_rows(sql_engine, limit=-1)


def test_quarantine_json_is_one_line_with_the_rows(monkeypatch):
    from creditflow import db

    rows = [{"id": 1, "table_name": "loans", "payload": {"loan_amnt": -1}}]
    monkeypatch.setattr(db, "get_engine", lambda: None)
    monkeypatch.setattr(ledger, "quarantined_rows", lambda engine, table, batch, limit: rows)
    result = runner.invoke(cli.app, ["quarantine", "--json", "--limit", "0"])
    assert result.exit_code == 0
    (line,) = result.stdout.splitlines()
    assert json.loads(line) == {"ok": True, "table": None, "batch_id": None, "limit": 0,
                                "count": 1, "rows": rows}  # fmt: skip
    text = runner.invoke(cli.app, ["quarantine"])
    assert [json.loads(line) for line in text.stdout.splitlines()] == rows


def test_quarantine_says_when_there_is_nothing(tmp_path):
    home = tmp_path / "home"
    result = _creditflow(["quarantine", "--table", "labels"], home)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "no quarantined rows of table labels"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CREDITFLOW_MAX_BATCH", "0"), ("CREDITFLOW_MAX_BODY_BYTES", "-1"),
     ("CREDITFLOW_PREDICTION_LOG_INTERVAL_S", "nan"), ("CREDITFLOW_MAX_EVENT_AGE_DAYS", "0"),
     ("CREDITFLOW_FUTURE_TOLERANCE_MINUTES", "-5"), ("CREDITFLOW_MAX_BATCH", "1e99"),
     ("CREDITFLOW_EXPLORATION_SHARE", "1.5"), ("CREDITFLOW_CHAMPION_CHECK_S", "-1"),
     ("CREDITFLOW_SERVICE_STATS_INTERVAL_S", "0"), ("CREDITFLOW_RETENTION_DAYS", "0")],
)  # fmt: skip
def test_a_setting_out_of_range_is_refused_naming_it(monkeypatch, variable, value):
    from pydantic import ValidationError

    from creditflow.config import get_settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.removeprefix("CREDITFLOW_").lower()):
        get_settings()


def test_the_readme_lists_every_exit_code_and_no_other():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("| code | meaning |", 1)[1].split("\n\n", 1)[0]
    codes = {
        int(line.split("|")[1]) for line in table.splitlines() if line[:3].strip("| ").isdigit()
    }
    assert codes == {int(code) for code in cli.ExitCode}


@pytest.mark.parametrize(
    ("drift", "named"),
    [("nosuch@3", "unknown scenario 'nosuch'"), ("rate_regime", "SCENARIO@DAY"),
     ("rate_regime@x", "SCENARIO@DAY"), ("rate_regime@500", "within 1..120"),
     ("rate_regime@-1", "SCENARIO@DAY"), ("rate_regime@" + "9" * 40, "within 1..120"),
     ("@3", "unknown scenario ''")],
)  # fmt: skip
def test_simulate_names_a_bad_drift_as_a_usage_error(drift, named, tmp_path):
    result = _creditflow(["simulate", "--drift", drift, "--home", str(tmp_path / "sim")],
                         tmp_path / "home")  # fmt: skip
    assert result.returncode == 2
    assert named in result.stderr and "--drift" in result.stderr
    assert not (tmp_path / "sim").exists()  # refused before anything was made
