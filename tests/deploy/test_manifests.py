"""The deployment files people apply: Kubernetes manifests validate against the API schema,
the compose file parses and carries a restart policy and a health check, and the Dockerfile
runs its commands in the exec form (hadolint DL3025), checked by hadolint where it is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from crypto_data_export.commands import backfill_cmd
from crypto_data_export.settings.settings import load_settings
from tests.support import REPO

KUBERNETES = REPO / "deploy" / "kubernetes"
MANIFESTS = sorted(KUBERNETES.rglob("*.yaml"))


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: str(p.relative_to(KUBERNETES)))
def test_every_kubernetes_manifest_validates_strictly(manifest: Path) -> None:
    for resource in yaml.safe_load_all(manifest.read_text(encoding="utf-8")):
        kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)


def test_the_cronjob_runs_one_cycle_every_two_hours_without_overlap_as_non_root() -> None:
    cronjob = yaml.safe_load((REPO / "deploy" / "kubernetes" / "cronjob.yaml").read_text(encoding="utf-8"))
    spec = cronjob["spec"]
    assert spec["schedule"] == "0 */2 * * *" and spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["scheduled-data-manager", "--manual"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"requests", "limits"} <= set(container["resources"])
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"crypto-data-exporter"}


def test_the_compose_file_parses_with_a_restart_policy_a_volume_and_a_health_check() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text(encoding="utf-8"))
    scheduler = compose["services"]["scheduler"]
    assert scheduler["restart"] == "unless-stopped"
    assert "--health" in " ".join(scheduler["healthcheck"]["test"])
    assert any(volume.endswith(":/app/historical_exports") for volume in scheduler["volumes"])


def test_the_dockerfile_runs_its_commands_in_the_exec_form() -> None:
    """DL3025: CMD, ENTRYPOINT and HEALTHCHECK's CMD as JSON arrays, so signals reach the process."""
    dockerfile = REPO / "Dockerfile"
    lines = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    commands = []
    for line in lines:
        words = line.split()
        if words and words[0] in ("CMD", "ENTRYPOINT"):
            commands.append(line.split(maxsplit=1)[1])
        elif words and words[0] == "HEALTHCHECK":
            commands.append(line.partition(" CMD ")[2])
    assert len(commands) == 2, commands  # the health check and the default command
    for command in commands:
        assert isinstance(json.loads(command), list), command
    hadolint = shutil.which("hadolint")
    if hadolint is not None:
        result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_applying_the_folder_starts_no_backfill() -> None:
    """`kubectl apply -f deploy/kubernetes/` (not recursive) creates the cronjob and its parts, never a Job."""
    kinds = {r["kind"] for m in KUBERNETES.glob("*.yaml") for r in yaml.safe_load_all(m.read_text(encoding="utf-8"))}
    assert "CronJob" in kinds and "Job" not in kinds


def test_the_backfill_job_gives_each_index_its_shard_of_the_bucket() -> None:
    """An Indexed Job whose N pods run shards 0/N .. N-1/N (JOB_COMPLETION_INDEX, expanded in args) at once,
    into a bucket: credentials from an optional Secret (else the workload identity), no shared volume."""
    job = yaml.safe_load((KUBERNETES / "backfill" / "backfill-job.yaml").read_text(encoding="utf-8"))
    cronjob = yaml.safe_load((KUBERNETES / "cronjob.yaml").read_text(encoding="utf-8"))
    config = yaml.safe_load((KUBERNETES / "configmap.yaml").read_text(encoding="utf-8"))["data"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"] > 1
    [container] = pod["containers"]
    args = container["args"]
    shard = args[args.index("--shard") + 1]
    assert shard == f"$(JOB_COMPLETION_INDEX)/{spec['completions']}"
    for index in range(spec["completions"]):  # what each pod's command line parses to
        expanded = [arg.replace("$(JOB_COMPLETION_INDEX)", str(index)) for arg in args]
        assert backfill_cmd._parse_shard(backfill_cmd._parse_args(expanded).shard) == (index, spec["completions"])
    env = {e["name"]: e for e in container["env"]}
    assert env["EXPORT_LAYOUT"]["value"] == "dataset" and env["DATASET_URL"]["value"].startswith("s3://")
    pod_env = config | {name: e["value"] for name, e in env.items() if "value" in e}  # what the pod's settings read
    assert load_settings(pod_env, env_file=None).dataset_url == env["DATASET_URL"]["value"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"] | {"name": "?"} == {"name": "?", "key": name, "optional": True}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all("emptyDir" in v for v in volumes.values())  # no claim: nothing outlives the pod but the bucket
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts[config["EXPORT_DIR"]]]["emptyDir"]["sizeLimit"]
    cron = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == cron["envFrom"] and container["image"] == cron["image"]
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True
