"""The Helm chart: lint, schema validation of every rendered object, and what each object must say."""

from __future__ import annotations

import json
import re
import shlex

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    Manifest,
    all_pods,
    executor_pod_templates,
    find,
    one,
    pod_labels,
    pod_spec,
    run_helm,
)

pytestmark = pytest.mark.deploy

CI_NAMES = [path.stem for path in CI_VALUES]
# The chart's kubeVersion floor, the version the brief names, and the newest schema the package ships.
K8S_VERSIONS = ["1.30.0", "1.34.0", kubernetes_validate.latest_version()]


def test_every_documented_value_set_exists() -> None:
    assert set(CI_NAMES) >= {"default", "minikube", "spark-on-kubernetes", "multi-node-training", "gpu"}


@pytest.mark.parametrize("values", CI_NAMES)
def test_helm_lint_strict(helm: str, values: str) -> None:
    result = run_helm(
        helm,
        "lint",
        "--strict",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--values",
        str(CHART / "ci" / f"{values}.yaml"),
    )
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rendered_objects_match_the_kubernetes_openapi_schemas(rendered, version: str) -> None:
    failures = []
    for values, objects in rendered.items():
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                failures.append(
                    f"{values}: {obj['kind']}/{obj['metadata']['name']}: {exc.message} at {exc.path}"
                )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.nodes=0", "/train/nodes"),
        ("preprocess.spark.mode=yarn", "/preprocess/spark/mode"),
        ("serve.autoscaling.targetCPUUtilizationPercentage=150", "targetCPUUtilizationPercentage"),
        ("serve.autoscalng.enabled=false", "autoscalng"),
    ],
)
def test_values_schema_rejects_bad_values(helm: str, setting: str, message: str) -> None:
    result = run_helm(helm, "template", "x", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def _leaf_paths(values: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths += [path, *_leaf_paths(value, f"{path}.")]
        else:
            paths.append(path)
    return paths


def test_every_value_is_documented_with_a_param_line() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^\s*## @param (\S+) \S", text, flags=re.MULTILINE))
    paths = _leaf_paths(yaml.safe_load(text))
    # A map documented as a whole (resources, security contexts) covers its keys.
    undocumented = [
        path
        for path in paths
        if not any(path == doc or path.startswith(doc + ".") for doc in documented)
        and not any(other.startswith(path + ".") for other in paths)
    ]
    assert not undocumented, f"values without `## @param`: {undocumented}"
    stale = sorted(documented - set(paths))
    assert not stale, f"`## @param` lines for values that do not exist: {stale}"


def test_schema_covers_every_top_level_value() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) == set(values)
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("values", CI_NAMES)
def test_every_object_carries_the_standard_labels(rendered, values: str) -> None:
    required = {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
        "helm.sh/chart",
    }
    for obj in rendered[values]:
        missing = required - set(obj["metadata"].get("labels", {}))
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        if pod_spec(obj) is not None:
            assert required <= set(pod_labels(obj)), f"pods of {obj['metadata']['name']} lack labels"
        if obj["kind"] != "PersistentVolume":
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_names_stay_within_63_characters(render) -> None:
    objects = render("spark-on-kubernetes", release="a-release-name-of-the-longest-length-helm-allows-53ch")
    for obj in objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
    job = one(objects, "Job", "train")
    # The Indexed Job's pods are named <job>-<index>, a DNS label.
    assert len(job["metadata"]["name"]) + len("-999") <= 63


@pytest.mark.parametrize("values", CI_NAMES)
def test_every_container_is_hardened(rendered, values: str) -> None:
    for name, spec in all_pods(rendered[values]):
        pod_context = spec["securityContext"]
        assert pod_context["runAsNonRoot"] is True, name
        assert pod_context["runAsUser"] > 10000, name
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        containers = spec["containers"] + spec.get("initContainers", [])
        for container in containers:
            where = f"{name} container {container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            # A read-only root needs a writable /tmp (caches, Spark's local dir, torchrun's files).
            mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
            volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
            if container["name"] != "wait-for-inputs":
                assert "emptyDir" in volumes[mounts["/tmp"]], where


@pytest.mark.parametrize("values", CI_NAMES)
def test_every_container_has_requests_and_limits(rendered, values: str) -> None:
    for name, spec in all_pods(rendered[values]):
        if name == "executor-template":
            continue  # Spark sets the executors' cpu and memory itself (checked below)
        for container in spec["containers"] + spec.get("initContainers", []):
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), f"{name}/{container['name']} {kind}"


