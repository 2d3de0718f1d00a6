"""Request bodies and query parameters: size limit first, then JSON/YAML, then top-level shape.

The size check runs on the raw bytes as they arrive, so an oversized object is refused
(413) before any parsing work is spent on it.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic_core import from_json
from starlette.requests import Request

from . import dryrun, errors

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it exceeds the object size limit."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise errors.too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_object(request: Request, limit: int) -> dict[str, Any]:
    body = await read_body(request, limit)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in _YAML_TYPES:
        try:
            data = yaml.load(body, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"the request body is not valid YAML: {exc}") from None
    elif content_type in ("", "application/json", "*/*"):
        data = parse_json(body)
    else:
        raise errors.unsupported_media_type(content_type, ["application/json", "application/yaml"])
    if not isinstance(data, dict):
        raise errors.bad_request(f"the request body must be a JSON object, not {json_type(data)}")
    for key in ("metadata", "spec", "status"):
        if key in data and not isinstance(data[key], dict) and data[key] is not None:
            raise errors.bad_request(f"{key} must be an object, not {json_type(data[key])}")
    for key in ("apiVersion", "kind"):
        if key in data and not isinstance(data[key], str):
            raise errors.bad_request(f"{key} must be a string, not {json_type(data[key])}")
    return data


async def delete_options(request: Request, limit: int) -> dict[str, Any]:
    body = await read_body(request, limit)
    options: dict[str, Any] = {}
    if body.strip():
        parsed = parse_json(body)
        if not isinstance(parsed, dict):
            raise errors.bad_request("DeleteOptions must be a JSON object")
        options = parsed
    query = request.query_params
    if "gracePeriodSeconds" in query:
        options["gracePeriodSeconds"] = int_param(query, "gracePeriodSeconds")
    if "propagationPolicy" in query:
        options["propagationPolicy"] = query["propagationPolicy"]
    if "dryRun" in query:
        options["dryRun"] = query.getlist("dryRun")
    dryrun.from_options(options)  # "All" only, else 400; ``dryrun.from_options`` says if it is one
    grace = options.get("gracePeriodSeconds")
    if grace is not None and not isinstance(grace, int):
        raise errors.bad_request("gracePeriodSeconds must be an integer")
    policy = options.get("propagationPolicy")
    if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
        raise errors.bad_request(f'propagationPolicy: Unsupported value: "{policy}"')
    if options.get("preconditions") is not None and not isinstance(options["preconditions"], dict):
        raise errors.bad_request("preconditions must be an object")
    return options


def json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise errors.bad_request("the request body is empty")
    try:
        return from_json(body)
    except ValueError as exc:
        raise errors.bad_request(f"the request body is not valid JSON: {exc}") from None


def int_param(query: Any, key: str) -> int | None:
    value = query.get(key)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f"{key} must be an integer, not {value!r}") from None
