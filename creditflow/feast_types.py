"""Feast field lists derived from the data contract, so schemas are declared once."""

from __future__ import annotations

from collections.abc import Iterable

from feast import Field
from feast.types import Float64, Int64, PrimitiveFeastType, String

from creditflow.contract import Col

FEAST_TYPES: dict[str, PrimitiveFeastType] = {"int": Int64, "float": Float64, "str": String}


def fields_of(
    columns: Iterable[Col], exclude: Iterable[str] = (), described: bool = True
) -> list[Field]:
    """Feast fields for the contract's columns (timestamps are Feast's own, never features).

    ``described=False`` for on-demand views: Feast compares their declared fields with the
    ones it infers by running the UDF, and inferred fields carry no description.
    """
    skip = set(exclude)
    return [
        Field(
            name=col.name,
            dtype=FEAST_TYPES[col.kind],
            description=col.description if described else "",
        )
        for col in columns
        if col.kind != "timestamp" and col.name not in skip
    ]
