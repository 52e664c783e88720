"""`creditflow simulate`: the loop on a fresh home, with progress, then one report."""

from __future__ import annotations

import tempfile
from pathlib import Path

from creditflow.demo_world.scenarios import Drift, parse_drift
from creditflow.simulation import report
from creditflow.simulation.loop import Options, prepare_home, run


def parse_drifts(texts: list[str], days: int) -> list[Drift]:
    """``SCENARIO@DAY`` strings as drifts in day order; ValueError naming a bad one (an unknown
    scenario, no day, a day outside 1..``days``)."""
    drifts = sorted((parse_drift(text) for text in texts), key=lambda d: d.day)
    bad = [f"{d.scenario.name}@{d.day}" for d in drifts if not 1 <= d.day <= days]
    if bad:
        raise ValueError(f"--drift {bad}: the day must be within 1..{days} (--days)")
    return drifts


def simulate(
    days: int = 120,
    per_day: int = 1000,
    drift: list[str] | None = None,
    label_delay: int = 30,
    seed: int = 0,
    home: Path | None = None,
    quiet: bool = False,
    **options,
) -> dict:
    """Run the lifecycle for ``days`` simulated days; the JSON summary (report paths in it).

    ``drift``: ``SCENARIO@DAY`` strings (demo_world/scenarios.py). ``home``: a new or empty
    folder (default: a new temporary one). Other keywords: :class:`loop.Options` fields.
    """
    if days < 1 or per_day < 1 or label_delay < 1:
        raise ValueError(
            f"days, per_day and label_delay must be >= 1: {days}, {per_day}, {label_delay}"
        )
    drifts = parse_drifts(drift or [], days)
    opts = Options(
        days=days, per_day=per_day, drifts=drifts, label_delay=label_delay, seed=seed, **options
    )
    home = Path(home) if home else Path(tempfile.mkdtemp(prefix="creditflow-simulation-"))
    settings = prepare_home(home, opts)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=quiet, transient=True) as bar:
        task = bar.add_task("setup: generate, ingest, feast apply, train", total=days)

        def progress(day: int, record: dict) -> None:
            bar.update(
                task,
                completed=day,
                description=(
                    f"day {day}: {record['monitor']['status']}, model {record['model_tag']}"
                ),
            )

        result = run(settings, opts, progress)
    heads = report.headlines(result, drifts)
    summary = {
        "ok": True,
        "home": str(home),
        "days": days,
        "per_day": per_day,
        "seed": seed,
        "label_delay": label_delay,
        "performance_window_days": settings.performance_window_days,
        "drifts": [f"{d.scenario.name}@{d.day}" for d in drifts],
        "first_model": result["first_model"],
        "alert_days": len(report._alert_days(result["days"])),
        "monitor_failures": [
            {"day": d["day"], "error": d["monitor"]["error"]}
            for d in result["days"]
            if d["monitor"]["status"] == "failed"
        ],
        "retrains": [
            {k: r.get(k) for k in ("day", "trigger", "outcome", "challenger_tag")}
            for r in result["retrains"]
        ],
        "models": sorted({d["model_tag"] for d in result["days"]}),
        "headlines": heads,
        "false_alarms": heads["false_alarms"],
        # A control run (no --drift) expects no alert at all.
        "expected_outcomes_met": all(r["met"] for r in heads["drifts"])
        and not heads["false_alarms"],
        "exploration": report.exploration(result),
        "rejected": sum(d["rejected"] for d in result["days"]),
        "timings_s": {k: round(v, 1) for k, v in result["timings"].items()},
    }
    paths = report.write(result, summary, drifts, settings.reports_dir / "simulation")
    summary["report"] = str(paths["html"])
    summary["report_json"] = str(paths["json"])
    return summary
