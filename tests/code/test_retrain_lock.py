"""One retraining at a time: a second run, in another process, finds the lock held and says
so; the lock dies with its holder (SIGKILL), so a crashed run never blocks the next."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import sqlalchemy as sa

from creditflow.retraining.lock import retrain_lock

HOLDER = textwrap.dedent("""
    import sys, sqlalchemy as sa
    from pathlib import Path
    from creditflow.retraining.lock import retrain_lock
    engine = sa.create_engine(sys.argv[1])
    with retrain_lock(engine, Path(sys.argv[2])) as held:
        print("held" if held else "busy", flush=True)
        if held:
            sys.stdin.read()  # until the test closes stdin or kills us
""")


def _holder(url: str, lock_dir) -> subprocess.Popen:
    command = [sys.executable, "-c", HOLDER, url, str(lock_dir)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def _url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_a_second_process_is_refused_and_a_killed_holder_releases(sql_engine, tmp_path):
    holder = _holder(_url(sql_engine), tmp_path)
    try:
        second = subprocess.run([sys.executable, "-c", HOLDER, _url(sql_engine), str(tmp_path)],
                                capture_output=True, text=True, input="")  # fmt: skip
        assert second.stdout.strip() == "busy", second.stderr
        with retrain_lock(sql_engine, tmp_path) as held:
            assert held is False
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with retrain_lock(sql_engine, tmp_path) as held:
        assert held is True
    sql_engine.dispose()


def test_retrain_says_busy_and_does_nothing_while_another_run_holds_the_lock(home):
    from creditflow.db import get_engine
    from creditflow.retraining.job import history, retrain

    engine = get_engine(home)
    holder = _holder(_url(engine), home.home)
    try:
        summary = retrain(home)
    finally:
        holder.stdin.close()
        holder.wait()
    assert summary["busy"] is True and "another" in summary["message"]
    assert history(engine) == []  # nothing recorded, nothing trained
