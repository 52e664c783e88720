"""Access to the feature store and to the model's feature contract.

The contract (ordered feature names and whether each is categorical) is read from the
FeatureService in the registry, never from a list in code: training stores it with the model
and serving builds its vectors in that stored order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from creditflow.config import FEATURE_REPO, Settings, export_environment, get_settings

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore


@dataclass(frozen=True)
class FeatureContract:
    """What the model consumes, in order."""

    service: str
    names: tuple[str, ...]
    categorical: tuple[str, ...]
    types: tuple[str, ...]  # Feast value type of each feature, e.g. "Int64"

    def to_metadata(self) -> dict:
        return {
            "feature_service": self.service,
            "feature_names": list(self.names),
            "categorical_features": list(self.categorical),
            "feature_types": dict(zip(self.names, self.types, strict=True)),
        }

    @classmethod
    def from_metadata(cls, meta: dict) -> FeatureContract:
        return cls(
            service=meta["feature_service"],
            names=tuple(meta["feature_names"]),
            categorical=tuple(meta["categorical_features"]),
            types=tuple(meta["feature_types"][name] for name in meta["feature_names"]),
        )


def get_store(settings: Settings | None = None) -> FeatureStore:
    """The Feast store of the current profile and home."""
    settings = settings or get_settings()
    export_environment(settings)
    from feast import FeatureStore

    return FeatureStore(repo_path=str(FEATURE_REPO), fs_yaml_file=settings.feature_store_yaml)


def get_service(store: FeatureStore, name: str) -> FeatureService:
    try:
        return store.get_feature_service(name)
    except Exception as err:  # Feast raises its own NotFound types per registry backend
        raise LookupError(
            f"FeatureService {name!r} is not in the registry ({err}). "
            "Register the features first: `feast apply` in feature_repo/ (`make demo` does it)."
        ) from err


def variants_of(store: FeatureStore, service_name: str) -> list[str]:
    """FeatureServices declared as alternatives to this one (tag ``variant_of``)."""
    return sorted(
        fs.name for fs in store.list_feature_services() if fs.tags.get("variant_of") == service_name
    )


def definitions_hash(store: FeatureStore, service_name: str) -> str:
    """Hash of a FeatureService and every view it reads: changes when any definition does."""
    import hashlib

    service = get_service(store, service_name)
    digest = hashlib.sha256(service.to_proto().spec.SerializeToString(deterministic=True))
    for projection in service.feature_view_projections:
        try:
            view = store.get_feature_view(projection.name)
        except Exception:  # not a batch view: an on-demand one
            view = store.get_on_demand_feature_view(projection.name)
        digest.update(view.to_proto().spec.SerializeToString(deterministic=True))
    return digest.hexdigest()[:16]


def contract_of(store: FeatureStore, service_name: str) -> FeatureContract:
    """Ordered feature names and categorical flags of a FeatureService."""
    from feast.types import String

    service = get_service(store, service_name)
    names: list[str] = []
    types: list[str] = []
    categorical: list[str] = []
    for projection in service.feature_view_projections:
        for field in projection.features:
            if field.name in names:
                raise ValueError(f"feature {field.name!r} appears twice in {service_name}")
            names.append(field.name)
            types.append(str(field.dtype))
            if field.dtype == String:
                categorical.append(field.name)
    return FeatureContract(service_name, tuple(names), tuple(categorical), tuple(types))
