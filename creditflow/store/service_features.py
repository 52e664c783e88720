"""A FeatureService's features for scoring: online in-process, and point-in-time for batches.

Feast's ``get_online_features`` plans every call anew (feature references parsed, entity
values turned into protos and back, an ``OnlineResponse`` built and converted to a dict):
most of the scoring budget. This reader does that planning once, from the same FeatureService
in the registry: per call it is the online store's own ``online_read`` for each batch view and
the on-demand view's own transformation, several times cheaper (docs/benchmarks.md).
(Projections that rename join keys are refused: this service has none.)

It also enforces each view's TTL online, as the point-in-time join does offline: Feast's online
read returns a value however old it is, so a bureau snapshot older than the view's TTL would be
served to the model as fresh although training saw it as missing. Such values are None here.

Batch scoring uses the same plan offline: Feast's point-in-time join of the batch views, then
the on-demand view's own transformation over whole columns. (Feast's historical path converts
the whole joined table to Python lists for a python-mode view: most of a large batch's time.)

The hand-made read relies on Feast internals (the online store's ``online_read``, the
transformation inside the on-demand view, the SQLite store's ``_get_conn``), so it is checked
where it is used: until one read has been compared with Feast's public path on entities with
stored values in every view, each online read also goes through the public path; the first
difference switches every later read to the public path, with a warning. An empty or
unreachable store never blocks a start: the check waits for a read that has something to
compare (readiness is :meth:`ServiceFeatures.probe`'s business). ``CREDITFLOW_FAST_PATHS=0``:
the public path only, no mmap pragma.

``tests/model/test_service_features.py`` checks both against Feast's own paths.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.online_response import TIMESTAMP_POSTFIX
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.types import Float32, Float64, Int32, Int64, String

from creditflow import clock
from creditflow.config import get_settings
from creditflow.store.features import get_service
from creditflow.store.point_in_time import point_in_time

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView, OnDemandFeatureView

log = logging.getLogger(__name__)


# Entity key values by Feast type: built directly, as Feast's generic conversion infers the type
# of every value.
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
    checks for every rarer kind first, for every value of every request."""
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

    def apply(
        self, values: Mapping[str, Any], as_arrays: bool = False, public: bool = False
    ) -> dict[str, Any]:
        """The view's transformation. A python-mode one is called directly (inputs by feature
        name): ``transform_dict`` adds a typeguard check around it, costly for one row.
        ``as_arrays``: numeric outputs as float64 arrays (NaN for None), for whole columns.
        ``public``: through ``transform_dict`` always."""
        if self.view.mode == "python" and not self.view.singleton and not public:
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
    without a ``pread`` call each. A pragma on Feast's own connection."""
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    if isinstance(online_store, SqliteOnlineStore):
        online_store._get_conn(config).execute(f"PRAGMA mmap_size={size}")


