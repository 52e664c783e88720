"""The ingestion log and the quarantine, written together in one transaction."""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa

from creditflow import clock
from creditflow.contract import LABELS, TABLES
from creditflow.tables import ingestion_log, quarantine

SUMMARY_FIELDS = ("rows_in", "accepted", "quarantined", "late", "reasons", "warnings")


def committed_batches(engine: sa.Engine, table: str) -> set[str]:
    query = sa.select(ingestion_log.c.batch_id).where(ingestion_log.c.table_name == table)
    with engine.connect() as conn:
        return set(conn.scalars(query))


def find(engine: sa.Engine, table: str, batch_id: str) -> dict | None:
    """The summary of a batch already ingested, if any."""
    query = sa.select(ingestion_log).where(
        ingestion_log.c.table_name == table, ingestion_log.c.batch_id == batch_id
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        return None
    return {"table": table, "batch_id": batch_id, "source": row["source"]} | {
        name: row[name] for name in SUMMARY_FIELDS
    }


def record(
    engine: sa.Engine,
    summary: dict,
    started_at: datetime,
    quarantined: list[tuple[int | None, str, str]],
) -> None:
    """Write the log entry and the quarantined rows (row number, reasons, payload) at once."""
    now = clock.now()
    with engine.begin() as conn:
        conn.execute(
            ingestion_log.insert(),
            {
                "table_name": summary["table"],
                "batch_id": summary["batch_id"],
                "source": summary["source"],
                "started_at": started_at,
                "finished_at": now,
                **{name: summary[name] for name in SUMMARY_FIELDS},
            },
        )
        if quarantined:
            conn.execute(
                quarantine.insert(),
                [
                    {
                        "table_name": summary["table"],
                        "batch_id": summary["batch_id"],
                        "row_number": row_number,
                        "reasons": reasons,
                        "payload": payload,
                        "quarantined_at": now,
                    }
                    for row_number, reasons, payload in quarantined
                ],
            )


def quarantined_rows(
    engine: sa.Engine, table: str | None = None, batch_id: str | None = None, limit: int = 100
) -> list[dict]:
    """Quarantined rows, oldest first: at most ``limit`` of them (0: all), of one contract
    table and one batch if given. An unknown table is an error, not an empty answer."""
    known = [*TABLES, LABELS.name]  # labels: rows `creditflow feedback import` refused
    if table is not None and table not in known:
        raise ValueError(f"unknown table {table!r}: one of {', '.join(known)}")
    if limit < 0:
        raise ValueError(f"limit must be 0 (all) or more, not {limit}")
    query = sa.select(quarantine).order_by(quarantine.c.id)
    if limit:
        query = query.limit(limit)
    if table:
        query = query.where(quarantine.c.table_name == table)
    if batch_id:
        query = query.where(quarantine.c.batch_id == batch_id)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        if row["payload"].startswith("{"):
            row["payload"] = json.loads(row["payload"])
    return rows