@pytest.mark.parametrize("values", CI_NAMES)
def test_no_pod_gets_an_automatic_service_account_token(rendered, values: str) -> None:
    for name, spec in all_pods(rendered[values]):
        assert spec["automountServiceAccountToken"] is False, name
    for account in find(rendered[values], "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def _serve(objects):
    return one(objects, "Deployment", "serve")


def test_api_scales_with_an_hpa_from_2_to_5_at_50_percent_cpu(rendered) -> None:
    objects = rendered["default"]
    hpa = one(objects, "HorizontalPodAutoscaler", "serve")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
        }
    ]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", _serve(objects)["metadata"]["name"])


@pytest.mark.parametrize("values", CI_NAMES)
def test_no_replicas_field_beside_an_enabled_hpa(rendered, values: str) -> None:
    objects = rendered[values]
    deployment = _serve(objects)
    if find(objects, "HorizontalPodAutoscaler"):
        assert "replicas" not in deployment["spec"]
    else:
        assert deployment["spec"]["replicas"] >= 2
    # The CPU target is a share of the request: without one the HPA cannot work.
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]


def test_hpa_off_gives_a_fixed_replica_count(rendered) -> None:
    objects = rendered["multi-node-training"]
    assert not find(objects, "HorizontalPodAutoscaler")
    assert _serve(objects)["spec"]["replicas"] == 3


def test_api_probes_use_the_right_paths(rendered) -> None:
    container = _serve(rendered["default"])["spec"]["template"]["spec"]["containers"][0]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port == {"http": 8000}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # The model loads before /healthz answers: the startup probe allows minutes, not seconds.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert container["command"][:2] == ["tickercast", "serve"]
    assert {"--data=/data", "--host=0.0.0.0", "--port=8000"} <= set(container["command"])


def test_probe_timings_are_tunable(render) -> None:
    objects = render(
        None, "--set", "serve.probes.startup.failureThreshold=7,serve.probes.readiness.periodSeconds=4"
    )
    container = _serve(objects)["spec"]["template"]["spec"]["containers"][0]
    assert container["startupProbe"]["failureThreshold"] == 7
    assert container["readinessProbe"]["periodSeconds"] == 4


