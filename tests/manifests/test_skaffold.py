"""Runs skaffold itself on skaffold.yaml, offline: the release `make setup` builds from stack/validation/skaffold
parses the config under each profile, and `skaffold render` gives every Knative Service the image of its artifact.

skaffold.yaml and the manifests are read when the tests run, so a new function's Service and artifact need no
change here; a Service whose artifact is missing fails the render test. No cluster, Docker daemon or network.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests.test_manifests import (
    ROOT,
    SKAFFOLD_API_VERSION,
    SKAFFOLD_MODULE,
    knative_services,
    manifests,
    skaffold,
    walk,
)

SKAFFOLD_BINARY = ROOT / ".local" / "bin" / "skaffold"
SKAFFOLD_MODULE_PATH = "github.com/GoogleContainerTools/skaffold/v2"
PROFILES = [profile["name"] for profile in skaffold()["profiles"]]
# The --default-repo of the commands docs/DEPLOY.md gives: kind's for `local`, a stand-in registry otherwise.
DEFAULT_REPOS = {"local": "kind.local"}
REGISTRY = "registry.example.com/vid2mp3"
# What Docker accepts as a tag.
DOCKER_TAG = r"\w[\w.-]{0,127}"
# Contexts of the local clusters the `local` profile's activation names, and one of a remote cluster.
LOCAL_CONTEXTS = ["kind-vid2mp3", "minikube", "docker-desktop"]
REMOTE_CONTEXT = "gke_vid2mp3_europe-west1_prod"


def pinned_version() -> str:
    match = re.search(
        rf"^\s*(?:require\s+)?{re.escape(SKAFFOLD_MODULE_PATH)} (v\S+)", (SKAFFOLD_MODULE / "go.mod").read_text(), re.M
    )
    assert match, f"{SKAFFOLD_MODULE.relative_to(ROOT)}/go.mod requires no {SKAFFOLD_MODULE_PATH}"
    return match.group(1)


def run_skaffold(
    *arguments: str, home: Path, cwd: Path = ROOT, kube_context: str | None = None
) -> subprocess.CompletedProcess[str]:
    assert SKAFFOLD_BINARY.exists(), f"{SKAFFOLD_BINARY.relative_to(ROOT)} is missing: run `make setup`"
    # skaffold takes any flag from a SKAFFOLD_<FLAG> variable and defaults (default-repo, kube-context, metrics)
    # from ~/.skaffold/config: neither may come from whoever runs the tests. Neither may their kubeconfig, whose
    # context would activate profiles (skaffold.yaml activates `local` for kind-* contexts).
    environment = {name: value for name, value in os.environ.items() if not name.startswith("SKAFFOLD_")}
    environment["HOME"] = str(home)
    environment["KUBECONFIG"] = str(home / "kubeconfig")
    (home / "kubeconfig").unlink(missing_ok=True)
    if kube_context is not None:
        (home / "kubeconfig").write_text(yaml.safe_dump(kubeconfig(kube_context)))
    return subprocess.run(
        # Without these two, skaffold asks a release server for a newer version and may prompt for a survey.
        [str(SKAFFOLD_BINARY), *arguments, "--update-check=false", "--interactive=false"],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def kubeconfig(context: str) -> dict[str, Any]:
    """A kubeconfig whose current context is `context`, for a server nothing listens on (nothing may reach it)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": context,
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "clusters": [{"name": context, "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": context, "user": {}}],
    }


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{' '.join(result.args[1:])} failed:\n{result.stderr}"
    return result.stdout


def resolved_config(home: Path, *arguments: str, kube_context: str | None = None) -> dict[str, Any]:
    """The configuration skaffold parsed, profiles applied (`diagnose --yaml-only` reads no image, needs no daemon)."""
    return yaml.safe_load(
        succeeded(run_skaffold("diagnose", "--yaml-only", *arguments, home=home, kube_context=kube_context))
    )


def contains(outer: Any, inner: Any) -> bool:
    """Whether `outer` has every field of `inner` with the same value (skaffold fills in defaults beside them)."""
    if isinstance(inner, dict):
        return isinstance(outer, dict) and all(key in outer and contains(outer[key], inner[key]) for key in inner)
    if isinstance(inner, list):
        return isinstance(outer, list) and len(outer) == len(inner) and all(map(contains, outer, inner))
    return bool(outer == inner)


def profile_fields(name: str) -> dict[str, Any]:
    [profile] = [profile for profile in skaffold()["profiles"] if profile["name"] == name]
    return {key: value for key, value in profile.items() if key not in ("name", "activation")}


def container_images(doc: dict[str, Any]) -> list[str]:
    return [
        container["image"]
        for path, containers in walk(doc)
        if path[-1:] in (("containers",), ("initContainers",)) and isinstance(containers, list)
        for container in containers
    ]


def default_repo(profile: str) -> str:
    return DEFAULT_REPOS.get(profile, REGISTRY)


def rendered(home: Path, profile: str, cwd: Path = ROOT) -> list[dict[str, Any]]:
    arguments = ["--offline", "--digest-source=tag", f"--profile={profile}", f"--default-repo={default_repo(profile)}"]
    output = succeeded(run_skaffold("render", *arguments, home=home, cwd=cwd))
    return [doc for doc in yaml.safe_load_all(output) if doc]


