"""Checks the cluster side of vid2mp3 offline: knative/, rabbitmq-source/, skaffold.yaml, the Dockerfile.

Against the released schemas inside the projects' Go modules, pinned by stack/validation/go.mod and read from
the Go module cache that `make setup` fills (the CRDs of Knative, eventing-rabbitmq and the RabbitMQ operators;
skaffold's v4beta13 JSON schema, pinned by stack/validation/skaffold/go.mod), the Kubernetes API schemas shipped
by the kubernetes-validate package, and the code the manifests deploy (events.catalog, runtime.settings,
functions/<name>/main.py). No cluster and no network needed.
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
import yaml

from stack.config import ALLOCATOR_TUNING

ROOT = Path(__file__).resolve().parents[2]
# The Go module that pins the projects whose released CRDs the custom resources are checked against, and the
# folders of each module that hold them.
VALIDATION_MODULE = ROOT / "stack" / "validation"
CRD_FOLDERS = {
    "knative.dev/serving": ("config/core/300-resources",),
    "knative.dev/eventing": ("config/core/resources",),
    "knative.dev/eventing-rabbitmq": ("config/broker", "config/source"),
    "github.com/rabbitmq/cluster-operator/v2": ("config/crd/bases",),
    "github.com/rabbitmq/messaging-topology-operator": ("config/crd/bases",),
}
# skaffold has a module of its own, so that its many dependencies stay out of the build of the Go admission test.
SKAFFOLD_MODULE = VALIDATION_MODULE / "skaffold"
SKAFFOLD_API_VERSION = "skaffold/v4beta13"
SKAFFOLD_SCHEMA = Path("docs-v2/content/en/schemas/v4beta13.json")
MANIFEST_DIRS = ("knative", "rabbitmq-source")
DEPLOY_DOC = ROOT / "docs" / "DEPLOY.md"

# The oldest Kubernetes minor for Knative 1.22; kubernetes-validate uses its newest schemas up to this one.
KUBERNETES_VERSION = "1.33"
NAMESPACE = "vid2mp3"
BROKER = "vid2mp3"
SETTINGS_CONFIGMAP = "vid2mp3-settings"
SECRET = "vid2mp3-secrets"
# The deadletter function fails the job (or marks its email failed) for an event the broker gave up on. The webhook
# deliveries' Triggers carry the same job events, but a webhook that cannot be sent must not touch the job.
SUBSCRIBERS_WITHOUT_DEAD_LETTERS = {"delivery"}
DEAD_LETTER_SERVICE = "deadletter"
PUBLIC_FUNCTIONS = {"auth", "upload", "status", "download", "web", "webhooks"}
VISIBILITY_LABEL = "networking.knative.dev/visibility"
PARALLELISM_ANNOTATION = "rabbitmq.eventing.knative.dev/parallelism"
KNATIVE_MAX_TIMEOUT_SECONDS = 600
# RabbitMQ's default consumer_timeout; the dispatcher holds a message unacked through all its tries.
RABBITMQ_CONSUMER_TIMEOUT = timedelta(minutes=30)
# How the eventing-rabbitmq controller labels the pods of Broker vid2mp3's ingress
# (pkg/reconciler/broker/resources/ingress.go, IngressLabels): NetworkPolicies select them by these.
BROKER_INGRESS_POD_LABELS = {
    "eventing.knative.dev/broker": BROKER,
    "eventing.knative.dev/brokerRole": "ingress",
}
# Fields Knative accepts behind a feature flag that is on by default but that the released CRD schema does not
# list (the schema keeps such nodes open with x-kubernetes-preserve-unknown-fields; we close them, see below).
FEATURE_GATED_FIELDS: dict[tuple[str, str], dict[tuple[str, ...], dict[str, Any]]] = {
    # eventing's `delivery-timeout`, on by default; eventing-rabbitmq hands it to the dispatcher as TIMEOUT.
    ("eventing.knative.dev", "Trigger"): {("spec", "delivery"): {"timeout": {"type": "string"}}},
}
CORE_GROUPS = {"", "apps", "batch", "policy", "autoscaling"}

# --- the manifests ----------


@dataclass(frozen=True)
class Manifest:
    path: Path
    index: int
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind"))

    @property
    def group(self) -> str:
        return str(self.doc.get("apiVersion", "")).rpartition("/")[0]

    @property
    def version(self) -> str:
        return str(self.doc.get("apiVersion", "")).rpartition("/")[2]

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name"))

    @property
    def namespace(self) -> str | None:
        return (self.doc.get("metadata") or {}).get("namespace")

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.kind}/{self.name}"


@functools.cache
def manifests() -> tuple[Manifest, ...]:
    found = []
    for directory in MANIFEST_DIRS:
        for path in sorted((ROOT / directory).glob("*.yaml")):
            for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
                if doc is not None:
                    found.append(Manifest(path, index, doc))
    return tuple(found)


def objects(kind: str, group: str | None = None) -> list[Manifest]:
    return [m for m in manifests() if m.kind == kind and (group is None or m.group == group)]


def knative_services() -> dict[str, dict[str, Any]]:
    return {m.name: m.doc for m in objects("Service", "serving.knative.dev")}


def config_map_data(name: str) -> dict[str, str]:
    found = [m.doc.get("data") or {} for m in objects("ConfigMap") if m.name == name]
    assert len(found) == 1, f"expected one ConfigMap {name} in {MANIFEST_DIRS}, found {len(found)}"
    return found[0]


def is_core(manifest: Manifest) -> bool:
    return manifest.group in CORE_GROUPS or manifest.group.endswith(".k8s.io")


def only_container(service: dict[str, Any]) -> dict[str, Any]:
    containers = service["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per function"
    return containers[0]


def walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for value in node:
            yield from walk(value, path)


def iso_duration(text: str) -> timedelta:
    """ISO-8601 durations as Knative delivery specs use them (PT0.5S, PT3M, P1DT2H)."""
    number = r"(\d+(?:\.\d+)?)"
    match = re.fullmatch(rf"P(?:{number}D)?(?:T(?:{number}H)?(?:{number}M)?(?:{number}S)?)?", text)
    assert match and text not in ("P", "PT"), f"{text!r} is not an ISO-8601 duration"
    days, hours, minutes, seconds = (float(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


# --- schemas ----------

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# CRD schemas leave `metadata` to the API server (ObjectMeta); this is the part of it our manifests may use.
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
        "namespace": {"type": "string", "pattern": DNS_SUBDOMAIN},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of an OpenAPI v3 schema in which every object that lists its properties accepts no others.

    Stricter than the API server on purpose: where a node lists properties AND sets
    x-kubernetes-preserve-unknown-fields (Trigger `spec`, `spec.delivery`), the server would keep a misspelt
    field and ignore it; here it fails. Nodes that list no properties (free-form maps) stay open.
    """
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: closed(sub) for name, sub in schema["properties"].items()}
        schema.setdefault("additionalProperties", False)
    for key in ("additionalProperties", "items", "not"):
        if isinstance(schema.get(key), dict):
            schema[key] = closed(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [closed(sub) for sub in schema[key]]
    return schema


@functools.cache
def module_folder(module: str, go_module: Path) -> Path:
    """Where the Go module cache holds `module` at the version go_module/go.mod pins (downloading it if absent)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    # readonly: the versions and hashes come from go.mod and go.sum, never from a newer release.
    environment = {**os.environ, "GOFLAGS": "-mod=readonly"}
    result = subprocess.run(
        [go, "mod", "download", "-json", module],
        cwd=go_module,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        info = json.loads(result.stdout)
    except json.JSONDecodeError:
        info = {}
    assert result.returncode == 0 and info.get("Dir"), (
        f"cannot find {module} of {go_module.relative_to(ROOT)}/go.mod in the Go module cache (run `make setup`): "
        f"{info.get('Error') or result.stderr.strip()}"
    )
    return Path(info["Dir"])


@functools.cache
def crd_files() -> tuple[Path, ...]:
    return tuple(
        path
        for module, folders in CRD_FOLDERS.items()
        for folder in folders
        for path in sorted((module_folder(module, VALIDATION_MODULE) / folder).glob("*.yaml"))
    )


@functools.cache
def crd_schemas() -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> openAPIV3Schema of every served version of every CRD of the pinned modules."""
    index = {}
    for path in crd_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served", True):
                    index[(spec["group"], version["name"], spec["names"]["kind"])] = version["schema"][
                        "openAPIV3Schema"
                    ]
    return index


@functools.cache
def strict_crd_validator(group: str, version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = crd_schemas().get((group, version, kind))
    assert schema is not None, (
        f"no CRD for {kind} {group}/{version} in the modules of stack/validation/go.mod: wrong apiVersion or kind?"
    )
    schema = copy.deepcopy(schema)
    for path, fields in FEATURE_GATED_FIELDS.get((group, kind), {}).items():
        node = schema
        for part in path:
            node = node["properties"][part]
        node["properties"].update(fields)
    schema = closed(schema)
    schema["properties"].update(
        apiVersion={"const": f"{group}/{version}"}, kind={"const": kind}, metadata=OBJECT_META
    )
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    # OpenAPI v3.0 schemas are closest to JSON Schema draft 4 (e.g. boolean exclusiveMinimum).
    return jsonschema.Draft4Validator(schema)


def crd_errors(doc: dict[str, Any]) -> list[str]:
    group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
    validator = strict_crd_validator(group, version, str(doc.get("kind")))
    return sorted(
        f"{'.'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(doc)
    )


def kubernetes_errors(doc: dict[str, Any]) -> list[str]:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(str(part) for part in error.path) or '<root>'}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        pytest.fail(error.message)
    return []


# --- the Python side (written in parallel: skip until it is there) ----------


def import_or_skip(module: str) -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the repository's packages, when the project is not pip-installed
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        pytest.skip(f"{module} is not importable yet ({error}): cannot cross-check against it")


def settings_by_function() -> dict[str, Any]:
    return import_or_skip("runtime.settings").SETTINGS_BY_FUNCTION


def required_variables(settings_class: Any) -> set[str]:
    return {name.upper() for name, field in settings_class.model_fields.items() if field.is_required()}


def secret_variables(settings_class: Any) -> set[str]:
    from pydantic import SecretStr

    return {
        name.upper()
        for name, field in settings_class.model_fields.items()
        if field.annotation is SecretStr or SecretStr in get_args(field.annotation)
    }


# --- skaffold and Dockerfiles ----------


@functools.cache
def skaffold() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "skaffold.yaml").read_text())


