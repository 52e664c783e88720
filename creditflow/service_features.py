"""A FeatureService's features for scoring: online in-process, and point-in-time for batches.

Feast's ``get_online_features`` plans every call anew (feature references parsed, entity
values turned into protos and back, an ``OnlineResponse`` built and converted to a dict):
1.3-4 ms a call here, most of the scoring budget. This reader does that planning once, from the
same FeatureService in the registry: per call it is the online store's own ``online_read`` for
each batch view and the on-demand view's own transformation, about 0.3 ms. (Projections that
rename join keys are refused: this service has none.)

It also enforces each view's TTL online, as the point-in-time join does offline: Feast's online
read returns a value however old it is, so a bureau snapshot older than the view's TTL would be
served to the model as fresh although training saw it as missing. Such values are None here.

Batch scoring uses the same plan offline: Feast's point-in-time join of the batch views, then
the on-demand view's own transformation over whole columns. (Feast's historical path converts
the whole joined table to Python lists for a python-mode view: 10 of 24 s for a million rows.)

``tests/model/test_service_features.py`` checks both against Feast's own paths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.types import Float32, Float64, Int32, Int64, String

from creditflow.features import get_service

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView, OnDemandFeatureView


# Entity key values by Feast type: built directly, as Feast's generic conversion (which infers
# the type of every value) costs 0.08 ms a view.
_KEY_FIELDS = {"String": ("string_val", str), "Int64": ("int64_val", int),
               "Int32": ("int32_val", int)}  # fmt: skip


def _key_protos(values: Sequence[Any], dtype: Any) -> list:
    if str(dtype) not in _KEY_FIELDS:
        return python_values_to_proto_values(list(values))
    field, cast = _KEY_FIELDS[str(dtype)]
    return [Value(**{field: cast(value)}) for value in values]


_NUMERIC = (Float32, Float64, Int32, Int64)
_SCALARS = frozenset({"int32_val", "int64_val", "float_val", "double_val", "string_val",
                      "bool_val"})  # fmt: skip


def _python_value(value: Value) -> Any:
    """Feast's own conversion of a stored value, with the plain scalars taken directly: its
    checks for every rarer kind first cost 1.5 µs a value, 15 values a request."""
    kind = value.WhichOneof("val")
    return getattr(value, kind) if kind in _SCALARS else feast_value_type_to_python_type(value)


@dataclass(frozen=True)
class _BatchRead:
    view: FeatureView
    features: tuple[str, ...]  # what the service or an on-demand view needs from it

    @cached_property
    def key_columns(self) -> list:
        return self.view.entity_columns

    @cached_property
    def join_keys(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.key_columns)


@dataclass(frozen=True)
class _Transform:
    view: OnDemandFeatureView
    features: tuple[str, ...]  # its outputs that the service uses

    def apply(self, values: Mapping[str, Any], as_arrays: bool = False) -> dict[str, Any]:
        """The view's transformation. A python-mode one is called directly (inputs by feature
        name): ``transform_dict`` adds a typeguard check worth 0.2 ms a call around it.
        ``as_arrays``: numeric outputs as float64 arrays (NaN for None), for whole columns."""
        if self.view.mode == "python" and not self.view.singleton:
            output = self.view.feature_transformation.transform(values)
        else:
            output = self.view.transform_dict(values)
        if not as_arrays:
            return {name: output[name] for name in self.features}
        numeric = {f.name for f in self.view.features if f.dtype in _NUMERIC}
        return {name: np.asarray(output[name], dtype=np.float64 if name in numeric else object)
                for name in self.features}  # fmt: skip


def _map_sqlite(online_store: Any, config: Any, size: int = 1 << 30) -> None:
    """Memory-mapped reads for the embedded SQLite online store: pages come from the OS's cache
    without a ``pread`` call each (8% of a lookup here). A pragma on Feast's own connection."""
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    if isinstance(online_store, SqliteOnlineStore):
        online_store._get_conn(config).execute(f"PRAGMA mmap_size={size}")


