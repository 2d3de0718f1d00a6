"""kray's object model: Kubernetes kinds as pydantic models (no I/O, nothing from Ray).

Importing this package registers every built-in kind with ``REGISTRY``.
"""

from . import (
    apps,  # noqa: F401  (registers ReplicaSet and Deployment)
    apps_daemonset,  # noqa: F401  (registers DaemonSet)
    apps_statefulset,  # noqa: F401  (registers StatefulSet)
    batch,  # noqa: F401  (registers Job and CronJob)
    devices,  # noqa: F401  (registers NodeDevices)
    policy,  # noqa: F401  (registers PodDisruptionBudget)
    scheduling,  # noqa: F401  (registers PodGroup and PriorityClass)
    training,  # noqa: F401  (registers TrainingJob)
)
from .apiextensions import (
    CustomResource,
    CustomResourceDefinition,
    model_from_crd,
    register_crd,
    unregister_crd,
)
from .core import (
    ConfigMap,
    Container,
    Endpoints,
    Event,
    Lease,
    Namespace,
    Node,
    ObjectReference,
    Pod,
    PodSpec,
    PodStatus,
    Secret,
    Service,
    ServiceSpec,
    Taint,
    Toleration,
)
from .meta import (
    Condition,
    KrayModel,
    ListMeta,
    ObjectMeta,
    OwnerReference,
    Resource,
    Status,
)
from .quantity import (
    Quantity,
    QuantityField,
    ResourceList,
    add_resources,
    fits,
    parse_quantity,
    resource_list,
    subtract_resources,
)
from .registry import REGISTRY, KindInfo, Registry, UnknownKindError, kind
from .selectors import (
    FieldSelector,
    LabelSelector,
    LabelSelectorRequirement,
    Requirement,
    Selector,
    parse_field_selector,
    parse_label_selector,
    selector_from_set,
)
from .validation import (
    FieldError,
    FieldValueError,
    ValidationFailed,
    format_validation_error,
    validate_name,
    validate_object,
)

__all__ = [
    "REGISTRY",
    "Condition",
    "ConfigMap",
    "Container",
    "CustomResource",
    "CustomResourceDefinition",
    "Endpoints",
    "Event",
    "FieldError",
    "FieldSelector",
    "FieldValueError",
    "KindInfo",
    "KrayModel",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Lease",
    "ListMeta",
    "Namespace",
    "Node",
    "ObjectMeta",
    "ObjectReference",
    "OwnerReference",
    "Pod",
    "PodSpec",
    "PodStatus",
    "Quantity",
    "QuantityField",
    "Registry",
    "Requirement",
    "Resource",
    "ResourceList",
    "Secret",
    "Selector",
    "Service",
    "ServiceSpec",
    "Status",
    "Taint",
    "Toleration",
    "UnknownKindError",
    "ValidationFailed",
    "add_resources",
    "fits",
    "format_validation_error",
    "kind",
    "model_from_crd",
    "parse_field_selector",
    "parse_label_selector",
    "parse_quantity",
    "register_crd",
    "resource_list",
    "selector_from_set",
    "subtract_resources",
    "unregister_crd",
    "validate_name",
    "validate_object",
]