def artifacts() -> dict[str, dict[str, Any]]:
    return {artifact["image"]: artifact for artifact in skaffold()["build"]["artifacts"]}


def function_of(image: str) -> str:
    assert image.startswith("vid2mp3-"), f"artifact {image}: images are named vid2mp3-<function>"
    return image.removeprefix("vid2mp3-")


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    logical, pending = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        instruction, _, arguments = pending.strip().partition(" ")
        logical.append((instruction.upper(), arguments.strip()))
        pending = ""
    return logical


def substitute(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda match: variables.get(match.group(1), ""), text)


@dataclass(frozen=True)
class ImageEntry:
    target: str | None
    source: str | None
    user: str | None
    base: str
    installs_ffmpeg: bool
    env: dict[str, str]


def image_entry(artifact: dict[str, Any]) -> ImageEntry:
    """What the image built for `artifact` runs: the functions-framework target and source, user, base."""
    docker = artifact.get("docker") or {}
    dockerfile = ROOT / artifact.get("context", ".") / docker.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file(), f"{artifact['image']}: {dockerfile} does not exist"
    variables = {name: str(value) for name, value in (docker.get("buildArgs") or {}).items()}
    env: dict[str, str] = {}
    command: list[str] = []
    user = base = None
    installs_ffmpeg = False
    for instruction, arguments in dockerfile_instructions(dockerfile):
        if instruction == "FROM":
            base = arguments.split()[0]
        elif instruction == "ARG":
            name, _, default = arguments.partition("=")
            variables.setdefault(name, default.strip('"'))
        elif instruction == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = substitute(value, {**variables, **env})
        elif instruction == "USER":
            user = substitute(arguments, variables)
        elif instruction in ("CMD", "ENTRYPOINT"):
            command = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        elif instruction == "RUN":
            installs_ffmpeg |= "ffmpeg" in substitute(arguments, variables)
    command = [substitute(part, {**variables, **env}) for part in command]

    def option(flag: str, variable: str) -> str | None:
        return command[command.index(flag) + 1] if flag in command else env.get(variable)

    assert base, f"{dockerfile}: no FROM"
    assert command[:3] == ["python", "-m", "runtime.server"], (
        f"{dockerfile}: the command must be functions-framework's server as runtime/server.py runs it"
    )
    return ImageEntry(
        target=option("--target", "FUNCTION_TARGET"),
        source=option("--source", "FUNCTION_SOURCE"),
        user=user,
        base=base,
        installs_ffmpeg=installs_ffmpeg,
        env=env,
    )


