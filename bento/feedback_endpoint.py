"""``POST /feedback``: an observed outcome of a logged prediction, recorded before the answer.

The request model is the contract's ``LABELS`` columns (a field that breaks them is a 400 naming
it, as on every endpoint); ``creditflow.feedback.labels.record_label`` stores the label in one
committed transaction, so an acknowledged label survives a restart. Its refusals keep the one
4xx shape (bento/middleware.py): an unknown prediction is a 404, a value at odds with the
prediction (``outcome_at`` before it, or in the future) a 422 naming the field. A first label
or a correction is a 201, the same label again a 200 (idempotent).

On SQLite, the labels of one process are written one at a time: SQLite takes one writer at a
time anyway, and threads that contend for its lock back off in sleeps (a busy timeout), which
under load turned into long waits and "database is locked" failures.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError
from starlette.responses import JSONResponse, Response

from creditflow.bento.middleware import client_error
from creditflow.contract import LABELS, request_model
from creditflow.feedback.labels import InvalidLabel, UnknownPrediction, record_label


def _iso_time(value: Any) -> Any:
    """Times are ISO 8601 strings: a number is not taken for epoch seconds."""
    if not isinstance(value, str):
        raise PydanticCustomError(
            "datetime_type", "Input should be an ISO 8601 time such as 2026-01-31T09:30:00Z"
        )
    return value


# The contract's label columns but the time, which pydantic's datetime takes (below).
_REPORTED = tuple(col for col in LABELS.columns if col.kind != "timestamp")
_LabelFields = request_model("LabelFields", _REPORTED)


class LabelReport(_LabelFields):  # type: ignore[misc,valid-type]
    """An observed outcome of a logged prediction."""

    outcome_at: Annotated[datetime, BeforeValidator(_iso_time)] = Field(
        description="when the outcome became known (ISO 8601; without a zone: UTC); not before "
        "the prediction"
    )


class LabelReceipt(BaseModel):
    """What happened to the report."""

    label_id: int
    prediction_id: str
    status: Literal["stored", "correction", "duplicate"] = Field(
        description="stored: the prediction's first label; correction: stored, replacing the "
        "label `corrects`; duplicate: the current label already says this (nothing stored)"
    )
    outcome: int
    outcome_at: datetime
    source: str
    received_at: datetime
    corrects: int | None = Field(description="the label this one replaces")


# What /docs.json says /feedback answers besides every JSON endpoint's 4xx (bento/middleware.py).
ERRORS = {
    401: "No or a wrong `Authorization: Bearer` token (or none configured on the server)",
    404: "No logged prediction has this prediction_id",
    422: "A field at odds with the prediction (named in `fields`): outcome_at before the "
    "prediction or in the future",
}
ANSWERS = {
    201: "Stored: the prediction's first label, or a correction of it",
    200: "A duplicate of the current label: nothing stored",
}


# One label write at a time in this process, on SQLite (see the module's docstring).
_SQLITE_WRITES = threading.Lock()


def _refused(status: HTTPStatus, message: str, fields: list[dict] | None = None) -> Response:
    body = client_error(int(status), message, fields or ())
    return Response(body, status_code=int(status), media_type="application/json")


def record(engine: sa.Engine, report: dict[str, Any], future_tolerance: timedelta) -> Response:
    """The answer to one validated report (``LabelReport``'s fields), the label committed
    first."""
    one_at_a_time = _SQLITE_WRITES if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    try:
        with one_at_a_time:
            receipt = record_label(
                engine, report["prediction_id"], report["outcome"], report["outcome_at"],
                source=report.get("source"), future_tolerance=future_tolerance,
            )  # fmt: skip
    except UnknownPrediction as err:
        return _refused(HTTPStatus.NOT_FOUND, str(err))
    except InvalidLabel as err:
        field = [{"field": err.field, "message": err.message}]
        return _refused(HTTPStatus.UNPROCESSABLE_ENTITY, str(err), field)
    status = HTTPStatus.OK if receipt.status == "duplicate" else HTTPStatus.CREATED
    return JSONResponse(receipt.as_dict(), status_code=status)
