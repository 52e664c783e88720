"""`make bench`: speed targets, measured side by side in one run, printed and saved as JSON.

Timings on a shared machine are noisy; each figure is reported with its target and the ratio
(>= 1.0 means the target is met). Nothing here is a test: tests never assert on time.
"""

from __future__ import annotations

import json
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
    from ingestion.demo_world import generate_world, write_world

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
    from ingestion.ingest import ingest
    from ingestion.readers import read_source

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


@app.command()
def main(
    loans: Annotated[int, typer.Option(help="Loans for the generation benchmark.")] = 1_000_000,
    out: Annotated[Path | None, typer.Option(help="JSON output; default: reports/.")] = None,
) -> None:
    """Run every benchmark, print the table, save the JSON."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        results = [bench_generate(loans, folder), bench_ingest(folder)]
    table = Table("benchmark", "value", "target", "ratio (>=1 meets it)")
    for r in results:
        table.add_row(r["name"], f"{r['value']} {r['unit']}", r["target"], str(r["ratio"]))
    Console().print(table)
    path = out or get_settings().reports_dir / "bench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps({"ok": all(r["ratio"] >= 1 for r in results), "saved": str(path)}))


if __name__ == "__main__":
    app()
