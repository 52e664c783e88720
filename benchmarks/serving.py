"""Serving load benchmark: our /predict beside its framework floor (/noop) and Feast's own feature
server answering the same FeatureService lookup, on the same home, interleaved per concurrency so
machine noise hits all three alike. Also /predict with the service's monitoring on (the default:
service statistics, the prediction log's application and encrypted keys) beside a server with it
off, and /feedback requests/s.

Servers and the load generator each run in their own process (the load generator's CPU would
otherwise be the server's). A home needs a promoted champion and a materialized online store;
``demo_home`` builds one in a subprocess, because BentoML fixes its store (``BENTOML_HOME``) the
first time it is used in a process:

    python -m benchmarks.serving build-home FOLDER [--loans N]
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import psutil
import typer

from creditflow.config import (
    FEATURE_REPO,
    MODEL_FEATURE_SERVICE,
    Settings,
    environment,
    get_settings,
)

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH_ROWS = 100  # applications per /predict_batch call
BATCH_CONCURRENCY = 2
MONITORING_CLIENTS = 8  # /predict with monitoring on vs off, and /feedback
FEEDBACK_LABELS = 5000  # distinct predictions labelled by the /feedback run (then duplicates)
# A server with the service's monitoring off: as before issue 14 (bento/service.py).
MONITORING_OFF = {"CREDITFLOW_SERVICE_STATS": "0", "CREDITFLOW_LOG_APPLICATIONS": "0"}

app = typer.Typer(add_completion=False)


class Server(NamedTuple):
    name: str
    proc: subprocess.Popen
    log: Path


@app.callback()
def cli() -> None:
    """Helpers of the serving benchmark (`make bench` runs the benchmark itself)."""


def home_settings(home: Path) -> Settings:
    return get_settings().model_copy(update={"home": home.expanduser().resolve()})


def home_environment(settings: Settings) -> dict[str, str]:
    """os.environ plus the home's variables, without changing this process's environment."""
    return {**os.environ, **environment(settings)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_home(folder: Path, loans: int = 30_000) -> Path:
    """A trained, promoted, materialized home in ``folder``; reused as is if it has a champion.

    Built in a subprocess with the home's environment: BentoML binds its model store to the
    first ``BENTOML_HOME`` a process uses, and this process's environment stays untouched."""
    env = home_environment(home_settings(folder))
    command = [sys.executable, "-m", "benchmarks.serving", "build-home", str(folder)]
    print(f"serving benchmark home: {folder} (built unless it has a champion)", file=sys.stderr)
    done = subprocess.run([*command, "--loans", str(loans)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"building {folder} failed:\n{done.stdout}\n{done.stderr[-5000:]}")
    return folder.expanduser().resolve()


@app.command("build-home")
def build_home(
    folder: Path, loans: Annotated[int, typer.Option(help="Loans of the demo world.")] = 30_000
) -> None:
    """Build a demo home the way `make demo` does (the environment must already name it)."""
    from datetime import UTC, datetime

    from creditflow.demo_world.generator import generate_world, write_world
    from creditflow.ingestion.ingest import ingest
    from creditflow.ingestion.readers import read_files
    from creditflow.model.stages import champion_tag
    from creditflow.training.pipeline import train
    from creditflow.training.promotion import promote

    settings = get_settings()
    if settings.home != folder.expanduser().resolve():
        raise typer.BadParameter(f"CREDITFLOW_HOME is {settings.home}, not {folder}")
    if (settings.home / "creditflow.db").exists() and champion_tag(settings):
        return
    raw = write_world(generate_world(loans, seed=0), settings.raw_dir)
    for table, path in raw.items():
        ingest(table, read_files(path), settings)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    for args in (["apply"], ["materialize-incremental", now]):
        subprocess.run([str(BIN / "feast"), *args], cwd=FEATURE_REPO, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    summary = train(settings=settings, trials=0, variants=False, quiet=True)
    promote(summary["model_tag"], settings=settings)


def applications(settings: Settings, count: int = 2000) -> list[dict[str, Any]]:
    """The newest ``count`` distinct real applicants of the home, as /predict bodies."""
    from creditflow.ingestion.offline import newest_applications

    rows = newest_applications(settings, count)
    if not rows:
        raise RuntimeError(f"{settings.home}: no loans ingested")
    return rows


def feast_body(application: dict[str, Any]) -> dict[str, Any]:
    """The same lookup for feast serve: entity keys and request data both go in ``entities``
    (feature_server passes them to ``get_online_features(entity_rows=...)``)."""
    return {
        "feature_service": MODEL_FEATURE_SERVICE,
        "entities": {name: [value] for name, value in application.items()},
    }


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _post(url: str, body: dict, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"POST {url}: HTTP {exc.code}: {exc.read()[:500].decode()}") from exc


@contextlib.contextmanager
def running(name: str, command: list[str], cwd: Path, env: dict, logs: Path) -> Iterator[Server]:
    """A server subprocess logging to ``logs/<name>.log``; stopped (terminate, wait, then kill
    whatever is left of its process tree) however the block exits. The tree, not the process
    group: BentoML's workers run in sessions of their own."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield Server(name, proc, log)
    finally:
        tree: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            tree = psutil.Process(proc.pid).children(recursive=True)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _, alive = psutil.wait_procs(tree, timeout=10)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()


def wait_ready(server: Server, url: str, timeout_s: float = 180) -> None:
    """Until GET ``url`` answers 200; fails with the log's tail if the server dies or hangs."""
    deadline = time.monotonic() + timeout_s
    while _get(url) != 200:
        if server.proc.poll() is not None or time.monotonic() > deadline:
            tail = server.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{server.name} did not become ready ({url}):\n{tail}")
        time.sleep(0.5)


def load(
    url: str,
    bodies: Path,
    concurrency: int,
    duration: float,
    warmup: float,
    server: Server,
    headers: tuple[str, ...] = (),
) -> dict:
    """One run of benchmarks.loadgen in its own process; its error lines pass through. It also
    reports CPU use (% of one core): a server near 100 is CPU-bound; ``other`` is load from
    outside the benchmark, which the server competes with on 2 cores. ``headers``: 'Name: value'
    sent with every request."""
    command = [sys.executable, "-m", "benchmarks.loadgen", "--url", url, "--body", str(bodies),
               "--concurrency", str(concurrency), "--duration", str(duration),
               "--warmup", str(warmup), "--server-pid", str(server.proc.pid)]  # fmt: skip
    for header in headers:
        command += ["--header", header]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=duration + warmup + 60)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed on {url}:\n{done.stderr[-3000:]}")
    if done.stderr.strip():
        print(done.stderr.strip(), file=sys.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_feast_answer(body: dict, answer: dict) -> None:
    """feast serve must return stored values, not nulls, or it is not doing the real lookup."""
    names, results = answer["metadata"]["feature_names"], answer["results"]
    looked_up = {n: r["values"][0] for n, r in zip(names, results, strict=True)
                 if n not in body["entities"]}  # fmt: skip
    if not looked_up or all(v is None for v in looked_up.values()):
        raise RuntimeError(f"feast serve returned no stored features: {json.dumps(answer)[:1500]}")


def throughput_row(label: str, concurrency: int, result: dict) -> dict:
    return {
        "name": f"{label}, {concurrency} clients",
        "value": result["rps"],
        "unit": "req/s",
        "target": "-",
        "ratio": None,
        **{k: result[k] for k in ("p50_ms", "p99_ms", "errors", "cpu_pct", "first_error")},
    }


def ratio_row(name: str, value: float | None, unit: str, target: str, ratio: float | None) -> dict:
    rounded = None if ratio is None else round(ratio, 2)
    return {"name": name, "value": None if value is None else round(value, 2), "unit": unit,
            "target": target, "ratio": rounded}  # fmt: skip


def feedback_bodies(base: str, apps: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """/feedback bodies for ``count`` fresh predictions of the server at ``base`` (scored in
    batches), one outcome each, reported now."""
    ids: list[str] = []
    while len(ids) < count:
        size = min(BATCH_ROWS, count - len(ids))
        batch = [apps[(len(ids) + i) % len(apps)] for i in range(size)]
        ids += [answer["prediction_id"] for answer in
                _post(f"{base}/predict_batch", {"applications": batch})]  # fmt: skip
    reported = datetime.now(UTC).isoformat()
    return [{"prediction_id": pid, "outcome": i % 2, "outcome_at": reported, "source": "bench"}
            for i, pid in enumerate(ids)]  # fmt: skip


def wait_logged(url: str, body: dict, headers: dict[str, str], timeout_s: float = 60) -> None:
    """Until /feedback knows ``body``'s prediction (the log writes within a second or so)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _post(url, body, headers)
            return
        except RuntimeError as exc:
            if "HTTP 404" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def bench_monitoring(
    on: tuple[str, Server], off: tuple[str, Server], bodies: Path, duration: float,
    warmup: float, clients: int = MONITORING_CLIENTS,
) -> list[dict]:  # fmt: skip
    """/predict with the service's monitoring on and off, in the order on, off, off, on, so a
    drift of the machine's speed during the runs weighs on both alike; each side's mean. Also
    the server's CPU time per request on vs off (its process tree, the prediction log's writer
    included): on a machine shared with other work, throughput follows the CPU the server gets,
    its cost per request does not."""
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    for side in ("on", "off", "off", "on"):
        url, server = on if side == "on" else off
        runs[side].append(load(url, bodies, clients, duration, warmup, server))
    rows = []
    mean_rps = {}
    for side, label in (
        ("on", "service statistics, logged applications"),
        ("off", "CREDITFLOW_SERVICE_STATS=0, CREDITFLOW_LOG_APPLICATIONS=0"),
    ):
        results = runs[side]
        mean_rps[side] = sum(r["rps"] for r in results) / len(results)
        row = throughput_row(f"/predict, monitoring {side} ({label})", clients, results[-1])
        row["value"] = round(mean_rps[side], 1)  # latency and CPU: the last run's
        row["errors"] = sum(r["errors"] for r in results)
        rows.append(row)
    vs = mean_rps["on"] / mean_rps["off"] if mean_rps["off"] else None
    rows.append(ratio_row(f"/predict throughput, monitoring on vs off at c={clients}", vs, "x",
                          ">= 0.95x", vs and vs / 0.95))  # fmt: skip
    # CPU % of one core over a window, per request/s: ms of CPU per request (10 = 1000 / 100).
    cpu_ms = {side: 10 * sum(r["cpu_pct"]["server"] for r in results)
              / max(sum(r["rps"] for r in results), 1e-9)
              for side, results in runs.items()}  # fmt: skip
    vs = cpu_ms["on"] / cpu_ms["off"] if cpu_ms["off"] else None
    name = (f"/predict server CPU per request, monitoring on vs off ({cpu_ms['on']:.2f} vs "
            f"{cpu_ms['off']:.2f} ms)")  # fmt: skip
    rows.append(ratio_row(name, vs, "x", "-", None))
    return rows


def bench_serving(
    home: Path,
    duration_s: float = 10,
    concurrencies: tuple[int, ...] = (1, 8, 32),
    public_paths: tuple[int, ...] = (1, 8),
    monitoring: bool = True,
) -> list[dict]:
    """/predict, /noop and feast serve throughput and latency per concurrency, the targets
    derived from them, and /predict_batch rows/s; the servers run for the whole benchmark.
    At the ``public_paths`` concurrencies, also /predict of a second service run with the public
    APIs only (CREDITFLOW_FAST_PATHS=0), right after ours: what the fast paths are worth. With
    ``monitoring``: /predict beside a third service with the service's monitoring off
    (:func:`bench_monitoring`), and /feedback requests/s, at 8 clients."""
    settings = home_settings(home)
    token = secrets.token_urlsafe(24)
    env = {**home_environment(settings), "CREDITFLOW_API_TOKEN": token}
    apps = applications(settings)
    warmup = max(0.5, min(2.0, duration_s / 5))
    port, feast_port = free_port(), free_port()
    base, feast_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{feast_port}"
    bento = [str(BIN / "bentoml"), "serve", "creditflow.bento.service:CreditScorer",
             "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    public_port = free_port()
    public_base = f"http://127.0.0.1:{public_port}"
    public_bento = [*bento[:-1], str(public_port)]
    public_env = {**env, "CREDITFLOW_FAST_PATHS": "0"}
    off_port = free_port()
    off_base = f"http://127.0.0.1:{off_port}"
    off_bento = [*bento[:-1], str(off_port)]
    # 1 worker; -r 0: no registry-refresh timer thread; --max-requests 0: gunicorn would otherwise
    # restart the worker every ~1000 requests (its default), resetting connections mid-run. Its
    # access log stays on, as BentoML's does by default.
    feast = [str(BIN / "feast"), "serve", "--host", "127.0.0.1", "--port", str(feast_port),
             "--workers", "1", "--registry_ttl_sec", "0", "--max-requests", "0",
             "--max-requests-jitter", "0"]  # fmt: skip
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="creditflow-bench-") as scratch:
        folder = Path(scratch)
        files = {
            "predict": apps,
            "noop": apps,
            "feast": [feast_body(a) for a in apps],
            "public": apps,
            "batch": [
                {"applications": apps[i : i + BATCH_ROWS]}
                for i in range(0, len(apps) - BATCH_ROWS + 1, BATCH_ROWS)
            ],
        }
        for name, bodies in files.items():
            (folder / f"{name}.json").write_text(json.dumps(bodies))
        targets = {
            "predict": ("/predict", f"{base}/predict"),
            "public": ("/predict, public APIs only (CREDITFLOW_FAST_PATHS=0)",
                       f"{public_base}/predict"),
            "noop": ("/noop (framework floor)", f"{base}/noop"),
            "feast": ("feast serve /get-online-features", f"{feast_base}/get-online-features"),
        }  # fmt: skip
        with contextlib.ExitStack() as stack:  # all start at once: each takes 15-30 s to load
            ours = stack.enter_context(running("bentoml", bento, REPO_ROOT, env, folder))
            theirs = stack.enter_context(running("feast", feast, FEATURE_REPO, env, folder))
            public = (stack.enter_context(running("bentoml-public", public_bento, REPO_ROOT,
                                                  public_env, folder))
                      if public_paths else None)  # fmt: skip
            off = (stack.enter_context(running("bentoml-monitoring-off", off_bento, REPO_ROOT,
                                               {**env, **MONITORING_OFF}, folder))
                   if monitoring else None)  # fmt: skip
            wait_ready(ours, f"{base}/readyz")
            wait_ready(theirs, f"{feast_base}/health")
            if public:
                wait_ready(public, f"{public_base}/readyz")
            if off:
                wait_ready(off, f"{off_base}/readyz")
            check_feast_answer(files["feast"][0], _post(targets["feast"][1], files["feast"][0]))
            try:  # a failing /predict is still measured: its errors show in the table
                _post(targets["predict"][1], apps[0])
            except RuntimeError as exc:
                print(f"WARNING: /predict fails: {exc}", file=sys.stderr)
            results: dict[tuple[str, int], dict] = {}
            for c in concurrencies:
                for key, (label, url) in targets.items():
                    if key == "public" and c not in public_paths:
                        continue
                    at = {"feast": theirs, "public": public}.get(key, ours)
                    result = load(url, folder / f"{key}.json", c, duration_s, warmup, at)
                    results[key, c] = result
                    rows.append(throughput_row(label, c, result))
            batch = load(f"{base}/predict_batch", folder / "batch.json", BATCH_CONCURRENCY,
                         duration_s, warmup, ours)  # fmt: skip
            if off:
                rows += bench_monitoring((f"{base}/predict", ours), (f"{off_base}/predict", off),
                                         folder / "predict.json", duration_s, warmup)  # fmt: skip
                auth = {"Authorization": f"Bearer {token}"}
                labels = feedback_bodies(base, apps, FEEDBACK_LABELS)
                (folder / "feedback.json").write_text(json.dumps(labels))
                wait_logged(f"{base}/feedback", labels[-1], auth)
                feedback = load(f"{base}/feedback", folder / "feedback.json", MONITORING_CLIENTS,
                                duration_s, warmup, ours,
                                headers=tuple(f"{k}: {v}" for k, v in auth.items()))  # fmt: skip
    for c in concurrencies:
        predict, feast_rps, noop = (results[k, c]["rps"] for k in ("predict", "feast", "noop"))
        vs = predict / feast_rps if feast_rps else None
        rows.append(ratio_row(f"/predict throughput vs feast serve at c={c}", vs, "x", ">= 2x",
                              vs and vs / 2))  # fmt: skip
        vs = predict / noop if noop else None
        rows.append(ratio_row(f"/predict throughput vs no-op endpoint at c={c}", vs, "x",
                              ">= 0.7x", vs and vs / 0.7))  # fmt: skip
        if c in public_paths:
            public_rps = results["public", c]["rps"]
            vs = predict / public_rps if public_rps else None
            rows.append(ratio_row(f"/predict throughput vs public APIs only at c={c}", vs, "x",
                                  "-", None))  # fmt: skip
    if 8 in concurrencies:
        p50, p99 = results["predict", 8]["p50_ms"], results["predict", 8]["p99_ms"]
        spread = p99 / p50 if p50 and p99 else None
        rows.append(ratio_row("/predict p99 / p50 at 8 clients", spread, "x", "<= 3",
                              spread and 3 / spread))  # fmt: skip
    rows.append({
        **throughput_row(f"/predict_batch ({BATCH_ROWS} rows/call)", BATCH_CONCURRENCY, batch),
        "value": round(batch["rps"] * BATCH_ROWS), "unit": "rows/s",
    })  # fmt: skip
    if monitoring:
        label = f"/feedback ({FEEDBACK_LABELS:,} new labels, then duplicates)"
        rows.append(throughput_row(label, MONITORING_CLIENTS, feedback))
    return rows


if __name__ == "__main__":
    app()
