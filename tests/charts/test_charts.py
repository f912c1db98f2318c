"""The Helm charts, rendered offline by Helm's own code and checked against Kubernetes' schemas."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from grid_common.identity import NodeIdentity

CHARTS = Path(__file__).resolve().parents[2] / "charts"
NAMESPACE = "tenant-a"
KUBE_VERSIONS = ("1.30.0", "1.33.0")
EXTERNAL_URL = "postgresql+psycopg://grid:s3cret-pw@db.example.org:5432/grid"
RPC_URL = "https://rpc.example.org/v3/provider-api-key"
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|DATABASE_URL|RPC_URL", re.I)

COMMON_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "external-db": {"database": {"type": "external", "external": {"url": EXTERNAL_URL}}},
    "external-db-secret": {
        "database": {
            "type": "external",
            "external": {"existingSecret": "pg-credentials", "existingSecretKey": "url"},
        }
    },
    "loadbalancer-no-ingress": {
        "service": {"type": "LoadBalancer"},
        "ingress": {"enabled": False},
    },
    "nodeport": {"service": {"type": "NodePort", "nodePort": 30080}},
    "ingress-tls": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "grid.example.org",
            "tls": [{"secretName": "grid-tls", "hosts": ["grid.example.org"]}],
        }
    },
    "own-keys-and-image": {
        "keys": {"existingSecret": "my-node-keys"},
        "image": {"repository": "registry.example.org/grid", "tag": "9.9.9"},
    },
}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "grid-domain": {
        **COMMON_PRESETS,
        "workers-5": {"workers": {"replicas": 5}},
        "gpu-workers": {
            "image": {"tag": "0.1.0"},
            "workers": {
                "device": "cuda",
                "imageTag": "0.1.0-cuda",
                "resources": {
                    "requests": {"cpu": "1", "memory": "4Gi"},
                    "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1},
                },
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
            },
        },
        "chain-and-owner": {
            "chain": {"rpcUrl": RPC_URL, "registryAddress": "0x" + "ab" * 20},
            "owner": {"email": "owner@example.org", "password": "owner-password-1"},
            "workers": {"token": "gridw_secret_worker_token"},
            "domain": {"readinessRequiresChain": False},
        },
    },
    "grid-network": {
        **COMMON_PRESETS,
        "operator": {"operator": {"email": "op@example.org", "password": "op-password-1"}},
    },
}
CASES = [(chart, preset) for chart, presets in PRESETS.items() for preset in presets]


def render(chart: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    loaded = helm.Chart.load(CHARTS / chart)
    loaded.validate_schema(values)
    manifests = loaded.render(values, name="hospital", namespace=NAMESPACE, is_install=True)
    return [
        document
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for document in yaml.safe_load_all(text)
        if document
    ]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet"):
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]


def secret_values(objects: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {
        (s["metadata"]["name"], key): base64.b64decode(value).decode()
        for s in of_kind(objects, "Secret")
        for key, value in (s.get("data") or {}).items()
    }


def env_of(spec: dict[str, Any], container: str) -> dict[str, dict[str, Any]]:
    found = next(c for c in spec["containers"] if c["name"] == container)
    return {e["name"]: e for e in found.get("env", [])}


def main_pod(objects: list[dict[str, Any]], chart: str) -> dict[str, Any]:
    component = chart.removeprefix("grid-")
    deployment = next(
        d
        for d in of_kind(objects, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    )
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module", params=CASES, ids=[f"{c}-{p}" for c, p in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str, dict[str, Any], list[dict[str, Any]]]:
    chart, preset = request.param
    values = PRESETS[chart][preset]
    return chart, preset, values, render(chart, values)


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize(("chart", "preset"), CASES)
def test_lint_strict(chart: str, preset: str, kube: str) -> None:
    report = helm.lint(CHARTS / chart, PRESETS[chart][preset], strict=True, kube_version=f"v{kube}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == [], report


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_every_manifest_is_valid_kubernetes(case: tuple, kube: str) -> None:
    _, _, _, objects = case
    for manifest in objects:
        kubernetes_validate.validate(manifest, kube, strict=True)


def test_nothing_names_a_namespace(case: tuple) -> None:
    _, _, _, objects = case
    assert all("namespace" not in o["metadata"] for o in objects)
    assert NAMESPACE not in json.dumps(objects)


def test_secrets_stay_out_of_config_maps_and_plain_env(case: tuple) -> None:
    _, _, _, objects = case
    secrets = {v for v in secret_values(objects).values() if len(v) >= 8}
    for config_map in of_kind(objects, "ConfigMap"):
        for key, value in config_map["data"].items():
            assert not SECRETISH.search(key), key
            assert not any(secret in value for secret in secrets), key
    for name, spec in pod_specs(objects):
        for container in spec["containers"] + spec.get("initContainers", []):
            for env in container.get("env", []):
                if "value" in env:
                    assert not SECRETISH.search(env["name"]), (name, env["name"])
                    assert env["value"] not in secrets, (name, env["name"])


def test_every_container_has_resources_and_probes(case: tuple) -> None:
    _, _, _, objects = case
    for name, spec in pod_specs(objects):
        for container in spec["containers"] + spec.get("initContainers", []):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), (name, container["name"])
            assert {"cpu", "memory"} <= set(resources["limits"]), (name, container["name"])
        for container in spec["containers"]:  # init containers take no probes
            assert "livenessProbe" in container, (name, container["name"])
            assert "readinessProbe" in container, (name, container["name"])


def test_the_node_is_probed_on_healthz_and_readyz_and_runs_as_non_root(case: tuple) -> None:
    chart, _, values, objects = case
    spec = main_pod(objects, chart)
    node = spec["containers"][0]
    assert node["livenessProbe"]["httpGet"]["path"] == "/healthz"
    skip_chain = values.get("domain", {}).get("readinessRequiresChain") is False
    expected = "/readyz?skip=chain" if skip_chain else "/readyz"
    assert node["readinessProbe"]["httpGet"]["path"] == expected
    assert node["args"][:2] == [chart.removeprefix("grid-"), "start"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert node["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in node["volumeMounts"]}
    claims = {v["name"]: v for v in spec["volumes"]}
    assert "persistentVolumeClaim" in claims[mounts["/data"]]


def test_the_image_tag_defaults_to_the_app_version(case: tuple) -> None:
    chart, _, values, objects = case
    app_version = yaml.safe_load((CHARTS / chart / "Chart.yaml").read_text())["appVersion"]
    tag = values.get("image", {}).get("tag") or app_version
    repository = values.get("image", {}).get("repository", "grid")
    images = {
        c["image"]
        for _, spec in pod_specs(objects)
        for c in spec["containers"] + spec.get("initContainers", [])
        if c["name"] != "postgresql"
    }
    worker_tag = values.get("workers", {}).get("imageTag")  # GPU workers' CUDA build
    assert images == {f"{repository}:{t}" for t in (tag, worker_tag) if t}


def test_service_type_and_optional_ingress(case: tuple) -> None:
    _, _, values, objects = case
    (service,) = [
        s for s in of_kind(objects, "Service") if not s["metadata"]["name"].endswith("postgresql")
    ]
    wanted = values.get("service", {})
    assert service["spec"]["type"] == wanted.get("type", "ClusterIP")
    port = service["spec"]["ports"][0]
    assert port.get("nodePort") == wanted.get("nodePort")
    ingresses = of_kind(objects, "Ingress")
    if values.get("ingress", {}).get("enabled"):
        (ingress,) = ingresses
        rule = ingress["spec"]["rules"][0]
        assert rule["host"] == values["ingress"]["host"]
        backend = rule["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert ingress["spec"]["tls"] == values["ingress"]["tls"]
    else:
        assert ingresses == []
    assert len(of_kind(objects, "ServiceAccount")) == 1


def test_database_bundled_or_external_by_a_secret(case: tuple) -> None:
    chart, _, values, objects = case
    database = values.get("database", {"type": "bundled"})
    url_from = env_of(main_pod(objects, chart), chart.removeprefix("grid-"))["GRID_DATABASE_URL"]
    ref = url_from["valueFrom"]["secretKeyRef"]
    secrets = secret_values(objects)
    statefulsets = of_kind(objects, "StatefulSet")
    if database["type"] == "bundled":
        (postgres,) = statefulsets
        claim = postgres["spec"]["volumeClaimTemplates"][0]["spec"]
        assert claim["resources"]["requests"]["storage"]
        url = secrets[(ref["name"], ref["key"])]
        assert url.startswith("postgresql+psycopg://grid:")
        assert f"@{postgres['metadata']['name']}:5432/grid" in url
    else:
        assert statefulsets == []
        external = database["external"]
        if external.get("existingSecret"):
            assert ref == {"name": external["existingSecret"], "key": external["existingSecretKey"]}
        else:
            assert secrets[(ref["name"], ref["key"])] == EXTERNAL_URL


def test_node_keys_are_a_secret_the_node_can_load(case: tuple) -> None:
    chart, _, values, objects = case
    spec = main_pod(objects, chart)
    keys = next(v for v in spec["volumes"] if v["name"] == "keys")["secret"]["secretName"]
    secret_key = env_of(spec, chart.removeprefix("grid-"))["GRID_SECRET_KEY"]
    assert secret_key["valueFrom"]["secretKeyRef"]["name"] == keys
    if values.get("keys", {}).get("existingSecret"):
        assert keys == values["keys"]["existingSecret"]
        assert not any(name == keys for name, _ in secret_values(objects))
        return
    (rendered,) = [s for s in of_kind(objects, "Secret") if s["metadata"]["name"] == keys]
    assert rendered["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    data = secret_values(objects)
    identity = NodeIdentity.from_json(data[(keys, "node_identity.json")])
    assert len(identity.node_id) == 32
    assert len(data[(keys, "secret-key")]) >= 32
    if chart == "grid-domain":
        assert re.fullmatch(r"0x[0-9a-f]{64}", data[(keys, "eth-private-key")])


def test_domain_workers_scale_and_take_their_token_from_a_secret() -> None:
    objects = render("grid-domain", PRESETS["grid-domain"]["workers-5"])
    (worker,) = [
        d
        for d in of_kind(objects, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    ]
    assert worker["spec"]["replicas"] == 5
    spec = worker["spec"]["template"]["spec"]
    env = env_of(spec, "worker")
    assert env["GRID_WORKER_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hospital-grid-domain-worker-token",
        "key": "token",
    }
    assert env["GRID_DOMAIN_URL"]["value"] == "http://hospital-grid-domain:80"
    assert spec["containers"][0]["args"][:2] == ["worker", "start"]


def test_gpu_workers_run_the_cuda_image_on_a_gpu_and_the_domain_does_not() -> None:
    objects = render("grid-domain", PRESETS["grid-domain"]["gpu-workers"])
    pods = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["spec"]
        for d in of_kind(objects, "Deployment")
    }
    worker = pods["worker"]["containers"][0]
    assert worker["image"] == "grid:0.1.0-cuda"
    assert worker["args"][-2:] == ["--device", "cuda"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pods["worker"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    domain = main_pod(objects, "grid-domain")["containers"][0]
    assert domain["image"] == "grid:0.1.0" and "nvidia.com/gpu" not in str(domain["resources"])
    with pytest.raises(helm.HelmValuesError):
        helm.Chart.load(CHARTS / "grid-domain").validate_schema({"workers": {"device": "gpu"}})


def test_domain_chain_and_owner_come_from_the_release_secret() -> None:
    objects = render("grid-domain", PRESETS["grid-domain"]["chain-and-owner"])
    spec = main_pod(objects, "grid-domain")
    env = env_of(spec, "domain")
    secrets = secret_values(objects)
    for name, expected in (
        ("GRID_CHAIN_RPC_URL", RPC_URL),
        ("GRID_OWNER_PASSWORD", "owner-password-1"),
    ):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert secrets[(ref["name"], ref["key"])] == expected
    (config_map,) = of_kind(objects, "ConfigMap")
    assert config_map["data"]["GRID_REGISTRY_ADDRESS"] == "0x" + "ab" * 20
    assert secrets[("hospital-grid-domain-worker-token", "token")] == "gridw_secret_worker_token"


@pytest.mark.parametrize("chart", sorted(PRESETS))
@pytest.mark.parametrize(
    "bad",
    [
        {"service": {"type": "ExternalName"}},
        {"database": {"type": "sqlite"}},
        {"ingress": {"enabled": "yes"}},
        {"persistence": {"accessModes": []}},
        {"node": {"logFormat": "xml"}},
        {"typo": True},
    ],
    ids=["service-type", "database-type", "ingress-flag", "access-modes", "log-format", "typo"],
)
def test_the_schema_refuses_bad_values(chart: str, bad: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        helm.Chart.load(CHARTS / chart).validate_schema(bad)


def test_domain_schema_checks_worker_count_and_registry_address() -> None:
    loaded = helm.Chart.load(CHARTS / "grid-domain")
    for bad in ({"workers": {"replicas": -1}}, {"chain": {"registryAddress": "0x1234"}}):
        with pytest.raises(helm.HelmValuesError):
            loaded.validate_schema(bad)


def test_an_external_database_without_a_url_fails_clearly() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"database\.external\.url"):
        render("grid-domain", {"database": {"type": "external"}})


def test_the_dockerfile_builds_what_the_charts_run() -> None:
    dockerfile = (CHARTS.parent / "Dockerfile").read_text()
    pyproject = (CHARTS.parent / "pyproject.toml").read_text()
    torch_pin = re.search(r'"(torch==[^"]+)"', pyproject)
    assert torch_pin is not None and f"pip install {torch_pin.group(1)} " in dockerfile
    assert "download.pytorch.org/whl/cpu" in dockerfile
    assert 'ENTRYPOINT ["grid"]' in dockerfile
    values = yaml.safe_load((CHARTS / "grid-domain" / "values.yaml").read_text())
    assert f"USER {values['podSecurityContext']['runAsUser']}" in dockerfile