class ServiceFeatures:
    """Reads a FeatureService's features for entity rows (keys + request data)."""

    def __init__(
        self, store: FeatureStore, service_name: str, fast_paths: bool | None = None
    ) -> None:
        """``fast_paths``: the hand-made read, checked against Feast's public path on the first
        reads (default: the ``CREDITFLOW_FAST_PATHS`` setting); False: the public path only."""
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
        self.refs = [f"{read.view.name}:{name}" for read in self.reads for name in read.features]
        self.fast = get_settings().fast_paths if fast_paths is None else fast_paths
        self.checked = False  # the hand-made read has equalled the public one on stored values

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
        now = now or clock.now()
        if not self.fast:
            values = self._public_values(rows, now)
        elif self.checked:
            values = self._fast_values(rows, now)
        else:
            values = self._checked_values(rows, now)
        return {name: values[name] for name in self.names}

    def _fast_values(self, rows: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, list]:
        """Every value the hand-made read computes: request data, views' features, outputs."""
        values: dict[str, list[Any]] = {key: [row[key] for row in rows] for key in rows[0]}
        for read in self.reads:
            values.update(self._read_view(read, values, len(rows), now))
        for transform in self.transforms:
            values.update(transform.apply(values))
        return values

    def _public_values(self, rows: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, list]:
        """The same values through Feast's public API: ``get_online_features`` for the batch
        views' features (with their event times, for the TTL), then ``transform_dict``."""
        values: dict[str, list[Any]] = {key: [row[key] for row in rows] for key in rows[0]}
        keys = sorted({key for read in self.reads for key in read.join_keys})
        found = self.store.get_online_features(
            features=self.refs, entity_rows=[{key: row[key] for key in keys} for row in rows]
        ).to_dict(include_event_timestamps=True)
        for read in self.reads:
            oldest = (now - read.view.ttl).timestamp() if read.view.ttl else None
            for name in read.features:
                times = found[f"{name}{TIMESTAMP_POSTFIX}"]
                values[name] = [
                    None if oldest is not None and at < oldest else value
                    for value, at in zip(found[name], times, strict=True)
                ]
        for transform in self.transforms:
            values.update(transform.apply(values, public=True))
        return values

    def _checked_values(self, rows: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, list]:
        """The hand-made read compared with the public one: the public answer and the public
        path from now on if they differ (or the hand-made read fails where the public one does
        not); checked for good once every batch view had a stored value among the rows."""
        theirs = self._public_values(rows, now)  # a store that does not answer raises here
        try:
            ours = self._fast_values(rows, now)
            difference = _difference(ours, theirs)
        except Exception as exc:  # a changed internal: the public path serves
            difference = f"{type(exc).__name__}: {exc}"
        if difference:
            self._fall_back(difference)
            return theirs
        self.checked = all(
            any(value is not None for name in read.features for value in ours[name])
            for read in self.reads
        )
        return ours

    def _fall_back(self, why: str) -> None:
        log.warning("hand-made feature read unused, Feast's public API serves every read: %s", why)
        self.fast = False

    def _check_transforms(self, values: Mapping[str, Any], rows: int = 64) -> None:
        """Each direct transformation against ``transform_dict`` on the first rows of a batch
        (the online check covers single rows); the public path from now on if one differs."""
        head = {name: column[:rows] for name, column in values.items()}
        for transform in self.transforms:
            ours, theirs = transform.apply(head), transform.apply(head, public=True)
            difference = _difference(ours, theirs)
            if difference:
                self._fall_back(f"{transform.view.name}: {difference}")
                return

    def historical(self, entities: pd.DataFrame, key: str) -> dict[str, np.ndarray]:
        """Every feature of the service as of each entity row's event time, beside the rows' keys
        and request data (``key``: unique per row), in the entities' order; rows out == rows in.

        Columns, not a DataFrame (building one cost a second per 1M rows, and batch scoring
        takes columns): numbers as float64 with NaN where missing, anything else as objects.
        """
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
        if self.fast:
            self._check_transforms(values)
        for transform in self.transforms:
            output = transform.apply(values, as_arrays=True, public=not self.fast)
            values.update({c: v for c, v in output.items() if c not in values})
        return values

    def probe(self) -> None:
        """Read a placeholder entity from every view: raises when the store does not answer.
        Through the hand-made read, else (without fast paths, or should it fail) Feast's public
        one: a broken hand-made read is the read check's business, not readiness's."""
        if self.fast:
            try:
                for read in self.reads:
                    keys = {c.name: ["" if c.dtype == String else 0] for c in read.key_columns}
                    self._read_view(read, keys, 1, clock.now())
                return
            except Exception:  # the public read below decides
                pass
        keys = {c.name: "" if c.dtype == String else 0
                for read in self.reads for c in read.key_columns}  # fmt: skip
        self.store.get_online_features(features=self.refs, entity_rows=[keys])

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


def _difference(ours: Mapping[str, list], theirs: Mapping[str, list]) -> str | None:
    """The first value of ``ours`` that ``theirs`` does not equal (NaN equals NaN), or None."""
    for name, column in ours.items():
        other = theirs.get(name)
        if other is None or len(other) != len(column):
            return f"{name}: not in Feast's answer"
        for row, (mine, its) in enumerate(zip(column, other, strict=True)):
            if not (mine == its or (mine != mine and its != its)):  # x != x: NaN
                return f"{name} of row {row}: {mine!r} here, {its!r} from Feast"
    return None


def _plain(column: pa.ChunkedArray) -> np.ndarray:
    """A joined column as numpy: float64 with NaN for numbers, objects with None otherwise."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return column.to_numpy().astype(np.float64, copy=False)  # nulls become NaN
    return column.to_numpy(zero_copy_only=False)
