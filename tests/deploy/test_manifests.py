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
from tests.support import REPO

MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
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


def test_the_backfill_job_gives_each_index_its_shard_of_the_cronjobs_volume() -> None:
    """An Indexed Job whose N pods run shards 0/N .. N-1/N (JOB_COMPLETION_INDEX, expanded in args) at once."""
    kubernetes = REPO / "deploy" / "kubernetes"
    job = yaml.safe_load((kubernetes / "backfill-job.yaml").read_text(encoding="utf-8"))
    cronjob = yaml.safe_load((kubernetes / "cronjob.yaml").read_text(encoding="utf-8"))
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"] > 1
    [container] = pod["containers"]
    args = container["args"]
    shard = args[args.index("--shard") + 1]
    assert shard == f"$(JOB_COMPLETION_INDEX)/{spec['completions']}"
    for index in range(spec["completions"]):  # what each pod's command line parses to
        expanded = [arg.replace("$(JOB_COMPLETION_INDEX)", str(index)) for arg in args]
        assert backfill_cmd._parse_shard(backfill_cmd._parse_args(expanded).shard) == (index, spec["completions"])
    assert {"name": "EXPORT_LAYOUT", "value": "dataset"} in container["env"]
    cron_pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert (
        pod["volumes"] == cron_pod["volumes"] and container["volumeMounts"] == cron_pod["containers"][0]["volumeMounts"]
    )
    assert (
        container["envFrom"] == cron_pod["containers"][0]["envFrom"]
        and container["image"] == cron_pod["containers"][0]["image"]
    )
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True
