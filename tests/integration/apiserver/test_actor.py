"""The Ray wrapper: a detached, node-pinned actor that serves the API on etcd."""

from __future__ import annotations

import httpx
import pytest

from kray.etcd_server import free_port

pytestmark = [pytest.mark.ray, pytest.mark.etcd, pytest.mark.slow]


def test_deploy_apiserver_serves_and_is_idempotent(ray_cluster: str, etcd_endpoint: str) -> None:
    import ray

    from kray.actors.apiserver.actor import ACTOR_NAME, RAY_NAMESPACE, deploy_apiserver

    port = free_port()
    handle = deploy_apiserver(etcd_endpoint, port=port, token="actor-token")
    try:
        url = ray.get(handle.ready.remote(), timeout=60)
        assert url == f"http://127.0.0.1:{port}"
        headers = {"Authorization": "Bearer actor-token"}
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        r = httpx.get(f"{url}/api/v1/namespaces/default", headers=headers, timeout=5)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{url}/api/v1/namespaces", timeout=5).status_code == 401
        # get_if_exists: a second deploy returns the same actor.
        again = deploy_apiserver(etcd_endpoint, port=port, token="actor-token")
        assert ray.get(again.address.remote(), timeout=30) == url
        assert ray.get_actor(ACTOR_NAME, namespace=RAY_NAMESPACE) is not None
    finally:
        ray.kill(handle, no_restart=True)
