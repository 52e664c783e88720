"""Closed-loop HTTP load generator, run in its own process so its CPU is not the server's.

N workers share one keep-alive session; each sends the next body of a JSON list (round-robin, so
many applicants are looked up, not one cached row) as soon as its previous answer arrived. Only
answers completed inside the measured window (after the warm-up) count; at its end, requests
still in flight are cancelled, so the run always stops on time. Prints one JSON line:
requests, errors (non-2xx or transport failures), rps (2xx answers per second), latency
percentiles of the 2xx answers, CPU use in the window (server, loadgen, other processes), and the
first error text if any.

    python -m benchmarks.loadgen --url URL --body FILE --concurrency N --duration S --warmup S \
        [--server-pid PID] [--header "Authorization: Bearer TOKEN"]
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated

import aiohttp
import typer

app = typer.Typer(add_completion=False)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile in ms (no interpolation: every figure is a latency that happened)."""
    if not sorted_values:
        return None
    return round(1000 * sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)], 2)


def cpu_seconds(server_pid: int | None) -> dict[str, float]:
    """CPU seconds so far: the server's process tree, this process, the machine (all busy time,
    including softirq network work that no process is charged with)."""
    import psutil  # a bentoml dependency

    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + t.irq + t.softirq
    seconds = {"server": 0.0, "loadgen": time.process_time(), "machine": busy}
    tree: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        if server_pid:
            root = psutil.Process(server_pid)
            tree = [root, *root.children(recursive=True)]
    for process in tree:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            seconds["server"] += times.user + times.system
    return seconds


async def cpu_in_window(start: float, end: float, server_pid: int | None) -> dict[str, int]:
    """CPU use during [start, end] in % of one core (the machine has 2): the server, the load
    generator and everything else (``other``: processes that compete with the server)."""
    await asyncio.sleep(start - time.perf_counter())
    before = cpu_seconds(server_pid)
    await asyncio.sleep(end - time.perf_counter())
    used = {k: v - before[k] for k, v in cpu_seconds(server_pid).items()}
    pct = {k: round(100 * used[k] / (end - start)) for k in ("server", "loadgen", "machine")}
    pct["other"] = pct.pop("machine") - pct["loadgen"] - pct["server"]
    return pct  # in this order: server, loadgen, other


async def run_load(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    duration: float,
    warmup: float,
    timeout: float,
    server_pid: int | None = None,
    extra_headers: dict[str, str] | None = None,
) -> dict:
    """Drive ``concurrency`` closed-loop workers for warmup + duration seconds."""
    started = time.perf_counter()
    window_start, window_end = started + warmup, started + warmup + duration
    next_body = itertools.cycle(bodies).__next__  # shared: round-robin across all workers
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    headers = {"Content-Type": "application/json", **(extra_headers or {})}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors, first_error
        while time.perf_counter() < window_end:
            sent = time.perf_counter()
            try:
                async with session.post(url, data=next_body(), headers=headers) as response:
                    text = await response.read()
                    failure = None
                    if not 200 <= response.status < 300:
                        detail = " ".join(text.decode(errors="replace").split())[:500]
                        failure = f"HTTP {response.status}: {detail}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            done = time.perf_counter()
            if failure is not None and first_error is None:
                first_error = failure
            if not window_start <= done <= window_end:
                continue
            if failure is None:
                latencies.append(done - sent)
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    cpu = asyncio.create_task(cpu_in_window(window_start, window_end, server_pid))
    async with aiohttp.ClientSession(
        connector=connector, timeout=client_timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        workers = asyncio.gather(*(worker(session) for _ in range(concurrency)))
        # Answers after the window would not count: cancel what is still in flight.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(workers, timeout=window_end - time.perf_counter())
    latencies.sort()
    quantiles = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99, "max_ms": 1.0}
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "rps": round(len(latencies) / duration, 1),
        **{name: percentile(latencies, q) for name, q in quantiles.items()},
        "cpu_pct": await cpu,
        "first_error": first_error,
    }


@app.command()
def main(
    url: Annotated[str, typer.Option(help="Endpoint to POST to.")],
    body: Annotated[Path, typer.Option(help="JSON file: a list of request bodies.")],
    concurrency: Annotated[int, typer.Option(help="Concurrent closed-loop clients.")] = 8,
    duration: Annotated[float, typer.Option(help="Measured seconds.")] = 10.0,
    warmup: Annotated[float, typer.Option(help="Unmeasured seconds first.")] = 1.0,
    timeout: Annotated[float, typer.Option(help="Per-request timeout (s).")] = 10.0,
    server_pid: Annotated[
        int | None, typer.Option(help="Server process whose CPU use (with its children) to report.")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option(help="'Name: value' sent with every request (repeatable).")
    ] = None,
) -> None:
    """Load ``url`` and print one JSON line of results."""
    bodies = [json.dumps(b).encode() for b in json.loads(body.read_text())]
    if not bodies:
        raise typer.BadParameter(f"{body}: no request bodies")
    extra_headers = {}
    for line in header or []:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise typer.BadParameter(f"--header {line!r}: expected 'Name: value'")
        extra_headers[name.strip()] = value.strip()
    try:
        import uvloop  # less client CPU per request: the server shares these 2 cores

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        result = runner.run(
            run_load(url, bodies, concurrency, duration, warmup, timeout, server_pid, extra_headers)
        )
    if result["first_error"]:
        print(f"loadgen: {url}: {result['errors']} errors in window; first: "
              f"{result['first_error']}", file=sys.stderr)  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    app()
