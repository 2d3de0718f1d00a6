"""CustomResourceDefinitions: models built from OpenAPI schemas, and custom kinds in Python."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import yaml

from kray.crds import (
    REGISTRY,
    CustomResourceDefinition,
    Registry,
    Resource,
    ValidationFailed,
    kind,
    model_from_crd,
    register_crd,
    unregister_crd,
    validate_object,
)
from kray.crds.apiextensions import CustomResource, to_json_schema
from kray.crds.meta import KrayModel

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: trainingjobs.ml.example.com
spec:
  group: ml.example.com
  scope: Namespaced
  names:
    plural: trainingjobs
    singular: trainingjob
    kind: TrainingJob
    shortNames: [tj]
    categories: [all]
  versions:
  - name: v1alpha1
    served: true
    storage: false
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [image, replicas]
            properties:
              image: {type: string, minLength: 1}
              replicas: {type: integer, minimum: 1, maximum: 1024}
              framework: {type: string, enum: [pytorch, jax], default: pytorch}
              port: {x-kubernetes-int-or-string: true}
              backoff: {type: integer, nullable: true}
              resources:
                type: object
                additionalProperties: {x-kubernetes-int-or-string: true}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
              workers:
                type: array
                items:
                  type: object
                  properties:
                    name: {type: string}
                    gpus: {type: integer, minimum: 0, exclusiveMinimum: false}
          status:
            type: object
            properties:
              phase: {type: string}
"""


@pytest.fixture
def crd() -> CustomResourceDefinition:
    return CustomResourceDefinition.model_validate(yaml.safe_load(CRD))


@pytest.fixture
def registry() -> Iterator[Registry]:
    yield Registry()


def job(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"image": "trainer:1", "replicas": 4}
    body.update(spec)
    return {
        "apiVersion": "ml.example.com/v1",
        "kind": "TrainingJob",
        "metadata": {"name": "j", "namespace": "ml"},
        "spec": body,
    }


