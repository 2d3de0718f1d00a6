"""Dry runs (``?dryRun=All``): a write that goes all the way through and then is not made.

kube-apiserver's rule (api-concepts, "Dry-run"): a POST, PUT, PATCH or DELETE with
``dryRun=All`` is defaulted, validated and admitted exactly like the real request, and its
answer is what would have been stored or deleted, but nothing is persisted and no side effect
happens. Errors (409 Conflict, 422 Invalid, a quota's 403, a missing namespace's 404) are the
real request's: finding them early is the point. ``All`` is the only value Kubernetes supports;
the parameter may be repeated, every occurrence must be ``All``, anything else is refused.

Where each layer honours it:

- ``Handlers`` (create/update/patch/delete) skip the store write and the caches that follow a
  write (``_written``/``_observe``: namespace phases, PriorityClasses, CRD registration);
- every admission hook sees ``AdmissionRequest.dry_run`` and decides without committing: the
  ResourceQuota hook refuses over-limit objects but charges nothing, the ClusterIP allocator
  checks a requested address but reserves none;
- graceful deletion returns the object marked with a deletionTimestamp, unstored;
- the ``binding`` and ``eviction`` subresources check everything and write nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kray.crds.validation import not_supported

from . import errors

ALL = "All"
SUPPORTED = (ALL,)


def check_values(values: Iterable[Any], field: str = "dryRun") -> bool:
    """True for a dry run; a value other than ``All`` is a 400 naming ``field``."""
    dry = False
    for value in values:
        if value != ALL:
            raise errors.bad_request(f"{field}: {not_supported(value, SUPPORTED)}")
        dry = True
    return dry


def from_query(query: Any) -> bool:
    """``dryRun`` of a request's query string (repeatable: ``?dryRun=All&dryRun=All``)."""
    return check_values(query.getlist("dryRun")) if "dryRun" in query else False


def from_options(options: dict[str, Any], field: str = "dryRun") -> bool:
    """``dryRun`` of a DeleteOptions body (a list of strings, like the query parameter)."""
    value = options.get("dryRun")
    if value is None:
        return False
    if not isinstance(value, list):
        raise errors.bad_request(f"{field}: {not_supported(value, SUPPORTED)}")
    return check_values(value, field)