def test_api_is_scraped_spread_and_protected_by_a_pdb(rendered) -> None:
    objects = rendered["default"]
    template = _serve(objects)["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == "8000"
    spread = template["spec"]["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    pdb = one(objects, "PodDisruptionBudget", "serve")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


@pytest.mark.parametrize("values", CI_NAMES)
def test_services_select_their_pods(rendered, values: str) -> None:
    objects = rendered[values]
    workloads = [obj for obj in objects if pod_spec(obj) is not None and obj["kind"] != "Pod"]
    for service in find(objects, "Service"):
        selector = service["spec"]["selector"].items()
        assert any(selector <= pod_labels(w).items() for w in workloads), service["metadata"]["name"]


def test_network_policies_deny_ingress_except_the_api_port(rendered) -> None:
    objects = rendered["default"]
    policies = {p["metadata"]["name"]: p for p in find(objects, "NetworkPolicy")}
    default_deny = next(p for p in policies.values() if "ingress" not in p["spec"])
    assert default_deny["spec"]["policyTypes"] == ["Ingress"]
    # Every pod of the release falls under the default deny.
    for obj in objects:
        if pod_spec(obj) is not None:
            assert default_deny["spec"]["podSelector"]["matchLabels"].items() <= pod_labels(obj).items()
    api_policy = next(
        p for p in policies.values() if p["metadata"]["labels"]["app.kubernetes.io/component"] == "serve"
    )
    assert api_policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    mlflow_policy = policies[one(objects, "Deployment", "mlflow")["metadata"]["name"]]
    assert mlflow_policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_data_root_is_a_shared_read_write_many_claim(rendered) -> None:
    claim = next(
        c
        for c in find(rendered["default"], "PersistentVolumeClaim", "storage")
        if c["metadata"]["name"].endswith("-data")
    )
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for obj in rendered["default"]:
        spec = pod_spec(obj)
        if (
            spec is not None
            and obj["kind"] != "Pod"
            and obj["metadata"]["labels"]["app.kubernetes.io/component"] != "mlflow"
        ):
            claims = [
                v["persistentVolumeClaim"]["claimName"]
                for v in spec["volumes"]
                if "persistentVolumeClaim" in v
            ]
            assert claims == [claim["metadata"]["name"]], obj["metadata"]["name"]


def test_minikube_backs_the_claim_with_a_host_path(rendered) -> None:
    objects = rendered["minikube"]
    volume = one(objects, "PersistentVolume", "storage")
    claim = next(
        c
        for c in find(objects, "PersistentVolumeClaim", "storage")
        if c["metadata"]["name"].endswith("-data")
    )
    assert volume["spec"]["hostPath"]["path"] == "/data/tickercast"
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"]
    assert volume["spec"]["claimRef"] == {"namespace": NAMESPACE, "name": claim["metadata"]["name"]}
    for name, spec in all_pods(objects):
        for container in spec["containers"] + spec.get("initContainers", []):
            assert container["imagePullPolicy"] == "Never", name
            assert container["image"].endswith(":dev"), name


def _env(container) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in container.get("env", [])}


def test_jobs_and_api_get_the_mlflow_tracking_uri(rendered) -> None:
    objects = rendered["default"]
    mlflow = one(objects, "Deployment", "mlflow")
    service = one(objects, "Service", "mlflow")
    expected = f"http://{service['metadata']['name']}.{NAMESPACE}.svc:5000"
    for component in ("preprocess", "train", "serve"):
        kind = "Deployment" if component == "serve" else "Job"
        container = pod_spec(one(objects, kind, component))["containers"][0]
        assert _env(container)["MLFLOW_TRACKING_URI"] == expected, component
    command = mlflow["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["mlflow", "server"]
    assert "--backend-store-uri=sqlite:////mlflow/mlflow.db" in command
    assert "--artifacts-destination=/mlflow/artifacts" in command
    assert "--serve-artifacts" in command
    allowed = next(arg for arg in command if arg.startswith("--allowed-hosts="))
    assert f"{service['metadata']['name']}:*" in allowed.split("=", 1)[1].split(",")


def test_external_mlflow_replaces_the_server(rendered) -> None:
    objects = rendered["gpu"]
    assert not find(objects, "Deployment", "mlflow")
    container = pod_spec(one(objects, "Job", "train"))["containers"][0]
    assert _env(container)["MLFLOW_TRACKING_URI"] == "http://mlflow.mlops.svc:5000"


def _train(objects):
    job = one(objects, "Job", "train")
    return job, job["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("values", "nodes", "devices"), [("default", 1, 1), ("multi-node-training", 3, 2), ("gpu", 2, 2)]
)
def test_train_job_runs_torchrun_across_an_indexed_job(
    rendered, values: str, nodes: int, devices: int
) -> None:
    objects = rendered[values]
    job, spec = _train(objects)
    service = one(objects, "Service", "train")
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == nodes
    for field in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        assert job["spec"][field] > 0, field
    assert service["spec"]["clusterIP"] == "None"
    assert spec["subdomain"] == service["metadata"]["name"]
    job_name = job["metadata"]["name"]
    assert spec["containers"][0]["command"] == [
        "torchrun",
        f"--nnodes={nodes}",
        f"--nproc-per-node={devices}",
        "--node-rank=$(JOB_COMPLETION_INDEX)",
        "--rdzv-backend=static",
        f"--rdzv-endpoint={job_name}-0.{service['metadata']['name']}:29500",
        "--max-restarts=0",
        "-m",
        "tickercast",
        "train",
        "--data=/data",
        f"--devices={devices}",
        f"--num-nodes={nodes}",
        *(["--max-epochs=3"] if values == "minikube" else []),
    ]
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"


def test_train_waits_for_the_preprocess_output(rendered) -> None:
    _, spec = _train(rendered["default"])
    wait = spec["initContainers"][0]
    script = wait["command"][-1]
    assert "/data/curated/manifest.json" in script
    assert "getaddrinfo" in script  # ranks above 0 wait for rank 0's DNS name
    env = _env(wait)
    assert int(env["WAIT_SECONDS"]) > 0
    assert float(env["NOT_BEFORE"]) > 0  # a manifest from before this release is stale
    compile(script, "wait-for-inputs", "exec")


def test_cpu_training_uses_gloo_and_gpu_training_uses_nccl(rendered) -> None:
    _, cpu = _train(rendered["multi-node-training"])
    container = cpu["containers"][0]
    assert _env(container)["TICKERCAST_TRAIN__ACCELERATOR"] == "cpu"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert container["image"] == "tickercast-train:0.1.0"

    _, gpu = _train(rendered["gpu"])
    container = gpu["containers"][0]
    assert _env(container)["TICKERCAST_TRAIN__ACCELERATOR"] == "gpu"
    assert "NCCL_DEBUG" in _env(container)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["image"] == "tickercast-train:0.1.0-gpu"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def _preprocess(objects):
    return pod_spec(one(objects, "Job", "preprocess"))


def test_preprocess_runs_spark_in_the_pod_by_default(rendered) -> None:
    objects = rendered["default"]
    spec = _preprocess(objects)
    container = spec["containers"][0]
    assert container["args"] == ["tickercast", "preprocess", "--data=/data", "--master=local[2]"]
    assert _env(container)["TICKERCAST_SPARK__MASTER"] == "local[2]"
    assert _env(container)["SPARK_LOCAL_DIRS"].startswith("/tmp")
    assert not find(objects, "Role")
    assert "serviceAccountName" not in spec
    seed = spec["initContainers"][0]["command"][-1]
    assert "tickercast data sample --out /data" in seed


def test_preprocess_on_kubernetes_submits_to_the_api_server(rendered) -> None:
    objects = rendered["spark-on-kubernetes"]
    spec = _preprocess(objects)
    args = spec["containers"][0]["args"]
    driver_service = next(
        s for s in find(objects, "Service", "preprocess") if s["spec"].get("clusterIP") == "None"
    )
    conf = dict(arg.removeprefix("--conf=").split("=", 1) for arg in args if arg.startswith("--conf="))
    assert args[0] == "spark-submit"
    assert "--master=k8s://https://kubernetes.default.svc:443" in args
    assert "--deploy-mode=client" in args
    assert conf["spark.executor.instances"] == "3"
    assert conf["spark.kubernetes.namespace"] == NAMESPACE
    assert conf["spark.kubernetes.container.image"] == "tickercast-preprocess:0.1.0"
    assert conf["spark.driver.host"] == f"{driver_service['metadata']['name']}.{NAMESPACE}.svc"
    assert conf["spark.driver.port"] == "7078"
    assert conf["spark.driver.blockManager.port"] == "7079"
    assert conf["spark.kubernetes.driver.pod.name"] == "$(POD_NAME)"
    assert conf["spark.local.dir"].startswith("/tmp")
    assert conf["spark.kubernetes.allocation.batch.size"] == "3"  # extraConf passes through
    claim = conf["spark.kubernetes.executor.volumes.persistentVolumeClaim.data.options.claimName"]
    assert claim.endswith("-data")
    assert args[-2:] == [
        "/opt/venv/lib/python3.11/site-packages/tickercast/preprocess/submit.py",
        "--data=/data",
    ]
    assert (
        _env(spec["containers"][0])["TICKERCAST_SPARK__MASTER"] == "k8s://https://kubernetes.default.svc:443"
    )
    # The driver's headless Service reaches the driver pod on both ports.
    assert driver_service["spec"]["selector"].items() <= pod_labels(one(objects, "Job", "preprocess")).items()
    assert {p["port"] for p in driver_service["spec"]["ports"]} == {7078, 7079}


def test_spark_submit_passes_the_jvm_options_the_local_session_uses(rendered) -> None:
    from tickercast.preprocess.session import JVM_OPTIONS

    args = _preprocess(rendered["spark-on-kubernetes"])["containers"][0]["args"]
    conf = dict(arg.removeprefix("--conf=").split("=", 1) for arg in args if arg.startswith("--conf="))
    assert f"--driver-java-options={JVM_OPTIONS}" in args
    assert conf["spark.executor.extraJavaOptions"] == JVM_OPTIONS


def test_spark_driver_may_manage_executor_pods_and_nothing_more(rendered) -> None:
    objects = rendered["spark-on-kubernetes"]
    spec = _preprocess(objects)
    role = one(objects, "Role", "preprocess")
    binding = one(objects, "RoleBinding", "preprocess")
    account = one(objects, "ServiceAccount", "preprocess")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    (rule,) = role["rules"]
    assert set(rule["resources"]) == {"pods", "services", "configmaps", "persistentvolumeclaims"}
    assert {"create", "delete", "get", "list", "watch"} <= set(rule["verbs"])
    assert "*" not in rule["verbs"] + rule["resources"]
    # The token reaches the driver through an explicit, expiring projected volume.
    token = next(v for v in spec["volumes"] if v["name"] == "api-token")
    assert token["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] <= 3600
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "api-token")
    assert mount["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"


def test_spark_executors_are_hardened_through_their_pod_template(rendered) -> None:
    objects = rendered["spark-on-kubernetes"]
    config_map = next(c for c in find(objects, "ConfigMap") if "executor-pod.yaml" in c["data"])
    template = yaml.safe_load(config_map["data"]["executor-pod.yaml"])
    spec = _preprocess(objects)
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "spark-templates")
    args = spec["containers"][0]["args"]
    assert f"--conf=spark.kubernetes.executor.podTemplateFile={mount['mountPath']}/executor-pod.yaml" in args
    assert template["spec"]["containers"][0]["name"] == "spark-executor"
    assert "--conf=spark.kubernetes.executor.podTemplateContainerName=spark-executor" in args
    # Driver and executors reach each other, and nothing else reaches them.
    policy = next(
        p
        for p in find(objects, "NetworkPolicy")
        if "tickercast.io/spark-app" in p["spec"]["podSelector"]["matchLabels"]
    )
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items()
        <= pod_labels(one(objects, "Job", "preprocess")).items()
    )


def test_daily_refresh_cronjob_is_optional(rendered) -> None:
    assert not find(rendered["default"], "CronJob")
    cron = one(rendered["spark-on-kubernetes"], "CronJob", "preprocess")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["schedule"] == "30 22 * * 1-5"


def test_helm_test_hook_checks_readyz_and_predict(rendered) -> None:
    objects = rendered["default"]
    (pod,) = [
        obj for obj in find(objects, "Pod") if obj["metadata"].get("annotations", {}).get("helm.sh/hook")
    ]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    script = container["command"][-1]
    compile(script, "helm-test", "exec")
    assert '"/readyz"' in script
    assert '"/predict?ticker="' in script
    service = one(objects, "Service", "serve")
    assert _env(container)["API_URL"] == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:80"


@pytest.mark.parametrize(
    ("setting", "absent"),
    [
        ("mlflow.enabled=false", ("Deployment", "mlflow")),
        ("preprocess.enabled=false", ("Job", "preprocess")),
        ("train.enabled=false", ("Job", "train")),
        ("serve.enabled=false", ("Deployment", "serve")),
        ("storage.existingClaim=shared-data", ("PersistentVolumeClaim", "storage")),
        ("networkPolicy.enabled=false", ("NetworkPolicy", None)),
    ],
)
def test_components_can_be_switched_off(render, setting: str, absent: tuple[str, str | None]) -> None:
    objects = render(None, "--set", setting)
    assert not find(objects, *absent)
    if setting.startswith("storage."):
        for obj in find(objects, "Job"):
            claims = [
                v["persistentVolumeClaim"]["claimName"]
                for v in pod_spec(obj)["volumes"]
                if "persistentVolumeClaim" in v
            ]
            assert claims == ["shared-data"]


def test_extra_args_are_passed_as_separate_arguments(render) -> None:
    objects = render(None, "--set", "preprocess.extraArgs={--full}", "--set", "train.extraArgs={--resume}")
    assert _preprocess(objects)["containers"][0]["args"][-1] == "--full"
    assert _train(objects)[1]["containers"][0]["command"][-1] == "--resume"
    # No argument is a shell string that would need word splitting.
    for arg in _train(objects)[1]["containers"][0]["command"]:
        assert shlex.split(arg) == [arg]


# The kind each template file holds, by file name (or, for a file named after what it does, by folder).
KIND_OF_FILE = {
    "configmap": "ConfigMap",
    "cronjob": "CronJob",
    "deployment": "Deployment",
    "hpa": "HorizontalPodAutoscaler",
    "job": "Job",
    "networkpolicy": "NetworkPolicy",
    "pdb": "PodDisruptionBudget",
    "pv": "PersistentVolume",
    "pvc": "PersistentVolumeClaim",
    "role": "Role",
    "rolebinding": "RoleBinding",
    "service": "Service",
    "serviceaccount": "ServiceAccount",
}
# Value sets that, together with ci/*.yaml, switch on every optional object.
EVERYTHING_ON = (
    "spark-on-kubernetes",
    "--set",
    "storage.hostPath.enabled=true,train.nodes=2,serve.autoscaling.enabled=true,serve.pdb.enabled=true",
)


def _kinds_by_template(helm: str, *args: str) -> dict[str, set[str]]:
    """Render the chart and map each template file (relative to templates/) to the kinds it rendered."""
    text = run_helm(helm, "template", "tickercast", str(CHART), "--namespace", NAMESPACE, *args).stdout
    kinds: dict[str, set[str]] = {}
    for document in re.split(r"^---\s*$", text, flags=re.MULTILINE):
        source = re.search(r"^# Source: [^/]+/templates/(\S+)$", document, flags=re.MULTILINE)
        obj = yaml.safe_load(document)
        if source and obj:
            kinds.setdefault(source.group(1), set()).add(obj["kind"])
    return kinds


def test_each_template_file_holds_one_kind_in_a_component_folder(helm: str) -> None:
    templates = CHART / "templates"
    files = sorted(
        path.relative_to(templates).as_posix()
        for path in templates.rglob("*")
        if path.is_file()
        and not path.name.startswith("_")
        and path.name != "NOTES.txt"
        and path.relative_to(templates).parts[0] != "tests"
    )
    misplaced = [name for name in files if len(name.split("/")) != 2]
    assert not misplaced, f"templates outside a component folder: {misplaced}"

    rendered: dict[str, set[str]] = {}
    value_sets = [("--values", str(path)) for path in CI_VALUES]
    value_sets.append(("--values", str(CHART / "ci" / f"{EVERYTHING_ON[0]}.yaml"), *EVERYTHING_ON[1:]))
    for args in value_sets:
        for name, kinds in _kinds_by_template(helm, *args).items():
            rendered.setdefault(name, set()).update(kinds)
    never = sorted(set(files) - set(rendered))
    assert not never, f"templates no value set renders (so unchecked): {never}"
    for name in files:
        folder, stem = name.removesuffix(".yaml").split("/")
        expected = KIND_OF_FILE.get(stem, KIND_OF_FILE.get(folder))
        assert rendered[name] == {expected}, f"{name} renders {sorted(rendered[name])}, not only {expected}"


# Whose values each pod follows, by its app.kubernetes.io/component label: the helm test Pod runs
# the serve image, the Spark executors are the preprocess job's.
VALUES_OF_POD = {
    "serve": "serve",
    "test": "serve",
    "mlflow": "mlflow",
    "train": "train",
    "preprocess": "preprocess",
    "preprocess-executor": "preprocess",
}


def _pods_by_component(objects) -> list[tuple[str, Manifest]]:
    """(component label, pod spec) of every pod the release creates, Spark executors included."""
    pods = [
        (pod_labels(obj)["app.kubernetes.io/component"], pod_spec(obj)) for obj in objects if pod_spec(obj)
    ]
    pods += [
        (template["metadata"]["labels"]["app.kubernetes.io/component"], template["spec"])
        for template in executor_pod_templates(objects)
    ]
    return pods


@pytest.mark.parametrize("component", ["serve", "mlflow", "train", "preprocess"])
def test_a_component_value_reaches_only_that_components_pods(render, component: str) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": f"pool-{component}", "operator": "Exists"}]}
                ]
            }
        }
    }
    objects = render(
        "spark-on-kubernetes",
        "--set",
        f"{component}.image.repository=custom-{component},{component}.image.pullPolicy=Always,"
        f"{component}.securityContext.runAsUser=20000,{component}.nodeSelector.pool={component}",
        "--set-json",
        f"{component}.affinity={json.dumps(affinity)}",
    )
    reached = set()
    for label, spec in _pods_by_component(objects):
        owner = VALUES_OF_POD[label] == component
        if owner:
            reached.add(label)
            assert spec["affinity"] == affinity, label
            assert spec["nodeSelector"] == {"pool": component}, label
        else:
            assert "affinity" not in spec, label
            assert "nodeSelector" not in spec, label
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{label}/{container['name']}"
            if "image" in container:  # the executors' image comes from spark-submit, checked below
                if owner:
                    assert container["image"] == f"custom-{component}:0.1.0", where
                else:
                    assert container["image"].startswith("tickercast-"), where
                assert container["imagePullPolicy"] == ("Always" if owner else "IfNotPresent"), where
            context = container["securityContext"]
            assert context["runAsUser"] == (20000 if owner else 10001), where
            # The rest of the hardened context stays: the component's keys are merged over it.
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
    assert reached == {label for label, owner in VALUES_OF_POD.items() if owner == component}
    args = _preprocess(objects)["containers"][0]["args"]
    executor_image = "custom-preprocess:0.1.0" if component == "preprocess" else "tickercast-preprocess:0.1.0"
    assert f"--conf=spark.kubernetes.container.image={executor_image}" in args


def test_component_image_fields_fall_back_to_the_global_image(render) -> None:
    objects = render(
        None, "--set", "image.registry=registry.example/team/,image.tag=1.2.3,train.image.tag=1.2.4"
    )
    images = {
        component: pod_spec(one(objects, kind, component))["containers"][0]["image"]
        for kind, component in [
            ("Deployment", "serve"),
            ("Deployment", "mlflow"),
            ("Job", "train"),
            ("Job", "preprocess"),
        ]
    }
    assert images == {
        "serve": "registry.example/team/tickercast-serve:1.2.3",
        "mlflow": "registry.example/team/tickercast-train:1.2.3",
        "train": "registry.example/team/tickercast-train:1.2.4",
        "preprocess": "registry.example/team/tickercast-preprocess:1.2.3",
    }
