"""Fixtures of this folder: an API server over the real etcd and the official client (k8s_api)."""

from k8s_api import namespace, server, v1  # noqa: F401
