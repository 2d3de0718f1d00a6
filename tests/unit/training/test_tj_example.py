"""The example manifest stays in step with the program, and what the operator builds from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import kray.crds
from kray.actors.controllers.trainingjob_pods import pod_for, torch_env, wanted_replicas
from kray.crds import validate_object
from kray.crds.meta import ObjectMeta
from kray.crds.training import MASTER, WORKER, TrainingJob

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "train"


def load() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((EXAMPLE / "trainingjob.yaml").read_text()))


def example_job(**spec: Any) -> TrainingJob:
    doc = load()[1]
    doc["metadata"]["namespace"] = "default"
    doc["spec"].update(spec)
    job = validate_object(TrainingJob, doc)
    assert isinstance(job, TrainingJob)
    job.metadata = ObjectMeta(name=job.name, namespace="default", uid="u-1")  # as if read back
    return job


def test_manifest_embeds_the_program_verbatim() -> None:
    cm, tj = load()
    assert cm["kind"] == "ConfigMap" and tj["kind"] == "TrainingJob"
    assert cm["data"]["train.py"] == (EXAMPLE / "train.py").read_text(), (
        "examples/train/trainingjob.yaml embeds an old copy of train.py: run python examples/train/embed.py"
    )


def test_manifest_builds_one_master_and_two_workers() -> None:
    job = example_job()
    assert wanted_replicas(job) == [(MASTER, 0), (WORKER, 0), (WORKER, 1)]
    pod = pod_for(job, WORKER, 1, attempt=0)
    (c,) = pod.spec.containers
    assert pod.name == "train-example-worker-1" and c.image == "host"
    assert [m.mount_path for m in c.volume_mounts or []] == ["/opt/train"]
    assert pod.spec.volumes and pod.spec.volumes[0].config_map is not None
    assert pod.spec.volumes[0].config_map.name == "train-example-script"
    assert "/opt/train/train.py" in " ".join(c.command or [])


@pytest.mark.parametrize(
    ("spec", "world", "nnodes"),
    [
        ({"nprocPerNode": 4}, "12", "3"),
        ({"elasticPolicy": {"minReplicas": 2, "maxReplicas": 5}}, "3", "2:5"),
    ],
)
def test_env_follows_nproc_and_elastic_policy(spec: dict[str, Any], world: str, nnodes: str) -> None:
    job = example_job(**spec)
    values = {e.name: e.value for e in torch_env(job, WORKER, 1)}
    assert values["WORLD_SIZE"] == world and values["PET_NNODES"] == nnodes
    assert values["RANK"] == values["PET_NODE_RANK"] == "2"
    assert values["PET_NPROC_PER_NODE"] == str(job.spec.nproc_per_node)


def test_elastic_policy_must_cover_the_replicas() -> None:
    doc = load()[1]
    doc["metadata"]["namespace"] = "default"
    doc["spec"]["elasticPolicy"] = {"minReplicas": 4, "maxReplicas": 2}
    with pytest.raises(kray.crds.ValidationFailed) as err:
        validate_object(TrainingJob, doc)
    assert {e.field for e in err.value.errors} == {"spec.elasticPolicy.minReplicas", "spec.elasticPolicy.maxReplicas"}


def test_kray_get_prints_the_state() -> None:
    from kray.cli.printers import table_rows
    from kray.client.paths import ResourceRef

    ref = ResourceRef("kray.io", "v1", "trainingjobs", True, "TrainingJob", "trainingjob", ("tj",))
    t = "2024-01-01T00:00:00Z"
    conditions = [
        {"type": "Created", "status": "True", "lastTransitionTime": t},
        {"type": "Running", "status": "False", "lastTransitionTime": t},
        {"type": "Restarting", "status": "True", "lastTransitionTime": t},
    ]
    obj = {"metadata": {"name": "mnist"}, "status": {"conditions": conditions, "restarts": 1}}
    header, rows = table_rows(ref, [obj], wide=True)
    assert header == ["NAME", "STATE", "AGE", "RESTARTS", "MASTER"]
    assert rows[0][:2] == ["mnist", "Restarting"] and rows[0][3:] == ["1", "<none>"]