def image_problems(docs: list[dict[str, Any]], config: dict[str, Any], repo: str) -> list[str]:
    """How the rendered Knative Services miss their artifacts' images: each Service of the manifests must be
    there, every image of it `<repo>/<artifact>:<tag>` where the manifest has `<artifact>`, one tag for all."""
    artifacts = {artifact["image"] for artifact in config["build"]["artifacts"]}
    services = {
        doc["metadata"]["name"]: doc
        for doc in docs
        if doc.get("kind") == "Service" and str(doc.get("apiVersion")).startswith("serving.knative.dev/")
    }
    problems = [f"Service {name} is not rendered" for name in sorted(set(knative_services()) - set(services))]
    tags = set()
    for name, source in sorted(knative_services().items()):
        if name not in services:
            continue
        for before, after in zip(container_images(source), container_images(services[name]), strict=True):
            match = re.fullmatch(rf"{re.escape(repo)}/(?P<artifact>[^/:@]+):(?P<tag>{DOCKER_TAG})", after)
            if not match or match["artifact"] != before or before not in artifacts:
                problems.append(
                    f"Service {name}: image {before} became {after}, not {repo}/{before}:<tag> of an artifact"
                )
            else:
                tags.add(match["tag"])
    if len(tags) > 1:
        problems.append(f"the artifacts got different tags in one render: {sorted(tags)}")
    return problems


def test_skaffold_is_the_pinned_release_and_reads_our_schema_as_its_newest(tmp_path: Path) -> None:
    output = succeeded(run_skaffold("version", "--output={{.Version}} {{.ConfigVersion}}", home=tmp_path))
    # A binary left from an older pin would be caught here (make setup rebuilds it when the pins change).
    assert output.split() == [pinned_version(), SKAFFOLD_API_VERSION]
    assert skaffold()["apiVersion"] == SKAFFOLD_API_VERSION


@pytest.mark.parametrize("profile", [None, *PROFILES])
def test_skaffold_parses_the_config(profile: str | None, tmp_path: Path) -> None:
    config = resolved_config(tmp_path, *([f"--profile={profile}"] if profile else []))
    assert config["apiVersion"] == SKAFFOLD_API_VERSION
    assert [artifact["image"] for artifact in config["build"]["artifacts"]] == [
        artifact["image"] for artifact in skaffold()["build"]["artifacts"]
    ]
    if profile:
        fields = profile_fields(profile)
        assert fields, f"profile {profile} changes nothing"
        assert contains(config, fields), f"skaffold did not apply profile {profile}: {fields}"


def test_skaffold_refuses_a_misspelt_field(tmp_path: Path) -> None:
    bad = skaffold() | {"deploy": {"kubectll": {}}}
    (tmp_path / "skaffold.yaml").write_text(yaml.safe_dump(bad))
    result = run_skaffold("diagnose", "--yaml-only", f"--filename={tmp_path / 'skaffold.yaml'}", home=tmp_path)
    assert result.returncode != 0 and "kubectll" in result.stderr, result.stderr


@pytest.mark.parametrize("context", LOCAL_CONTEXTS)
def test_the_local_profile_is_picked_for_local_clusters(context: str, tmp_path: Path) -> None:
    assert contains(resolved_config(tmp_path, kube_context=context), profile_fields("local"))


def test_no_profile_is_picked_for_a_remote_cluster(tmp_path: Path) -> None:
    config = resolved_config(tmp_path, kube_context=REMOTE_CONTEXT)
    assert config["build"] == resolved_config(tmp_path)["build"]
    assert "portForward" not in config


@pytest.mark.parametrize("profile", PROFILES)
def test_render_gives_every_knative_service_the_image_of_its_artifact(profile: str, tmp_path: Path) -> None:
    docs = rendered(tmp_path, profile)
    assert image_problems(docs, skaffold(), default_repo(profile)) == []

    # Every other object is deployed, with the images it is written with: the data stores keep their public ones.
    def others(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[str]]:
        return {
            (doc["apiVersion"], doc["kind"], doc["metadata"]["name"]): container_images(doc)
            for doc in docs
            if not (doc["kind"] == "Service" and doc["apiVersion"].startswith("serving.knative.dev/"))
        }

    assert others(docs) == others([m.doc for m in manifests()])


@pytest.mark.parametrize("profile", PROFILES)
def test_render_names_a_service_whose_artifact_is_missing(profile: str, tmp_path: Path) -> None:
    """The check above fails when an artifact is missing: skaffold then leaves that Service's image as written."""
    name, service = sorted(knative_services().items())[0]
    [image] = container_images(service)
    config = skaffold() | {
        "build": skaffold()["build"]
        | {"artifacts": [a for a in skaffold()["build"]["artifacts"] if a["image"] != image]}
    }
    # A copy of the repository's top level with this config; without .git, skaffold tags with `latest`.
    project = tmp_path / "project"
    project.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("skaffold.yaml", ".git", ".local"):
            (project / entry.name).symlink_to(entry)
    (project / "skaffold.yaml").write_text(yaml.safe_dump(config))
    problems = image_problems(rendered(tmp_path, profile, cwd=project), config, default_repo(profile))
    assert problems == [
        f"Service {name}: image {image} became {image}, not {default_repo(profile)}/{image}:<tag> of an artifact"
    ]
