"""Prediction-log rows for applications scored outside the service (a backfill, a simulation,
tests), in the shape the service logs them: the application as received without its entity
keys, the keys encrypted beside their keyed hash, never the raw ``dob_ssn``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa

from creditflow import clock
from creditflow.applicant_keys import KeyCipher, home_entity_hasher, key_cipher
from creditflow.config import Settings
from creditflow.contract import APPLICATIONS
from creditflow.tables import predictions


def prediction_row(
    settings: Settings,
    application: Mapping[str, object],
    at: datetime,
    *,
    decision: str = "approve",
    default_probability: float = 0.05,
    model_tag: str = "backfill",
    endpoint: str = "backfill",
    prediction_id: str | None = None,
    features: Mapping[str, object] | None = None,
    hasher: Callable[..., str] | None = None,
    cipher: KeyCipher | None = None,
) -> dict:
    """One ``predictions`` row for ``application`` (the APPLICATIONS contract's fields)
    answered at ``at``. ``hasher`` and ``cipher``: the home's (read from its key files when
    not given; a caller writing many rows reads them once)."""
    keys = [application[name] for name in APPLICATIONS.key]
    hasher = hasher or home_entity_hasher(settings)
    cipher = cipher or key_cipher(settings)
    return {
        "prediction_id": prediction_id or uuid.uuid4().hex,
        "at": clock.as_utc(at),
        "model_tag": model_tag,
        "entity_hash": hasher(*keys),
        "features": dict(features or {}),
        "default_probability": default_probability,
        "decision": decision,
        "decided_by": f"band:{decision}",
        "rules_fired": [],
        "application": {k: v for k, v in application.items() if k not in APPLICATIONS.key},
        "entity_keys": cipher.encrypt(keys),
        "endpoint": endpoint,
    }


def write_predictions(engine: sa.Engine, rows: Iterable[dict]) -> list[str]:
    """Insert the rows (one transaction); their prediction ids."""
    rows = list(rows)
    with engine.begin() as conn:
        if rows:
            conn.execute(sa.insert(predictions), rows)
    return [row["prediction_id"] for row in rows]
