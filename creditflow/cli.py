"""The `creditflow` command: one sub-command per pipeline stage.

Every command prints a one-line JSON summary with ``--json`` and exits with one of the codes of
:class:`ExitCode` (the README's table of exit codes is checked against it by a test): a
scheduler can tell "the job failed" (1) from "the job worked and found an alert" (4).
Heavy imports happen inside commands so that ``--help`` stays fast and the environment
(CREDITFLOW_HOME, BENTOML_HOME, the Feast profile) is set before Feast or BentoML load.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from creditflow.config import MODEL_FEATURE_SERVICE, export_environment, get_settings

# Third-party chatter (ibis and pathspec deprecations, Feast's "experimental" notice) is not for
# users. Filters alone do not hold it back: importing Feast puts "once" filters of its own first.
_CHATTER = ("On demand feature view is an experimental",)
_show_warning = warnings.showwarning


def _show_useful_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, DeprecationWarning) or str(message).startswith(_CHATTER):
        return
    _show_warning(message, category, filename, lineno, file, line)


app = typer.Typer(
    help="creditflow: credit-risk scoring on a Feast feature store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


# Settings that cannot be read (e.g. an unknown CREDITFLOW_PROFILE): kept for the command to
# report, in JSON with --json, instead of a traceback before it runs.
_SETTINGS_ERROR: list[Exception] = []


@app.callback()
def _environment() -> None:
    """Point Feast and BentoML at this home before any command imports them; keep library
    chatter out of the users' terminal."""
    warnings.showwarning = _show_useful_warning
    _SETTINGS_ERROR.clear()
    try:
        export_environment()
    except Exception as err:  # reported by the command (_run)
        _SETTINGS_ERROR.append(err)


def _as_utc(moment: datetime | None) -> datetime | None:
    """A time given on the command line without a zone is UTC."""
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


JsonFlag = Annotated[bool, typer.Option("--json", help="Print a one-line JSON summary.")]


# The base install serves and scores; a command that needs more says which extra (pyproject.toml).
_EXTRA_OF = {
    "sklearn": "training",
    "optuna": "training",
    "matplotlib": "training",
    "distributed": "training",
    "whylogs": "monitoring",
}


class ExitCode(IntEnum):
    """Every exit code of the CLI, in one place (README: "Exit codes")."""

    OK = 0  # done; `monitor`: healthy, or values to watch but no alert
    FAILED = 1  # the command itself failed (--json: "ok": false and "error")
    USAGE = 2  # a usage error: an unknown option, a value out of range (Click, on stderr)
    REFUSED = 3  # `promote`: the candidate was refused (--json: "refused": true, "reasons")
    ALERT = 4  # `monitor`: the run worked and raised at least one alert (--json: "alerts")
    BUSY = 5  # `retrain`: another run holds the lock; nothing done (--json: "busy": true)


def _run(
    as_json: bool,
    work: Callable[[], dict[str, Any]],
    describe: Callable[[dict], str],
    refused: Callable[[dict], bool] = lambda _: False,
    exit_code: Callable[[dict], ExitCode] = lambda _: ExitCode.OK,
):
    """Run a command body; report its summary as JSON or text; exit 1 on any failure,
    REFUSED when the work was done but its answer is a refusal (``refused(summary)``), and
    otherwise what ``exit_code(summary)`` says (ALERT for a monitor run that alerted)."""
    try:
        if _SETTINGS_ERROR:
            raise _SETTINGS_ERROR[0]
        summary = work()
    except Exception as err:  # every failure becomes a clear message and a non-zero exit
        message = f"{type(err).__name__}: {err}"
        missing = err.name or "" if isinstance(err, ModuleNotFoundError) else ""
        if extra := _EXTRA_OF.get(missing.partition(".")[0]):
            message += f" (this command needs the {extra} extra: pip install 'creditflow[{extra}]')"
        if as_json:
            print(json.dumps({"ok": False, "error": message}))
        else:
            typer.secho(f"error: {message}", fg="red", err=True)
        raise typer.Exit(1) from err
    no = refused(summary)
    if as_json:
        verdict = {"ok": False, "refused": True} if no else {"ok": True}
        print(json.dumps({**verdict, **summary}, default=str))
    else:
        typer.echo(describe(summary))
    if no:
        raise typer.Exit(ExitCode.REFUSED)
    if code := exit_code(summary):
        raise typer.Exit(code)