class ServiceFeatures:
    """Reads a FeatureService's features for entity rows (keys + request data)."""

    def __init__(self, store: FeatureStore, service_name: str) -> None:
        service = get_service(store, service_name)
        self.store = store
        self.config = store.config
        needed: dict[str, list[str]] = {}  # batch view -> features to read
        transforms: list[_Transform] = []
        self.names: list[str] = []
        for projection in service.feature_view_projections:
            if projection.join_key_map:
                raise NotImplementedError(f"{projection.name}: join keys mapped in {service_name}")
            names = [field.name for field in projection.features]
            self.names += names
            try:
                view = store.get_on_demand_feature_view(projection.name)
            except Exception:  # a batch feature view
                needed.setdefault(projection.name, []).extend(names)
                continue
            transforms.append(_Transform(view, tuple(names)))
            for source in view.source_feature_view_projections.values():
                needed.setdefault(source.name, []).extend(f.name for f in source.features)
        self.reads = []
        for name, features in needed.items():
            view = store.get_feature_view(name)
            self.reads.append(_BatchRead(view, tuple(dict.fromkeys(features))))
        self.transforms = tuple(transforms)

    @cached_property
    def online_store(self) -> Any:
        """Opened at the first online read: batch scoring never opens it."""
        from feast.infra.online_stores.helpers import get_online_store_from_config

        online_store = get_online_store_from_config(self.config.online_store)
        _map_sqlite(online_store, self.config)
        return online_store

    def read(
        self, rows: Sequence[Mapping[str, Any]], now: datetime | None = None
    ) -> dict[str, list[Any]]:
        """Feature values by name, one entry per row (None: unknown, or older than the TTL).

        Each row holds the entity keys and the request data the on-demand views need.
        """
        now = now or datetime.now(UTC)
        values: dict[str, list[Any]] = {key: [row[key] for row in rows] for key in rows[0]}
        for read in self.reads:
            values.update(self._read_view(read, values, len(rows), now))
        for transform in self.transforms:
            values.update(transform.apply(values))
        return {name: values[name] for name in self.names}

    def historical(self, entities: pd.DataFrame, key: str) -> dict[str, np.ndarray]:
        """Every feature of the service as of each entity row's event time, beside the rows' keys
        and request data (``key``: unique per row), in the entities' order; rows out == rows in.

        Columns, not a DataFrame (building one cost a second per 1M rows, and batch scoring
        takes columns): numbers as float64 with NaN where missing, anything else as objects.
        """
        from training.dataset import point_in_time

        refs = [f"{read.view.name}:{name}" for read in self.reads for name in read.features]
        # Only keys and times go through the join (request data would be copied through it).
        times = [c for c in entities.columns if pd.api.types.is_datetime64_any_dtype(entities[c])]
        keys = sorted({k for read in self.reads for k in read.join_keys} | {key})
        joined = point_in_time(self.store, entities[[*keys, *times]], refs, key)
        values = {c: _plain(joined[c]) for c in joined.column_names if c not in times}
        # The request data, in the entities' order as the joined rows are.
        values |= {
            c: entities[c].to_numpy(dtype=np.float64, na_value=np.nan)
            if pd.api.types.is_numeric_dtype(entities[c])
            else entities[c].to_numpy(dtype=object)
            for c in entities.columns
            if c not in joined.column_names
        }
        for transform in self.transforms:
            output = transform.apply(values, as_arrays=True)
            values.update({c: v for c, v in output.items() if c not in values})
        return values

    def probe(self) -> None:
        """Read a placeholder entity from every view: raises when the store does not answer."""
        for read in self.reads:
            keys = {c.name: ["" if c.dtype == String else 0] for c in read.key_columns}
            self._read_view(read, keys, 1, datetime.now(UTC))

    def _read_view(
        self, read: _BatchRead, keys: Mapping[str, Sequence[Any]], n: int, now: datetime
    ) -> dict[str, list[Any]]:
        key_values = [_key_protos(keys[column.name], column.dtype) for column in read.key_columns]
        entity_keys = [
            EntityKey(join_keys=read.join_keys, entity_values=[k[i] for k in key_values])
            for i in range(n)
        ]
        found = self.online_store.online_read(
            self.config, read.view, entity_keys, list(read.features)
        )
        oldest = now - read.view.ttl if read.view.ttl else None
        columns: dict[str, list[Any]] = {name: [] for name in read.features}
        for event_time, features in found:
            fresh = features is not None and (oldest is None or event_time >= oldest)
            for name, column in columns.items():
                value = features.get(name) if fresh else None  # type: ignore[union-attr]
                column.append(None if value is None else _python_value(value))
        return columns


def _plain(column: pa.ChunkedArray) -> np.ndarray:
    """A joined column as numpy: float64 with NaN for numbers, objects with None otherwise."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return column.to_numpy().astype(np.float64, copy=False)  # nulls become NaN
    return column.to_numpy(zero_copy_only=False)