def test_crd_round_trips_and_defaults_names(crd: CustomResourceDefinition) -> None:
    assert crd.spec.names.list_kind == "TrainingJobList"
    assert crd.spec.versions[1].openapi_schema is not None
    wire = crd.to_dict()
    assert wire["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["required"] == ["spec"]
    assert CustomResourceDefinition.model_validate(wire) == crd
    assert crd.storage_version().name == "v1"


def test_crd_validation() -> None:
    data = yaml.safe_load(CRD)
    data["metadata"]["name"] = "jobs.ml.example.com"
    with pytest.raises(ValidationFailed) as exc:
        validate_object(CustomResourceDefinition, data)
    assert [str(e) for e in exc.value.errors] == [
        'metadata.name: Invalid value: "jobs.ml.example.com": must be spec.names.plural+"."+spec.group'
    ]
    data = yaml.safe_load(CRD)
    data["spec"]["group"] = "example"
    data["metadata"]["name"] = "trainingjobs.example"
    data["spec"]["versions"][0]["storage"] = True
    data["spec"]["scope"] = "Global"
    with pytest.raises(ValidationFailed) as exc:
        validate_object(CustomResourceDefinition, data)
    assert [e.field for e in exc.value.errors] == ["spec.scope"]
    data["spec"]["scope"] = "Cluster"
    with pytest.raises(ValidationFailed) as exc:
        validate_object(CustomResourceDefinition, data)
    assert [e.field for e in exc.value.errors] == ["spec.group", "spec.versions"]
    data = yaml.safe_load(CRD)
    data["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["properties"]["spec"]["type"] = "objekt"
    with pytest.raises(ValidationFailed) as exc:
        validate_object(CustomResourceDefinition, data)
    assert exc.value.errors[0].field.startswith("spec.versions[1].schema.openAPIV3Schema")


def test_model_from_crd_identity(crd: CustomResourceDefinition) -> None:
    model = model_from_crd(crd)
    assert issubclass(model, Resource) and model.__name__ == "TrainingJob"
    assert (model.GROUP, model.VERSION, model.KIND, model.PLURAL, model.SINGULAR) == (
        "ml.example.com",
        "v1",
        "TrainingJob",
        "trainingjobs",
        "trainingjob",
    )
    assert model.NAMESPACED and model.SHORT_NAMES == ("tj",) and model.HAS_STATUS_SUBRESOURCE
    assert model.PRINTER_COLUMNS[0].json_path == ".spec.replicas"
    alpha = model_from_crd(crd, "v1alpha1")
    assert alpha.VERSION == "v1alpha1" and not alpha.HAS_STATUS_SUBRESOURCE


def test_good_object_is_accepted_pruned_and_defaulted(crd: CustomResourceDefinition) -> None:
    model = model_from_crd(crd)
    data = job(port="http", backoff=None, resources={"nvidia.com/gpu": 8}, extra={"anything": [1]}, unknown=1)
    data["status"] = {"phase": "Running", "bogus": True}
    data["topLevelJunk"] = 1
    obj = validate_object(model, data)
    assert obj.api_version == "ml.example.com/v1" and obj.kind == "TrainingJob"
    wire = obj.to_dict()
    assert wire["spec"] == {
        "image": "trainer:1",
        "replicas": 4,
        "framework": "pytorch",  # schema default applied
        "port": "http",
        "resources": {"nvidia.com/gpu": 8},
        "extra": {"anything": [1]},  # preserved
        "backoff": None,  # nullable: kept
    }
    assert "unknown" not in wire["spec"] and "topLevelJunk" not in wire  # pruned like Kubernetes
    assert wire["status"] == {"phase": "Running"}
    assert model.model_validate(wire) == obj


def test_bad_object_is_rejected_with_field_paths(crd: CustomResourceDefinition) -> None:
    model = model_from_crd(crd)
    bad = job(replicas="four", framework="tensorflow", workers=[{"name": "w", "gpus": -1}], port=[1])
    del bad["spec"]["image"]
    with pytest.raises(ValidationFailed) as exc:
        validate_object(model, bad)
    msgs = sorted(str(e) for e in exc.value.errors)
    assert 'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"' in msgs
    assert "spec.image: Required value" in msgs
    assert 'spec.framework: Unsupported value: "tensorflow": supported values: "pytorch", "jax"' in msgs
    assert any(
        m.startswith(
            "spec.workers[0].gpus: Invalid value: -1: spec.workers[0].gpus in body should be greater than or equal to 0"
        )
        for m in msgs
    )
    assert any(m.startswith("spec.port: ") for m in msgs)
    with pytest.raises(ValidationFailed) as exc:
        validate_object(model, job(replicas=0))
    assert [str(e) for e in exc.value.errors] == [
        "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"
    ]
    with pytest.raises(ValidationFailed) as exc:
        validate_object(model, {"metadata": {"name": "j"}})
    assert [str(e) for e in exc.value.errors] == ["spec: Required value"]


def test_register_and_unregister_crd(crd: CustomResourceDefinition, registry: Registry) -> None:
    info = register_crd(crd, registry)
    assert info.api_version == "ml.example.com/v1" and info.has_status_subresource
    assert registry.resolve("tj") in (info, registry.get("ml.example.com/v1alpha1", "TrainingJob"))
    alpha = registry.get("ml.example.com/v1alpha1", "TrainingJob")
    assert validate_object(alpha, {"metadata": {"name": "x"}, "spec": {"anything": "goes"}}).to_dict()["spec"] == {
        "anything": "goes"
    }
    again = register_crd(crd.to_dict(), registry)  # re-registering replaces
    assert again.model is not info.model and len(registry.all()) == 2
    unregister_crd(crd, registry)
    assert registry.all() == []
    register_crd(crd)
    try:
        assert REGISTRY.get("ml.example.com/v1", "TrainingJob").model.CRD_NAME == "trainingjobs.ml.example.com"  # type: ignore[attr-defined]
    finally:
        unregister_crd("trainingjobs.ml.example.com")
    assert all(i.group != "ml.example.com" for i in REGISTRY.all())


def test_openapi_translation() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.a > 0"}],
        "properties": {
            "a": {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "nullable": True},
            "b": {"type": "string", "enum": ["x"], "nullable": True},
            "c": {"x-kubernetes-int-or-string": True},
        },
    }
    out = to_json_schema(schema)
    assert "x-kubernetes-validations" not in out
    assert out["properties"]["a"] == {"type": ["integer", "null"], "exclusiveMinimum": 0}
    assert out["properties"]["b"]["enum"] == ["x", None]
    assert out["properties"]["c"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}


class WidgetSpec(KrayModel):
    size: int
    color: str = "blue"


@kind
class Widget(Resource):
    """A custom kind written in Python: a Resource subclass plus @kind, nothing else."""

    GROUP: ClassVar[str] = "example.com"
    VERSION: ClassVar[str] = "v1beta1"
    KIND: ClassVar[str] = "Widget"
    PLURAL: ClassVar[str] = "widgets"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("wd",)

    spec: WidgetSpec


def test_custom_kind_in_python() -> None:
    try:
        info = REGISTRY.resolve("widgets.example.com")
        assert info.model is Widget and info.singular == "widget" and info.api_version == "example.com/v1beta1"
        w = validate_object(Widget, {"metadata": {"name": "w1", "namespace": "default"}, "spec": {"size": 3}})
        assert w.to_dict() == {
            "apiVersion": "example.com/v1beta1",
            "kind": "Widget",
            "metadata": {"name": "w1", "namespace": "default"},
            "spec": {"size": 3, "color": "blue"},
        }
        with pytest.raises(ValidationFailed) as exc:
            validate_object(Widget, {"metadata": {"name": "w1"}, "spec": {"size": "big"}})
        assert [e.field for e in exc.value.errors] == ["spec.size"]
        assert not issubclass(Widget, CustomResource)
    finally:
        REGISTRY.unregister("example.com/v1beta1", "Widget")


def test_custom_objects_pickle(crd: CustomResourceDefinition) -> None:
    import pickle

    model = model_from_crd(crd)
    obj = model.model_validate(job())
    again = pickle.loads(pickle.dumps(obj))
    assert type(again) is model and again == obj