@app.command()
def generate(
    out: Annotated[
        Path | None, typer.Option(help="Folder for the parquet tables; default: the home's raw/.")
    ] = None,
    loans: Annotated[int, typer.Option(min=100, help="Number of loans.")] = 30_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    end: Annotated[
        datetime | None, typer.Option(help="End of the world (UTC); default: today 00:00.")
    ] = None,
    dirty_share: Annotated[float, typer.Option(min=0, max=0.5, help="Share of dirty loans.")] = (
        0.01
    ),
    as_json: JsonFlag = False,
) -> None:
    """Write the synthetic demo lending world (loans, zipcodes, credit history) as raw tables.

    Feed them to the feature store with `creditflow ingest`.
    """

    def work() -> dict:
        from creditflow.demo_world.generator import generate_world, write_world

        settings = get_settings()
        folder = out or settings.raw_dir
        end_utc = _as_utc(end)
        world = generate_world(loans, seed=seed, end=end_utc, dirty_share=dirty_share)
        paths = write_world(world, folder)
        return {
            "out": str(folder),
            "rows": {name: len(df) for name, df in world.items()},
            "files": {name: str(p) for name, p in paths.items()},
        }

    _run(as_json, work, lambda s: f"wrote {s['rows']} to {s['out']}")


@app.command()
def train(
    feature_service: Annotated[
        str | None,
        typer.Option(
            help="Pin the model's FeatureService (no variant comparison). Default: "
            f"{MODEL_FEATURE_SERVICE} or the declared variant that wins on the validation window."
        ),
    ] = None,
    trials: Annotated[int, typer.Option(min=0, help="Tuning trials (0: no tuning).")] = 12,
    timeout: Annotated[float, typer.Option(help="Tuning time limit, seconds.")] = 45.0,
    variants: Annotated[
        bool,
        typer.Option(
            help="Without --feature-service: compare the variants declared in feature_repo/ "
            f"and train the winner (--no-variants: {MODEL_FEATURE_SERVICE} itself)."
        ),
    ] = True,
    engine: Annotated[str, typer.Option(help="local, or dask (xgboost.dask).")] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address (tcp://host:8786); none: a LocalCluster."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Build the point-in-time training set, choose the FeatureService on the validation window
    (unless pinned), tune and train XGBoost, calibrate, choose the decision bands, write the
    evaluation report and register the model as a candidate. Warns about features missing in
    most training rows."""

    def work() -> dict:
        from creditflow.training.pipeline import train as run_training

        return run_training(
            feature_service, trials=trials, timeout_s=timeout, variants=variants,
            engine=engine, scheduler=scheduler, quiet=as_json,
        )  # fmt: skip

    def describe(s: dict) -> str:
        # The warnings were also logged (stderr); here they head the summary, not to be missed.
        warned = "".join(f"WARNING: {warning}\n" for warning in s["warnings"])
        skipped = "".join(
            f"rule {rule} not applicable: {why}\n"
            for rule, why in s["rules_not_applicable"].items()
        )
        return (
            f"{warned}feature service {s['feature_service']} ({s['feature_selection']['why']})\n"
            f"{skipped}"
            f"candidate {s['model_tag']}: test ROC AUC {s['test_auc']} (baseline "
            f"{s['baseline_test_auc']}), Brier {s['test_brier']}, ECE {s['test_ece']}, "
            f"calibration {s['calibration']}, bands {s['decision_bands']} "
            f"({s['rows']['train']:,} train / {s['rows']['test']:,} test loans)\n"
            f"report: {s['report']}\nnext: creditflow promote {s['model_tag']}"
        )

    _run(as_json, work, describe)


@app.command()
def promote(
    tag: Annotated[str | None, typer.Argument(help="Model tag; default: newest candidate.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if it does not win (logged).")
    ] = False,
    min_gain: Annotated[
        float | None, typer.Option(help="ROC AUC the candidate must gain over the champion.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a candidate the champion if it beats the current one on the most recent window
    and regresses no guardrail. Exits 3 when the candidate is refused (with --json:
    "ok": false, "refused": true and the reasons)."""

    def work() -> dict:
        from creditflow.training.promotion import MIN_AUC_GAIN
        from creditflow.training.promotion import promote as run_promote

        gain = MIN_AUC_GAIN if min_gain is None else min_gain
        return run_promote(tag, force=force, min_gain=gain)

    def describe(s: dict) -> str:
        if s["promoted"]:
            note = " (forced)" if s["forced"] and s["reasons"] else ""
            return f"{s['candidate']} is the champion{note}; before: {s['champion_before']}"
        return f"{s['candidate']} refused: " + "; ".join(s["reasons"])

    _run(as_json, work, describe, refused=lambda s: not s["promoted"])


@app.command("shadow")
def shadow_model(
    tag: Annotated[str | None, typer.Argument(help="Model tag to shadow the champion.")] = None,
    off: Annotated[bool, typer.Option("--off", help="No shadow model.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Let a candidate score live traffic beside the champion: its answers are logged (role
    "shadow", the champion answer's request id), never returned. A running service picks it up
    like a new champion."""
    if (tag is None) == (not off):
        raise typer.BadParameter("give either a model TAG or --off")

    def work() -> dict:
        from creditflow.model.stages import shadow

        return shadow(None if off else tag)

    _run(as_json, work, lambda s: f"shadow: {s['shadow'] or 'none'} (before: {s['before']})")


@app.command()
def rollback(as_json: JsonFlag = False) -> None:
    """Restore the champion that the current champion replaced."""

    def work() -> dict:
        from creditflow.model.stages import rollback as run_rollback

        return run_rollback()

    _run(as_json, work, lambda s: f"champion: {s['champion']} (retired {s['retired']})")


_MODEL_FIELDS = {"tag": "tag", "stage": "stage", "created": "created",
                 "feature_service": "feature service", "test_auc": "test AUC",
                 "test_brier": "Brier", "test_ece": "ECE"}  # fmt: skip


def _models_text(rows: list[dict]) -> str:
    """A table when it fits the terminal, else one block per model: never a cut tag (rich
    shortens or wraps cells to fit, and a tag is what people copy into `promote`)."""
    from rich.console import Console
    from rich.table import Column, Table

    if not rows:
        return "no models yet: run `creditflow train`"
    cells = [
        {k: f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k] or "-") for k in _MODEL_FIELDS}
        for r in rows
    ]
    table = Table(*(Column(label, no_wrap=True) for label in _MODEL_FIELDS.values()))
    for row in cells:
        table.add_row(*row.values())
    console = Console()
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    if natural <= console.width:
        with console.capture() as captured:
            console.print(table)
        return captured.get().rstrip("\n")
    return "\n".join(
        f"{row['tag']}\n"
        + "".join(f"  {_MODEL_FIELDS[k]:<16} {row[k]}\n" for k in row if k != "tag")
        for row in cells
    ).rstrip("\n")


@app.command()
def models(as_json: JsonFlag = False) -> None:
    """Stored models with their stage and key metrics, newest first."""

    def work() -> dict:
        from creditflow.model.stages import list_models

        return {"models": list_models()}

    _run(as_json, work, lambda s: _models_text(s["models"]))


TableOption = Annotated[
    str, typer.Option("--table", help="loans, zipcodes or credit_history.", show_default=False)
]


def _describe_ingest(s: dict) -> str:
    if s.get("already_ingested"):
        return f"batch {s['batch_id']} of {s['table']} was already ingested: nothing added"
    text = (
        f"{s['table']} batch {s['batch_id']}: {s['rows_in']:,} rows in, {s['accepted']:,} "
        f"accepted ({s['late']:,} late), {s['quarantined']:,} quarantined"
    )
    for rule, count in sorted(s["reasons"].items(), key=lambda kv: -kv[1]):
        text += f"\n  quarantined {count:,}: {rule}"
    for column, count in s["warnings"].get("outliers", {}).items():
        text += f"\n  warning: {count:,} outlier(s) in {column} (kept)"
    return text


EncodingOption = Annotated[str, typer.Option(help="Text encoding of CSV files, e.g. latin-1.")]
DateFormatOption = Annotated[
    str | None,
    typer.Option(help="strftime format of CSV times, e.g. %d/%m/%Y (default: ISO 8601 only)."),
]


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="A .parquet/.csv file, a folder, or a DB URL.")],
    table: TableOption,
    sql_table: Annotated[str | None, typer.Option(help="Table to read, with a DB URL.")] = None,
    query: Annotated[str | None, typer.Option(help="Query to read, with a DB URL.")] = None,
    materialize: Annotated[
        bool, typer.Option("--materialize", help="Update the online store afterwards.")
    ] = False,
    encoding: EncodingOption = "utf-8",
    date_format: DateFormatOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate a batch against the data contract: valid rows go to the offline store,
    the others to quarantine with their reasons. The same batch twice adds nothing."""

    def work() -> dict:
        from creditflow.ingestion.ingest import ingest as run_ingest
        from creditflow.ingestion.readers import read_source

        batch = read_source(source, sql_table, query, encoding=encoding, date_format=date_format)
        return run_ingest(table, batch, materialize=materialize)

    _run(as_json, work, _describe_ingest)


@app.command()
def push(
    source: Annotated[str, typer.Argument(help="Fresh credit-history records: file or folder.")],
    encoding: EncodingOption = "utf-8",
    date_format: DateFormatOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Stream fresh credit-history records: validated like `ingest`, then written to the
    offline store and straight to the online store (visible to the next /predict)."""

    def work() -> dict:
        from creditflow.ingestion.ingest import ingest as run_ingest
        from creditflow.ingestion.readers import read_source

        batch = read_source(source, encoding=encoding, date_format=date_format)
        return run_ingest("credit_history", batch, push_online=True)

    _run(as_json, work, _describe_ingest)


@app.command("quarantine")
def show_quarantine(
    table: Annotated[
        str | None,
        typer.Option(help="Only this table: loans, zipcodes, credit_history or labels."),
    ] = None,
    batch: Annotated[str | None, typer.Option(help="Only this batch id.")] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many rows (0: all).")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Print quarantined rows, oldest first: the row as received and the rules it broke. One
    JSON line per row; with --json, one JSON line with them all ("rows") instead."""

    def work() -> dict:
        from creditflow.db import get_engine
        from creditflow.ingestion.ledger import quarantined_rows

        rows = quarantined_rows(get_engine(), table, batch, limit)
        return {"table": table, "batch_id": batch, "limit": limit, "count": len(rows),
                "rows": rows}  # fmt: skip

    def describe(s: dict) -> str:
        if not s["rows"]:
            where = f" of table {table}" if table else ""
            return f"no quarantined rows{where}" + (f" in batch {batch}" if batch else "")
        return "\n".join(json.dumps(r, default=str) for r in s["rows"])

    _run(as_json, work, describe)


@app.command("score-batch")
def score_batch(
    source: Annotated[str, typer.Argument(help="Applications: .parquet/.csv, folder, DB URL.")],
    output: Annotated[Path, typer.Argument(help="Parquet file to write.")],
    at: Annotated[
        datetime | None,
        typer.Option(
            help="Score as of this time (UTC), for inputs without event_timestamp; default: now."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model tag; default: the champion.")] = None,
    encoding: EncodingOption = "utf-8",
    date_format: DateFormatOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Score a table of applications with point-in-time features from the offline store, the
    same model and the same post-processing as /predict; write them to parquet."""
    from rich.console import Console

    def work() -> dict:
        from creditflow.batch.score import score_batch as run

        when = _as_utc(at)
        with Console(stderr=True).status("scoring", spinner="dots") as status:
            step = (lambda _: None) if as_json else (lambda text: status.update(text))
            return run(source, output, at=when, model_tag=model, step=step, encoding=encoding,
                       date_format=date_format)  # fmt: skip

    def describe(s: dict) -> str:
        return (
            f"{s['scored']:,} of {s['rows_in']:,} applications scored with {s['model_tag']} "
            f"({s['invalid']:,} invalid, see the error column) in {s['seconds']} s "
            f"({s['rows_per_s']:,} rows/s): {s['decisions']} -> {s['output']}"
        )

    _run(as_json, work, describe)


@app.command("sample-request")
def sample_request(
    curl: Annotated[bool, typer.Option("--curl", help="Print a curl command.")] = False,
    feedback: Annotated[
        bool,
        typer.Option(
            "--feedback",
            help="Print shell lines that score the applicant, then report its outcome to "
            "/feedback with $CREDITFLOW_API_TOKEN.",
        ),
    ] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Service port, for --curl.")] = 3000,
    as_json: JsonFlag = False,
) -> None:
    """Print a /predict request body for a real applicant of the data (the newest valid loan).
    With --json: {"ok": true, "body": ..., "url": ..., "curl": ..., "feedback": ...} on one
    line."""

    def work() -> dict:
        from creditflow.ingestion.offline import newest_applications

        newest = newest_applications(get_settings(), 1)
        if not newest:
            raise LookupError("no loans ingested yet: run `make demo` or `creditflow ingest`")
        url = f"http://127.0.0.1:{port}/predict"
        command = (f"curl -s -X POST {url} -H 'Content-Type: application/json' "
                   f"-d {shlex.quote(json.dumps(newest[0]))}")  # fmt: skip
        # The answer's prediction id, then its outcome once logged (the log writes every
        # CREDITFLOW_PREDICTION_LOG_INTERVAL_S: a second is plenty).
        label = (
            '{"prediction_id": "\'"$id"\'", "outcome": 0, "outcome_at": "\'"$(date -u +%FT%TZ)"\'"}'
        )
        lines = [
            f"id=$({command} | python3 -c 'import json,sys; print(json.load(sys.stdin)"
            '["prediction_id"])\') && sleep 1',
            f"curl -s -X POST http://127.0.0.1:{port}/feedback "
            '-H "Authorization: Bearer $CREDITFLOW_API_TOKEN" '
            f"-H 'Content-Type: application/json' -d '{label}'",
        ]
        return {"body": newest[0], "url": url, "curl": command, "feedback": "\n".join(lines)}

    def describe(s: dict) -> str:
        return s["feedback"] if feedback else s["curl"] if curl else json.dumps(s["body"])

    _run(as_json, work, describe)


def _duration(text: str) -> timedelta:
    from creditflow.clock import parse_duration

    try:
        return parse_duration(text)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err


AsOfOption = Annotated[
    datetime | None,
    typer.Option(
        "--as-of",
        help="Run as of this time (UTC): only rows recorded and labels received by then. "
        "Default: now.",
    ),
]


@app.command()
def monitor(
    as_of: AsOfOption = None,
    window: Annotated[
        str, typer.Option(help="How far back from --as-of to look: 7d, 24h, 90m.")
    ] = "7d",
    model: Annotated[
        str | None,
        typer.Option(
            help="Only this model tag (default: the champion and every model that "
            "served in the window)."
        ),  # fmt: skip
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check the served traffic of a window: input, score and decision drift against the
    training reference (PSI), data quality, training-serving skew, latency and errors, and
    accuracy once outcomes arrive (estimated before). Writes an HTML report and stores every
    result in our database. Exits 4 when there is an alert, 0 when healthy, 1 on failure."""
    span = _duration(window)

    def work() -> dict:
        from creditflow.monitoring.run import monitor as run_monitor

        return run_monitor(get_settings(), as_of=_as_utc(as_of), window=span, model_tag=model)

    def describe(s: dict) -> str:
        span = f"the {s['window']['days']:g} days from {s['window']['start']}"
        lines = [f"{s['status'].upper()}: {len(s['alerts'])} alert(s) as of {s['as_of']} "
                 f"(window: {span})"]  # fmt: skip
        for a in s["alerts"]:
            value = "" if a.get("value") is None else f" = {a['value']:.4g}"
            limit = "" if a.get("threshold") is None else f" (threshold {a['threshold']:.4g})"
            lines.append(f"  {a['section']}: {a['metric']} of {a['subject']}{value}{limit}"
                         f" [{a.get('model') or 'service'}]")  # fmt: skip
        lines.append(f"report: {s['report']}")
        return "\n".join(lines)

    _run(as_json, work, describe,
         exit_code=lambda s: ExitCode.ALERT if s["status"] == "alert" else ExitCode.OK)  # fmt: skip


@app.command()
def retrain(
    as_of: AsOfOption = None,
    build: Annotated[
        bool,
        typer.Option(
            "--build", help="Run `bentoml build` for a promoted champion (after `make wheel`)."
        ),  # fmt: skip
    ] = False,
    show_history: Annotated[
        bool, typer.Option("--history", help="List the runs instead of running one.")
    ] = False,
    limit: Annotated[int, typer.Option(min=0, help="With --history: at most (0: all).")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """The scheduled job: collect what arrived since the last run (batches, outcomes), refuse
    data that monitoring flagged as broken, train a challenger, and promote it only when the
    gate says it is better (paired bootstrap of the AUC on recent data neither model trained
    on; calibration and segment guardrails). Every run is recorded (--history). Exits 5 when
    another run holds the lock."""

    def work() -> dict:
        from creditflow.db import get_engine
        from creditflow.retraining.job import history
        from creditflow.retraining.job import retrain as run_retrain

        if show_history:
            return {"runs": history(get_engine(), limit)}
        return run_retrain(as_of=_as_utc(as_of), build=build)

    def describe(s: dict) -> str:
        if "runs" in s:
            return (
                "\n".join(
                    f"{r['id']:>4} {r['as_of']} {r['outcome']:<9} champion {r.get('champion_tag')} "
                    f"challenger {r.get('challenger_tag')} "
                    f"({(r.get('decision') or {}).get('duration_s', '?')} s)"
                    for r in s["runs"]
                )
                or "no retrain runs yet"
            )
        if s.get("busy"):
            return s.get("message", "another retrain run holds the lock")
        reasons = "; ".join(s.get("reasons") or [])
        return (f"{s['outcome']}: champion {s.get('champion')} (before "
                f"{s.get('champion_before')}), challenger {s.get('challenger')}"
                + (f"\n  {reasons}" if reasons else ""))  # fmt: skip

    _run(as_json, work, describe,
         exit_code=lambda s: ExitCode.BUSY if s.get("busy") else ExitCode.OK)  # fmt: skip


@app.command()
def simulate(
    days: Annotated[int, typer.Option(min=1, help="Simulated days after day 0.")] = 120,
    per_day: Annotated[int, typer.Option(min=1, help="Applications a day.")] = 1000,
    drift: Annotated[
        list[str] | None,
        typer.Option(
            help="SCENARIO@DAY, repeatable: income_units, new_category, income_shift, "
            "rate_regime or none (demo_world/scenarios.py)."
        ),
    ] = None,
    label_delay: Annotated[
        int, typer.Option(min=1, help="Days until an approved loan's outcome arrives.")
    ] = 30,
    seed: Annotated[int, typer.Option(help="The simulated world's seed.")] = 0,
    home: Annotated[
        Path | None,
        typer.Option(
            help="A new or empty folder for the simulation's home (default: a new "
            "temporary folder; never your CREDITFLOW_HOME)."
        ),  # fmt: skip
    ] = None,
    exploration_share: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of review-band applications approved to "
            "measure selection bias (default: simulation/loop.py's Options).",
        ),  # fmt: skip
    ] = None,
    history_loans: Annotated[
        int | None,
        typer.Option(
            min=100,
            help="Loans of the year before day 0, the first model's "
            "(default: simulation/loop.py's HISTORY_LOANS).",
        ),  # fmt: skip
    ] = None,
    retrain_every: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="The retraining schedule, in simulated days (default: "
            "simulation/loop.py's Options).",
        ),  # fmt: skip
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The whole loop in simulated time on a fresh home: each day applications are ingested,
    scored by the service's code and logged, outcomes of approved loans arrive as feedback
    imports, `creditflow monitor` runs, and an alert or the schedule runs `creditflow
    retrain`; a promotion reaches the scorer as it reaches a running service. Writes one HTML
    and JSON report. Exits 1 if a scenario's declared outcome was not met."""
    from creditflow.simulation.simulate import parse_drifts

    try:
        parse_drifts(drift or [], days)  # a usage error, before anything is made
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--drift") from err

    def work() -> dict:
        from creditflow.simulation.simulate import simulate as run_simulation

        given = {"history_loans": history_loans, "retrain_every": retrain_every,
                 "exploration_share": exploration_share}  # fmt: skip
        extra = {name: value for name, value in given.items() if value is not None}
        summary = run_simulation(days, per_day, drift or [], label_delay, seed, home,
                                 quiet=as_json, **extra)  # fmt: skip
        if not summary["expected_outcomes_met"]:
            summary["ok"] = False
        return summary

    def describe(s: dict) -> str:
        lines = [f"{s['days']} days x {s['per_day']} applications, drifts {s['drifts'] or 'none'}"
                 f": {s['alert_days']} alert day(s), models {', '.join(s['models'])}"]  # fmt: skip
        for row in s["headlines"]["drifts"]:
            lines.append(
                f"  {row['scenario']}@{row['day']} ({row['expect']}): alert after "
                f"{row['days_to_alert']} d, promotion {row['days_alert_to_promotion']} d "
                f"later, recovery after {row['days_to_recovery']} d: "
                + ("as expected" if row["met"] else "NOT as expected")
            )
        if s["false_alarms"] is not None:
            lines.append(f"  control run: {s['false_alarms']} false alarm day(s)")
        lines.append(f"report: {s['report']}")
        return "\n".join(lines)

    _run(as_json, work, describe,
         exit_code=lambda s: ExitCode.OK if s["ok"] else ExitCode.FAILED)  # fmt: skip


feedback_app = typer.Typer(help="Outcomes of past decisions: labels for monitoring and training.",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("import")
def feedback_import(
    source: Annotated[
        str,
        typer.Argument(
            help="Labels: .parquet/.csv file, folder, or a DB URL (with --sql-table "
            "or --query). Columns: prediction_id, outcome, outcome_at[, source]."
        ),
    ],  # fmt: skip
    sql_table: Annotated[str | None, typer.Option(help="Table to read, with a DB URL.")] = None,
    query: Annotated[str | None, typer.Option(help="Query to read, with a DB URL.")] = None,
    as_of: AsOfOption = None,
    encoding: EncodingOption = "utf-8",
    date_format: DateFormatOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Import outcomes in bulk, validated like any table of the contract: rows in = stored +
    duplicates + rejected (with reasons, in quarantine). A changed outcome is kept as a
    correction; the same one twice is stored once. --as-of: when they were received."""

    def work() -> dict:
        from creditflow import clock
        from creditflow.feedback.importer import import_labels

        with clock.frozen(_as_utc(as_of)):
            return import_labels(source, get_settings(), sql_table=sql_table, query=query,
                                 encoding=encoding, date_format=date_format)  # fmt: skip

    _run(as_json, work, _describe_labels)


def _describe_labels(s: dict) -> str:
    text = (
        f"{s['rows_in']:,} labels in: {s['stored']:,} stored ({s['corrections']:,} "
        f"corrections), {s['duplicates']:,} duplicates, {s['rejected']:,} rejected"
    )
    for reason, count in sorted(s.get("reasons", {}).items(), key=lambda kv: -kv[1]):
        text += f"\n  rejected {count:,}: {reason}"
    return text


@app.command()
def forget(
    dob_ssn: Annotated[
        str | None, typer.Argument(help="The applicant's key (YYYYMMDD_NNNN) to erase.")
    ] = None,
    expired: Annotated[
        bool,
        typer.Option(
            "--expired",
            help="Instead: delete prediction-log rows and labels "
            "older than CREDITFLOW_RETENTION_DAYS.",
        ),
    ] = False,  # fmt: skip
    as_of: AsOfOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Erase an applicant from our tables (prediction log, labels, quarantine), or apply the
    retention period (--expired); reports what was removed. The feature store's own sources
    are the data owner's, not ours: erase there too."""
    if (dob_ssn is None) == (not expired):
        raise typer.BadParameter("give either DOB_SSN or --expired")

    def work() -> dict:
        from creditflow import clock
        from creditflow.db import get_engine
        from creditflow.feedback.erasure import expire
        from creditflow.feedback.erasure import forget as run_forget

        settings = get_settings()
        with clock.frozen(_as_utc(as_of)):
            if expired:
                return expire(settings, get_engine(settings), clock.now())
            return run_forget(settings, get_engine(settings), dob_ssn)

    _run(as_json, work, lambda s: json.dumps(s, default=str))


def _path_with_venv() -> str:
    """PATH with this installation's scripts folder (creditflow, feast, bentoml) first."""
    scripts = str(Path(sys.executable).parent)
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != scripts]
    return os.pathsep.join([scripts, *rest])


@app.command()
def env(as_json: JsonFlag = False) -> None:
    """Print shell exports for the current home and profile (`eval "$(creditflow env)"`),
    and PATH with this installation's scripts folder first.

    With them, the plain `creditflow`, `feast` and `bentoml` commands are this installation's
    and use creditflow's home; no need to activate the virtualenv.
    """

    def work() -> dict:
        return {**export_environment(), "PATH": _path_with_venv()}

    def describe(s: dict) -> str:
        return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in s.items())

    _run(as_json, work, describe)


db_app = typer.Typer(help="Our own tables (creditflow/db.py) and their migrations.",
                     no_args_is_help=True)  # fmt: skip
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    as_json: JsonFlag = False,
) -> None:
    """Migrate our tables to a revision (default: the newest). Run it after installing a new
    creditflow: the service is not ready on a database that is not at head."""

    def work() -> dict:
        from creditflow.db import upgrade

        return upgrade(get_settings(), revision)

    def describe(s: dict) -> str:
        if not s["applied"]:
            return f"{s['database']}: already at {s['current']}"
        before = "tables from before migrations" if s["adopted"] else s["before"] or "empty"
        return f"{s['database']}: {before} -> {s['current']}"

    _run(as_json, work, describe)


@db_app.command("current")
def db_current(as_json: JsonFlag = False) -> None:
    """The database's migration, and whether it is the newest this creditflow knows."""

    def work() -> dict:
        from creditflow.db import get_engine
        from creditflow.migrate import status

        return status(get_engine(get_settings(), migrate=False))

    def describe(s: dict) -> str:
        behind = "" if s["at_head"] else f", behind {s['head']}: run `creditflow db upgrade`"
        return f"{s['database']}: {s['current'] or 'no migrations'}{behind}"

    _run(as_json, work, describe)


def main() -> None:  # pragma: no cover - console entry for `python -m creditflow.cli`
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
