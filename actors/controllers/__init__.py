"""Built-in workload controllers (kube-controller-manager's), each a plain reconciler plus a ``build``.

Wire them into a ``Manager`` with ``build_replicaset_controller(manager)`` and
``build_deployment_controller(manager)``, or host them as Ray actors with
``deploy_controller(name, "kray.actors.controllers.replicaset:build", config)`` (likewise
``...deployment:build``; ``...controllers:build_all`` wires both into one manager).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kray.actors.framework.manager import Manager


def build_all(manager: Manager) -> None:
    """Both workload controllers in one manager (one actor): what a controller-manager runs."""
    from .deployment import build_deployment_controller
    from .replicaset import build_replicaset_controller

    build_replicaset_controller(manager)
    build_deployment_controller(manager)


def controller_manager(manager: Manager) -> None:
    """Every built-in controller in one manager: what `kray up` runs as kube-controller-manager."""
    from . import (
        cronjob,
        daemonset,
        disruption,
        endpoints,
        garbagecollector,
        job,
        namespace,
        nodeipam,
        nodelifecycle,
        persistentvolume,
        podgroup,
        resourcequota,
        statefulset,
        trainingjob,
    )

    build_all(manager)
    job.setup(manager)
    cronjob.setup(manager)
    garbagecollector.setup(manager)
    namespace.setup(manager)
    nodelifecycle.setup(manager)
    endpoints.setup(manager)
    nodeipam.setup(manager)
    trainingjob.setup(manager)
    podgroup.setup(manager)
    disruption.setup(manager)
    resourcequota.setup(manager)
    persistentvolume.setup(manager)
    daemonset.setup(manager)
    statefulset.setup(manager)


__all__ = ["build_all", "controller_manager"]
