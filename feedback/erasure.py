"""Erasure (`creditflow forget DOB_SSN`) and retention (`creditflow forget --expired`).

An applicant's prediction-log rows are found by their keyed hash, which covers the applicant
key ``(dob_ssn, zipcode)``. An applicant may have applied from several zipcodes, and the log
holds no raw key to search by, so every possible zipcode (the contract's 0-99999) is hashed:
a hundred thousand HMACs, a fraction of a second, and exact, including rows logged before the
encrypted keys existed (which decrypting candidates could not find). Their labels go with
them, and so do quarantined rows that name the applicant's ``dob_ssn`` (ingestion rejects, as
received) or one of the removed prediction ids (rejected labels). One transaction.

The feature store's own sources (the ingested loans and credit history) belong to the data
owner, not to these tables: erase there too.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import sqlalchemy as sa

from creditflow import clock
from creditflow.applicant_keys import home_entity_hasher
from creditflow.config import Settings
from creditflow.contract import DOB_SSN, ZIPCODE
from creditflow.tables import labels, predictions, quarantine

# Ids per IN (...) list: well below SQLite's and PostgreSQL's parameter limits.
CHUNK = 5_000


def _chunks(values: list, size: int = CHUNK) -> list[list]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _like_literal(text: str) -> str:
    """``text`` as a LIKE pattern that matches it anywhere (``_`` and ``%`` escaped)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def applicant_hashes(settings: Settings, dob_ssn: str) -> list[str]:
    """The keyed hash of ``dob_ssn`` with every zipcode the contract allows."""
    entity_hash = home_entity_hasher(settings)
    low, high = int(ZIPCODE.ge or 0), int(ZIPCODE.le or 99_999)
    return [entity_hash(dob_ssn, zipcode) for zipcode in range(low, high + 1)]


def forget(settings: Settings, engine: sa.Engine, dob_ssn: str) -> dict:
    """Remove an applicant's rows from our tables; the rows removed per table."""
    if not isinstance(dob_ssn, str) or not re.fullmatch(DOB_SSN.pattern, dob_ssn):
        raise ValueError(f"dob_ssn must match {DOB_SSN.pattern} (YYYYMMDD_NNNN)")
    hashes = applicant_hashes(settings, dob_ssn)
    removed = {"predictions": 0, "labels": 0, "quarantine": 0}
    with engine.begin() as conn:
        ids: list[str] = []
        for chunk in _chunks(hashes):
            ids += conn.scalars(
                sa.select(predictions.c.prediction_id).where(predictions.c.entity_hash.in_(chunk))
            ).all()
        quarantined = set(
            conn.scalars(
                sa.select(quarantine.c.id).where(
                    quarantine.c.payload.like(_like_literal(dob_ssn), escape="\\")
                )
            )
        )
        for prediction_id in ids:  # rejected labels of these predictions, as received
            quarantined |= set(
                conn.scalars(
                    sa.select(quarantine.c.id).where(
                        quarantine.c.table_name == "labels",
                        quarantine.c.payload.like(_like_literal(prediction_id), escape="\\"),
                    )
                )
            )
        for chunk in _chunks(ids):
            removed["labels"] += conn.execute(
                sa.delete(labels).where(labels.c.prediction_id.in_(chunk))
            ).rowcount
            removed["predictions"] += conn.execute(
                sa.delete(predictions).where(predictions.c.prediction_id.in_(chunk))
            ).rowcount
        for chunk in _chunks(sorted(quarantined)):
            removed["quarantine"] += conn.execute(
                sa.delete(quarantine).where(quarantine.c.id.in_(chunk))
            ).rowcount
    return {"removed": removed, "rows": sum(removed.values())}


def expire(settings: Settings, engine: sa.Engine, as_of: datetime | None = None) -> dict:
    """Delete prediction-log rows and labels older than ``settings.retention_days`` at
    ``as_of`` (default now), and the labels of the predictions deleted; rows per table."""
    as_of = clock.now() if as_of is None else clock.as_utc(as_of)
    cutoff = as_of - timedelta(days=settings.retention_days)
    old = sa.select(predictions.c.prediction_id).where(predictions.c.at < cutoff)
    with engine.begin() as conn:
        n_labels = conn.execute(
            sa.delete(labels).where(
                sa.or_(labels.c.received_at < cutoff, labels.c.prediction_id.in_(old))
            )
        ).rowcount
        n_predictions = conn.execute(
            sa.delete(predictions).where(predictions.c.at < cutoff)
        ).rowcount
    return {
        "cutoff": cutoff.isoformat(),
        "retention_days": settings.retention_days,
        "removed": {"predictions": n_predictions, "labels": n_labels},
    }
