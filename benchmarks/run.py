"""`make bench`: speed targets, measured side by side in one run, printed and saved as JSON.

Timings on a shared machine are noisy; each figure is reported with its target and the ratio
(>= 1.0 means the target is met). Nothing here is a test: tests never assert on time.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from creditflow.config import get_settings

app = typer.Typer(add_completion=False)


def bench_generate(loans: int, folder: Path) -> dict:
    """Demo world generation + parquet write; target: 1M loans in under 60 s."""
    from creditflow.demo_world.generator import generate_world, write_world

    start = time.perf_counter()
    write_world(generate_world(loans, seed=0), folder)
    seconds = time.perf_counter() - start
    budget = 60.0 * loans / 1_000_000
    return {
        "name": f"generate {loans:,} loans",
        "value": round(seconds, 2),
        "unit": "s",
        "target": f"<= {budget:g} s",
        "ratio": round(budget / seconds, 2),
    }


def bench_ingest(folder: Path) -> dict:
    """`creditflow ingest` of the loans table: read, validate, write, log; >= 200k rows/s."""
    from creditflow.ingestion.ingest import ingest
    from creditflow.ingestion.readers import read_source

    settings = get_settings().model_copy(update={"home": folder / "home"})
    start = time.perf_counter()
    summary = ingest("loans", read_source(str(folder / "loans.parquet")), settings)
    seconds = time.perf_counter() - start
    rate = summary["rows_in"] / seconds
    return {
        "name": f"ingest {summary['rows_in']:,} loans (validate + write)",
        "value": round(rate),
        "unit": "rows/s",
        "target": ">= 200,000 rows/s",
        "ratio": round(rate / 200_000, 2),
    }


def bench_training(loans: int, folder: Path) -> list[dict]:
    """Training wall time on a world of ``loans`` loans: the point-in-time dataset build, the
    fit without tuning, and tuning (default budget) plus the fit. No target: a trend to watch."""
    import os
    import subprocess
    import sys

    from creditflow.config import FEATURE_REPO, export_environment
    from creditflow.demo_world.generator import generate_world, write_world
    from creditflow.ingestion.ingest import ingest
    from creditflow.ingestion.readers import read_files
    from creditflow.training.dataset import build_training_set, time_split
    from creditflow.training.model import fit
    from creditflow.training.tune import tune

    settings = get_settings().model_copy(update={"home": folder / f"train-{loans}"})
    raw = write_world(generate_world(loans, seed=0), settings.raw_dir)
    for table, path in raw.items():
        ingest(table, read_files(path), settings)
    saved = dict(os.environ)
    env = {**os.environ, **export_environment(settings)}
    subprocess.run([str(Path(sys.executable).parent / "feast"), "apply"], cwd=FEATURE_REPO,
                   env=env, check=True, capture_output=True)  # fmt: skip
    try:
        start = time.perf_counter()
        data = build_training_set("credit_model_v1", settings)
        built = time.perf_counter() - start
        train, valid, _ = time_split(data.frame, 0.2, 0.1)
        start = time.perf_counter()
        fit(train, valid, data.contract)
        fitted = time.perf_counter() - start
        start = time.perf_counter()
        best = tune(train, valid, data.contract)["best_params"]
        fit(train, valid, data.contract, params=best)
        tuned = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(saved)
    rows = []
    for what, seconds in (("dataset build (PIT join)", built), ("fit, no tuning", fitted),
                          ("tuning + fit", tuned)):  # fmt: skip
        rows.append({"name": f"train {loans:,} loans: {what}", "value": round(seconds, 1),
                     "unit": "s", "target": "-", "ratio": None})  # fmt: skip
    return rows


@app.command()
def main(
    loans: Annotated[int, typer.Option(help="Loans for the generation benchmark.")] = 1_000_000,
    training: Annotated[
        str, typer.Option(help="World sizes for training times, comma-separated ('' to skip).")
    ] = "30000,300000,1000000",
    out: Annotated[Path | None, typer.Option(help="JSON output; default: reports/.")] = None,
    scoring: Annotated[
        bool, typer.Option(help="In-process /predict path and score-batch (no HTTP).")
    ] = True,
    batch_rows: Annotated[int, typer.Option(help="Applications for score-batch.")] = 1_000_000,
    serving: Annotated[bool, typer.Option(help="Serving load benchmark (HTTP).")] = True,
    serving_seconds: Annotated[float, typer.Option(help="Measured seconds per load run.")] = 10.0,
    monitoring: Annotated[
        bool,
        typer.Option(help="/predict with the service's monitoring on vs off, and /feedback."),
    ] = True,
    monitor_rows: Annotated[
        int, typer.Option(help="Logged predictions for `creditflow monitor` (0: skip).")
    ] = 1_000_000,
    labels: Annotated[
        int, typer.Option(help="Labels for `creditflow feedback import` (0: skip).")
    ] = 1_000_000,
    public_clients: Annotated[
        str,
        typer.Option(
            help="Client counts for /predict served with CREDITFLOW_FAST_PATHS=0, "
            "comma-separated ('' to skip)."
        ),
    ] = "1,8",
    home: Annotated[
        Path | None,
        typer.Option(
            help="Home to serve from (reused if it has a champion, else built there); "
            "default: a fresh 30,000-loan demo home in a scratch folder."
        ),
    ] = None,
) -> None:
    """Run every benchmark, print the table, save the JSON."""
    from benchmarks.scoring import run_in_home
    from benchmarks.serving import bench_serving, demo_home

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        results = [bench_generate(loans, folder), bench_ingest(folder)]
        for size in [int(x) for x in training.split(",") if x.strip()]:
            results += bench_training(size, folder)
        if scoring or serving:
            served = demo_home(home or folder / "serving")
        if scoring:
            results += run_in_home(served, batch_rows)
        if serving:
            public = tuple(int(x) for x in public_clients.split(",") if x.strip())
            results += bench_serving(served, serving_seconds, public_paths=public,
                                     monitoring=monitoring)  # fmt: skip
        if labels:
            from benchmarks.feedback_import import run as bench_feedback_import

            results.append(bench_feedback_import(labels, folder / "feedback"))
        if monitor_rows:
            from benchmarks.monitor import run as bench_monitor

            results.append(bench_monitor(monitor_rows, home or folder / "serving"))
    # cpu %: of one core (2 here), for the server, the load generator and everything else.
    columns = ("benchmark", "value", "p50 / p99 ms", "cpu % srv/gen/other", "target", "ratio")
    table = Table(*columns, title="ratio >= 1 meets the target")
    for r in results:
        ratio = "-" if r["ratio"] is None else str(r["ratio"])
        value = f"{r['value']} {r['unit']}"
        if r.get("errors"):
            value += f" [{r['errors']} ERRORS]"
        latency = f"{r['p50_ms']} / {r['p99_ms']}" if r.get("p50_ms") is not None else ""
        cpu = "/".join(str(v) for v in r["cpu_pct"].values()) if r.get("cpu_pct") else ""
        table.add_row(r["name"], value, latency, cpu, r["target"], ratio)
    # Piped or redirected (as under make), rich would wrap at 80 columns.
    Console(width=None if sys.stdout.isatty() else 140).print(table)
    for r in results:
        if r.get("first_error"):
            print(f"ERRORS in {r['name']}: {r['errors']} in the measured window; "
                  f"first: {r['first_error']}")  # fmt: skip
    path = out or get_settings().reports_dir / "bench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    met = all(r["ratio"] >= 1 for r in results if r["ratio"] is not None)
    print(json.dumps({"ok": met, "saved": str(path)}))


if __name__ == "__main__":
    app()