# === schema validation ==========

CUSTOM_RESOURCES = [m for m in manifests() if not is_core(m)]
CORE_OBJECTS = [m for m in manifests() if is_core(m)]


@pytest.mark.parametrize("manifest", CUSTOM_RESOURCES, ids=str)
def test_custom_resource_matches_its_crd_with_unknown_fields_rejected(manifest: Manifest) -> None:
    assert crd_errors(manifest.doc) == []


@pytest.mark.parametrize("manifest", CORE_OBJECTS, ids=str)
def test_core_object_matches_the_kubernetes_schema(manifest: Manifest) -> None:
    assert kubernetes_errors(manifest.doc) == []


def mutated(kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(next(m.doc for m in manifests() if m.kind == kind and m.name == name))
    change(doc)
    return doc


def parent_of(doc: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    return node


def set_path(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: parent_of(doc, path).__setitem__(path[-1], value)


def rename(*path: str | int, to: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        parent = parent_of(doc, path)
        parent[to] = parent.pop(path[-1])

    return change


# (what is wrong, kind, name, the change, a fragment of the expected error)
BAD_MANIFESTS = [
    (
        "misspelt Trigger delivery",
        "Trigger",
        "convert-on-video-uploaded",
        rename("spec", "delivery", to="deliver"),
        "'deliver' was unexpected",
    ),
    (
        "retry as a string",
        "Trigger",
        "convert-on-video-uploaded",
        set_path("spec", "delivery", "retry", value="6"),
        "is not of type 'integer'",
    ),
    (
        "unknown field in a delivery spec",
        "Trigger",
        "notify-on-audio-converted",
        rename("spec", "delivery", "timeout", to="timeOut"),
        "'timeOut' was unexpected",
    ),
    (
        "annotation value not a string",
        "Service",
        "convert",
        set_path("spec", "template", "metadata", "annotations", "autoscaling.knative.dev/min-scale", value=0),
        "is not of type 'string'",
    ),
    (
        "unknown container field",
        "Service",
        "upload",
        set_path("spec", "template", "spec", "containers", 0, "imagePullPolicyy", value="Always"),
        "'imagePullPolicyy' was unexpected",
    ),
    (
        "queue type outside the enum",
        "RabbitmqBrokerConfig",
        "vid2mp3-broker-config",
        set_path("spec", "queueType", value="lazy"),
        "is not one of",
    ),
    (
        "unknown metadata field",
        "Broker",
        BROKER,
        set_path("metadata", "annotation", value={}),
        "'annotation' was unexpected",
    ),
    (
        "source without a sink",
        "RabbitmqSource",
        "vid2mp3-producers",
        lambda doc: doc["spec"].pop("sink"),
        "'sink' is a required property",
    ),
    (
        "ping data as a mapping",
        "PingSource",
        "reconcile-every-minute",
        set_path("spec", "data", value={}),
        "is not of type 'string'",
    ),
    (
        "misspelt StatefulSet field",
        "StatefulSet",
        "mongodb",
        rename("spec", "replicas", to="replica"),
        "'replica' was unexpected",
    ),
    (
        "ConfigMap value not a string",
        "ConfigMap",
        SETTINGS_CONFIGMAP,
        set_path("data", "JWT_TTL_SECONDS", value=3600),
        "is not of type 'string'",
    ),
    (
        "NetworkPolicy protocol as a list",
        "NetworkPolicy",
        "convert-egress",
        set_path("spec", "egress", 0, "ports", 0, "protocol", value=["TCP"]),
        "is not of type",
    ),
]


@pytest.mark.parametrize(
    ("kind", "name", "change", "expected"),
    [case[1:] for case in BAD_MANIFESTS],
    ids=[case[0] for case in BAD_MANIFESTS],
)
def test_a_bad_manifest_is_rejected(
    kind: str, name: str, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    doc = mutated(kind, name, change)
    manifest = Manifest(ROOT, 0, doc)
    if is_core(manifest):
        errors = kubernetes_errors(doc)
    else:
        errors = crd_errors(doc)
    assert any(expected in error for error in errors), errors


def test_skaffold_config_matches_the_v4beta13_schema() -> None:
    schema_path = module_folder("github.com/GoogleContainerTools/skaffold/v2", SKAFFOLD_MODULE) / SKAFFOLD_SCHEMA
    schema = json.loads(schema_path.read_text())
    config = skaffold()
    assert config["apiVersion"] == SKAFFOLD_API_VERSION
    assert [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(config)] == []
    bad = copy.deepcopy(config)
    bad["deploy"]["kubectll"] = bad["deploy"].pop("kubectl")
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad)), (
        "a misspelt skaffold field must be rejected"
    )


# === shape of the deployment ==========


def test_every_object_is_named_once_and_lives_in_the_vid2mp3_namespace() -> None:
    keys = [(m.group, m.kind, m.name) for m in manifests()]
    assert len(keys) == len(set(keys)), f"repeated objects: {sorted(k for k in keys if keys.count(k) > 1)}"
    assert [m.name for m in objects("Namespace")] == [NAMESPACE]
    assert [str(m) for m in manifests() if m.kind != "Namespace" and m.namespace != NAMESPACE] == []


def test_skaffold_deploys_every_manifest_and_rewrites_images_in_knative_services() -> None:
    patterns = skaffold()["manifests"]["rawYaml"]
    listed = {path for pattern in patterns for path in ROOT.glob(pattern)}
    assert all(list(ROOT.glob(pattern)) for pattern in patterns), "a rawYaml pattern matches no file"
    assert {m.path for m in manifests()} <= listed
    assert "kubectl" in skaffold()["deploy"]
    allowed = skaffold()["resourceSelector"]["allow"]
    assert any(rule["groupKind"] == "Service.serving.knative.dev" and rule.get("image") for rule in allowed)
    assert {profile["name"] for profile in skaffold()["profiles"]} >= {"local", "prod"}


@pytest.mark.parametrize("name", sorted(knative_services()))
def test_knative_service_scales_to_zero_with_bounds_probes_and_limits(name: str) -> None:
    service = knative_services()[name]
    template = service["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert int(annotations["autoscaling.knative.dev/max-scale"]) >= 1
    spec = template["spec"]
    assert spec["containerConcurrency"] >= 1
    assert 0 < spec["timeoutSeconds"] <= KNATIVE_MAX_TIMEOUT_SECONDS
    container = only_container(service)
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: resources.{bound}"
    assert container["readinessProbe"] and container["livenessProbe"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert container["image"] == f"vid2mp3-{name}"


def test_public_functions_are_exposed_and_all_others_are_cluster_local() -> None:
    cluster_local = {
        name
        for name, service in knative_services().items()
        if (service["metadata"].get("labels") or {}).get(VISIBILITY_LABEL) == "cluster-local"
    }
    assert set(knative_services()) - cluster_local == PUBLIC_FUNCTIONS


def test_convert_takes_one_job_per_pod() -> None:
    spec = knative_services()["convert"]["spec"]["template"]["spec"]
    assert spec["containerConcurrency"] == 1


def test_every_function_has_a_service_an_image_and_a_settings_class() -> None:
    built = {function_of(image) for image in artifacts()}
    assert built == set(knative_services())
    assert set(settings_by_function()) == set(knative_services())


def test_every_built_image_is_used_and_every_used_image_is_built_or_pinned() -> None:
    used = {only_container(service)["image"] for service in knative_services().values()}
    assert used == set(artifacts())
    for statefulset in objects("StatefulSet"):
        for container in statefulset.doc["spec"]["template"]["spec"]["containers"]:
            image = container["image"]
            assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), f"{image} is not pinned"


# === events and delivery ==========


def triggers() -> list[Manifest]:
    return objects("Trigger", "eventing.knative.dev")


def test_triggers_filter_exactly_on_a_type_of_the_event_catalog() -> None:
    catalog = import_or_skip("events.catalog")
    known = {
        value
        for value in vars(catalog).values()
        if isinstance(value, str) and value.startswith("io.vid2mp3.")
    }
    assert triggers()
    for trigger in triggers():
        spec = trigger.doc["spec"]
        # eventing-rabbitmq honours only spec.filter.attributes (exact match), not spec.filters.
        assert "filters" not in spec, f"{trigger}: spec.filters is ignored by the RabbitMQ broker"
        attributes = spec["filter"]["attributes"]
        assert set(attributes) == {"type"}, f"{trigger}: filter on the event type alone"
        assert attributes["type"] in known, f"{trigger}: {attributes['type']} is not in events/catalog.py"


@pytest.mark.parametrize("trigger", triggers(), ids=str)
def test_trigger_delivery_retries_dead_letters_and_stays_within_the_consumer_timeout(
    trigger: Manifest,
) -> None:
    spec = trigger.doc["spec"]
    assert spec["broker"] == BROKER
    delivery = spec["delivery"]
    if spec["subscriber"]["ref"]["name"] in SUBSCRIBERS_WITHOUT_DEAD_LETTERS:
        assert "deadLetterSink" not in delivery, f"{trigger}: a dead letter here would fail or mark a job"
    else:
        assert delivery["deadLetterSink"]["ref"] == {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": DEAD_LETTER_SERVICE,
        }
    retry, delay, timeout = (
        delivery["retry"],
        iso_duration(delivery["backoffDelay"]),
        iso_duration(delivery["timeout"]),
    )
    assert retry >= 1
    if delivery["backoffPolicy"] == "exponential":
        backoff = sum((delay * 2**attempt for attempt in range(1, retry + 1)), timedelta())
    else:
        assert delivery["backoffPolicy"] == "linear"
        backoff = sum((delay * attempt for attempt in range(1, retry + 1)), timedelta())
    budget = (retry + 1) * timeout + backoff
    assert budget <= 0.8 * RABBITMQ_CONSUMER_TIMEOUT, f"{trigger}: {budget} of tries holds a message too long"
    parallelism = trigger.doc["metadata"]["annotations"][PARALLELISM_ANNOTATION]
    assert isinstance(parallelism, str) and 1 <= int(parallelism) <= 1000
    subscriber = knative_services()[spec["subscriber"]["ref"]["name"]]
    # Knative must not cut a try short before the Trigger gives up on it.
    assert subscriber["spec"]["template"]["spec"]["timeoutSeconds"] >= timeout.total_seconds()


def test_broker_is_rabbitmq_backed_with_quorum_queues_and_a_dead_letter_sink() -> None:
    [broker] = objects("Broker", "eventing.knative.dev")
    assert broker.name == BROKER
    assert broker.doc["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "RabbitMQBroker"
    config = broker.doc["spec"]["config"]
    [broker_config] = [m for m in objects("RabbitmqBrokerConfig") if m.name == config["name"]]
    assert config["kind"] == "RabbitmqBrokerConfig" and broker_config.doc["spec"]["queueType"] == "quorum"
    assert broker.doc["spec"]["delivery"]["deadLetterSink"]["ref"]["name"] == DEAD_LETTER_SERVICE


def test_every_destination_names_an_object_that_exists() -> None:
    present = {(m.group, m.kind, m.name, m.namespace) for m in manifests()}
    checked = 0
    for manifest in manifests():
        for path, node in walk(manifest.doc.get("spec")):
            if path and path[-1] in ("sink", "subscriber", "deadLetterSink") and isinstance(node, dict):
                ref = node["ref"]
                key = (
                    ref["apiVersion"].rpartition("/")[0],
                    ref["kind"],
                    ref["name"],
                    ref.get("namespace", manifest.namespace),
                )
                assert key in present, (
                    f"{manifest}: {'.'.join(path)} names {key}, which is not in the manifests"
                )
                checked += 1
        if manifest.kind == "Trigger":
            assert (
                "eventing.knative.dev",
                "Broker",
                manifest.doc["spec"]["broker"],
                manifest.namespace,
            ) in present
    assert checked >= len(triggers()) * 2


def test_every_rabbitmq_reference_names_the_cluster() -> None:
    clusters = {m.name for m in objects("RabbitmqCluster", "rabbitmq.com")}
    references = [
        (str(manifest), node["name"])
        for manifest in manifests()
        for path, node in walk(manifest.doc.get("spec"))
        if path and path[-1] == "rabbitmqClusterReference"
    ]
    assert references and all(name in clusters for _, name in references), references


def test_the_local_stack_reads_the_same_broker_and_triggers() -> None:
    stack_manifests = import_or_skip("stack.manifests")
    routing = stack_manifests.load_routing(ROOT / "knative")
    assert routing.broker.name == BROKER
    assert sorted(trigger.name for trigger in routing.triggers) == sorted(m.name for m in triggers())


# === settings and secrets ==========


def sink_bound_services() -> set[str]:
    bound = set()
    for binding in objects("SinkBinding", "sources.knative.dev"):
        subject = binding.doc["spec"]["subject"]
        assert (subject["apiVersion"], subject["kind"]) == ("serving.knative.dev/v1", "Service")
        assert binding.doc["spec"]["sink"]["ref"]["kind"] == "Broker"
        for name, service in knative_services().items():
            labels = service["metadata"].get("labels") or {}
            if subject.get("name") == name or selects(subject.get("selector"), labels):
                bound.add(name)
    return bound


@dataclass(frozen=True)
class Provided:
    source: str  # value | configmap | secret | sinkbinding
    optional: bool = False


def provided_variables(name: str) -> dict[str, Provided]:
    container = only_container(knative_services()[name])
    provided: dict[str, Provided] = {}
    for source in container.get("envFrom") or []:
        assert "secretRef" not in source, f"{name}: secrets one by one through secretKeyRef, not envFrom"
        config_map = source["configMapRef"]["name"]
        for key in config_map_data(config_map):
            provided[source.get("prefix", "") + key] = Provided("configmap")
    for variable in container.get("env") or []:
        value_from = variable.get("valueFrom") or {}
        if "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            assert ref["name"] == SECRET, (
                f"{name}: {variable['name']} from Secret {ref['name']}, not {SECRET}"
            )
            provided[variable["name"]] = Provided("secret", bool(ref.get("optional")))
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            assert ref["key"] in config_map_data(ref["name"]), f"{name}: {ref} names no ConfigMap key"
            provided[variable["name"]] = Provided("configmap", bool(ref.get("optional")))
        else:
            assert "value" in variable, f"{name}: {variable['name']} has neither value nor valueFrom"
            provided[variable["name"]] = Provided("value")
    if name in sink_bound_services():
        provided["K_SINK"] = Provided("sinkbinding")
    return provided


@pytest.mark.parametrize("name", sorted(knative_services()))
def test_every_setting_a_function_requires_is_provided_by_its_service(name: str) -> None:
    settings_class = settings_by_function().get(name)
    assert settings_class is not None, (
        f"runtime/settings.py has no settings class for Service {name}"
    )
    provided = provided_variables(name)
    fields = {field.upper() for field in settings_class.model_fields}
    missing = {
        variable
        for variable in required_variables(settings_class)
        if variable not in provided or provided[variable].optional
    }
    assert missing == set(), f"{name} needs {sorted(missing)}"
    for variable in secret_variables(settings_class) & set(provided):
        assert provided[variable].source == "secret", f"{name}: {variable} is a secret: secretKeyRef only"
    explicit = {variable["name"] for variable in only_container(knative_services()[name]).get("env") or []}
    assert explicit <= fields, (
        f"{name}: {sorted(explicit - fields)} are not settings of {settings_class.__name__}"
    )


def test_settings_configmap_holds_only_known_non_secret_settings() -> None:
    classes = settings_by_function().values()
    known = {field.upper() for settings_class in classes for field in settings_class.model_fields}
    secrets = set().union(*(secret_variables(settings_class) for settings_class in classes))
    data = config_map_data(SETTINGS_CONFIGMAP)
    assert set(data) - known == set(), "ConfigMap keys that no function reads (misspelt?)"
    assert set(data) & secrets == set(), "secrets belong in the Secret, through secretKeyRef"


def test_sinkbinding_gives_k_sink_to_exactly_the_functions_that_emit() -> None:
    emitters = {
        name
        for name, settings_class in settings_by_function().items()
        if "K_SINK" in required_variables(settings_class)
    }
    assert sink_bound_services() == emitters


def test_every_secret_key_used_is_created_in_the_deploy_guide() -> None:
    used = {
        node["secretKeyRef"]["key"]
        for manifest in manifests()
        for _, node in walk(manifest.doc)
        if isinstance(node, dict)
        and isinstance(node.get("secretKeyRef"), dict)
        and node["secretKeyRef"].get("name") == SECRET
    }
    documented = set(re.findall(r"--from-(?:literal|file)=([a-z0-9-]+)=", DEPLOY_DOC.read_text()))
    assert used and used == documented


def repository_files() -> list[Path]:
    """What would be committed: tracked and untracked-but-not-ignored files (all files outside git)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skipped = {
            ".git",
            ".local",
            ".venv",
            "node_modules",
            "__pycache__",
            ".pytest_cache",
            ".mypy_cache",
            ".ruff_cache",
        }
        return [p for p in ROOT.rglob("*") if p.is_file() and not skipped & set(p.relative_to(ROOT).parts)]


SECRET_PATTERNS = {
    "PEM private key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    "SendGrid API key": re.compile(r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b"),
}
SECRET_LOOKING_NAME = re.compile(
    r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY|API_KEY|MONGO_URI|MYSQL_URL", re.IGNORECASE
)
CREDENTIALS_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s:/@$<{]+:[^\s@$<{]+@")


def test_no_secret_value_is_in_the_repository() -> None:
    found = []
    for path in repository_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        found += [
            f"{path.relative_to(ROOT)}: {what}"
            for what, pattern in SECRET_PATTERNS.items()
            if pattern.search(text)
        ]
    for manifest in manifests():
        assert manifest.kind != "Secret", f"{manifest}: Secrets are created on the cluster (docs/DEPLOY.md)"
        for path, node in walk(manifest.doc):
            if (
                isinstance(node, dict)
                and "name" in node
                and "value" in node
                and SECRET_LOOKING_NAME.search(node["name"])
            ):
                found.append(f"{manifest}: {node['name']} has a literal value")
            if (
                path
                and re.search(r"password|secret|token", path[-1], re.IGNORECASE)
                and isinstance(node, str)
            ):
                found.append(f"{manifest}: {'.'.join(path)} is a literal")
            if isinstance(node, str) and CREDENTIALS_IN_URL.search(node):
                found.append(f"{manifest}: {'.'.join(path)} has credentials in a URL")
    assert found == []


@pytest.mark.parametrize(
    "text",
    [
        # Split so that this file does not itself hold what the scan looks for.
        "key: |\n  -----BEGIN " + "PRIVATE KEY-----\n  MC4CAQAwBQYDK2VwBCIEI\n",
        "SENDGRID_API_KEY=SG." + "a" * 22 + "." + "b" * 43,
        "MONGO_URI: mongodb://root:hunter2@mongodb:27017/",
    ],
)
def test_the_secret_scan_would_catch(text: str) -> None:
    assert any(pattern.search(text) for pattern in [*SECRET_PATTERNS.values(), CREDENTIALS_IN_URL])


# === network policies ==========


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if not {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]:
            return False
    return True


def pod_labels() -> dict[str, dict[str, str]]:
    """The labels of every pod the manifests make, as the controllers will set them."""
    pods = {"broker ingress": BROKER_INGRESS_POD_LABELS}
    for statefulset in objects("StatefulSet"):
        pods[f"statefulset {statefulset.name}"] = statefulset.doc["spec"]["template"]["metadata"]["labels"]
    for name, service in knative_services().items():
        template_labels = service["spec"]["template"].get("metadata", {}).get("labels") or {}
        pods[f"function {name}"] = {**template_labels, "serving.knative.dev/service": name}
    return pods


@pytest.mark.parametrize("policy", objects("NetworkPolicy"), ids=str)
def test_network_policy_selectors_match_pods_that_exist(policy: Manifest) -> None:
    spec = policy.doc["spec"]
    selectors = [spec["podSelector"]] + [
        peer["podSelector"]
        for rules in (spec.get("ingress") or [], spec.get("egress") or [])
        for rule in rules
        for peer in rule.get("from", []) + rule.get("to", [])
        if peer.get("podSelector") and "namespaceSelector" not in peer
    ]
    for selector in selectors:
        if selector:
            assert any(selects(selector, labels) for labels in pod_labels().values()), (
                f"{selector} selects no pod"
            )


def test_broker_ingress_and_convert_are_closed_to_other_namespaces_and_convert_egress_is_limited() -> None:
    policies = [m.doc["spec"] for m in objects("NetworkPolicy")]

    def applying_to(labels: dict[str, str], policy_type: str) -> list[dict[str, Any]]:
        return [p for p in policies if policy_type in p["policyTypes"] and selects(p["podSelector"], labels)]

    ingress_pod = BROKER_INGRESS_POD_LABELS
    [ingress_policy] = applying_to(ingress_pod, "Ingress")
    assert all("namespaceSelector" not in peer for rule in ingress_policy["ingress"] for peer in rule["from"])
    convert_pod = pod_labels()["function convert"]
    assert applying_to(convert_pod, "Ingress")
    [egress] = applying_to(convert_pod, "Egress")
    destinations = [peer for rule in egress["egress"] for peer in rule["to"]]
    pods = pod_labels()
    reachable = {
        name
        for name, labels in pods.items()
        if any(selects(peer.get("podSelector"), labels) for peer in destinations)
    }
    assert reachable == {"broker ingress", "statefulset mongodb"}


# === images ==========


@pytest.mark.parametrize("image", sorted(artifacts()))
def test_image_runs_an_existing_function_target_as_non_root(image: str) -> None:
    function = function_of(image)
    entry = image_entry(artifacts()[image])
    assert entry.target == function
    assert entry.source and entry.source.endswith(f"functions/{function}/main.py")
    assert entry.user and entry.user.split(":")[0].isdigit() and entry.user.split(":")[0] != "0"
    assert ":" in entry.base and not entry.base.endswith(":latest"), f"{entry.base}: pin the base image"
    assert entry.installs_ffmpeg == (function in {"convert", "segment", "upload"}), \
        "ffmpeg in the images of the converters and of the upload (its extraction) only"
    tuning = {name: entry.env.get(name) for name in ALLOCATOR_TUNING}
    assert tuning == ALLOCATOR_TUNING, "the image's allocator settings differ from the local stack's"
    main = ROOT / "functions" / function / "main.py"
    if not main.is_file():
        pytest.skip(f"{main.relative_to(ROOT)} is not written yet")
    definitions = {
        node.name: node
        for node in ast.parse(main.read_text()).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert function in definitions, f"{main.relative_to(ROOT)} defines no function {function}()"
    decorators = {ast.unparse(decorator) for decorator in definitions[function].decorator_list}
    assert decorators & {"functions_framework.http", "functions_framework.cloud_event"}, decorators
