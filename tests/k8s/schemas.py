"""Offline validation of the manifests under k8s/: Kubernetes' own schemas (the ``kubernetes-validate``
package), KubeRay's CRDs (``../shared/k8s``) and the Prometheus operator's models (cloudcoil)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
K8S_VERSION = "1.30.0"  # oldest Kubernetes the manifests must work on (GKE/EKS stable channels)


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest under k8s/ (the plain Prometheus rule file is not one)."""
    return sorted(p for p in K8S.rglob("*.yaml") if "prometheus" not in p.relative_to(K8S).parts)


def documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                yield path, doc


def _strict(schema: Any) -> Any:
    """An OpenAPI schema where objects with declared properties refuse unknown ones (a typo in a field
    name would otherwise pass: the API server prunes it silently)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validator(crd_dir: str, kind: str, version: str = "v1") -> jsonschema.protocols.Validator:
    """A strict JSON-schema validator for one KubeRay kind, from its CRD's openAPIV3Schema."""
    for path in Path(crd_dir).glob("ray.io_*.yaml"):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if crd and crd["spec"]["names"]["kind"] == kind:
                for v in crd["spec"]["versions"]:
                    if v["name"] == version:
                        schema = _strict(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
                        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
                        return cls(schema)
    raise LookupError(f"no CRD for kind {kind} version {version} in {crd_dir}")


def crd_errors(crd_dir: Path, doc: dict[str, Any]) -> list[str]:
    """Messages for every way ``doc`` breaks its KubeRay CRD schema (empty when it validates)."""
    validator = crd_validator(str(crd_dir), doc["kind"], doc["apiVersion"].split("/")[-1])
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def core_errors(doc: dict[str, Any]) -> list[str]:
    """Messages for a core Kubernetes object that breaks the upstream schema (strict: no unknown fields)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def unknown_fields(given: Any, dumped: Any, path: str = "") -> list[str]:
    """Keys present in ``given`` but missing from the model's dump of it (models that ignore extras)."""
    if isinstance(given, dict) and isinstance(dumped, dict):
        out = []
        for k, v in given.items():
            if k not in dumped:
                out.append(f"{path}{k}")
            else:
                out += unknown_fields(v, dumped[k], f"{path}{k}.")
        return out
    if isinstance(given, list) and isinstance(dumped, list):
        return [e for g, d in zip(given, dumped, strict=False) for e in unknown_fields(g, d, path)]
    return []


def operator_errors(doc: dict[str, Any]) -> list[str]:
    """Messages for a monitoring.coreos.com object that breaks the Prometheus operator's CRD model."""
    import pydantic
    from cloudcoil.models.prometheus_operator import v1

    model = getattr(v1, doc["kind"])
    try:
        obj = model.model_validate(doc)
    except pydantic.ValidationError as exc:
        return [str(exc)]
    dumped = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [f"unknown field {f}" for f in unknown_fields(doc, dumped)]


def pod_templates(rayservice: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group name, pod template) for the head and every worker group of a RayService."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    yield "head", cluster["headGroupSpec"]["template"]
    for group in cluster["workerGroupSpecs"]:
        yield group["groupName"], group["template"]
