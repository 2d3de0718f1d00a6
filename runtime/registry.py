"""Pull images from OCI distribution registries (Docker Hub, nvcr.io, ghcr.io, a private one).

The protocol is distribution's /v2/ API: GET the manifest by tag or digest (offering OCI and
Docker media types), pick the linux/<this arch> manifest from an index, then GET the config and
each layer blob, checking every digest before a blob enters the node's store. A 401 carries a
`WWW-Authenticate` challenge: `Basic` takes the credentials as they are; `Bearer` names a token
service that gets them (or nobody, for anonymous pulls of public images) and answers a token for
the repository's pull scope. Tokens are cached per registry and repository until they expire.

Registries on loopback, and those named in `insecure`, are spoken to over plain HTTP; every other
one over HTTPS, checked against the system's CAs (or `ca_file`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import platform
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import httpx

from kray.runtime.imageref import ImageReference
from kray.runtime.images import ImageError, ImageInfo, ImageStore
from kray.runtime.records import CriError, InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unavailable

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")
LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",  # unpacked with the zstandard package (kray[zstd])
)
RESUMES = 3  # a broken blob download is resumed this many times
PARALLEL_LAYERS = 3  # as Docker and containerd: enough to fill a link, few enough to finish some
MAX_MANIFEST = 4 << 20
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Credentials:
    """What CRI's AuthConfig carries: a user and password, or a token the registry accepts."""

    username: str = ""
    password: str = ""
    registry_token: str = ""  # a bearer token for the registry itself

    def identity(self) -> str:
        """What a cached token is filed under: a hash of all of it, so that only the very same
        credentials (never a wrong password, nor an anonymous pull) reuse what these earned."""
        return hashlib.sha256(f"{self.username}\0{self.password}\0{self.registry_token}".encode()).hexdigest()

    @classmethod
    def from_auth(cls, username: str, password: str, auth: str, registry_token: str) -> Credentials | None:
        if auth and not username:  # "auth" is base64("user:password"), as in a docker config.json
            try:
                username, _, password = base64.b64decode(auth).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidArgument(f"auth: not base64 of user:password: {exc}") from None
        if not (username or registry_token):
            return None
        return cls(username, password, registry_token)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://auth.docker.io/token",service="registry.docker.io"` ->
    ("bearer", {"realm": ..., "service": ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), {k: v.replace('\\"', '"') for k, v in params.items()}


def host_platform() -> tuple[str, str]:
    machine = platform.machine().lower()
    return "linux", {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}.get(machine, machine)


def pick_platform(index: dict[str, Any], want: tuple[str, str], source: str) -> dict[str, Any]:
    """The index entry for `want` (os, architecture); attestation entries (unknown/unknown) and
    other platforms are skipped. NotFound lists what the index does have."""
    have = []
    for desc in index.get("manifests") or []:
        plat = desc.get("platform") or {}
        key = (plat.get("os", ""), plat.get("architecture", ""))
        if key == want and desc.get("mediaType", OCI_MANIFEST) in (*IMAGE_TYPES, *INDEX_TYPES):
            return dict(desc)
        if key != ("unknown", "unknown"):
            have.append("/".join(p for p in (*key, plat.get("variant", "")) if p))
    raise NotFound(f"{source}: no image for {'/'.join(want)} (the index has {', '.join(have) or 'nothing'})")


def parse_mirrors(spec: str) -> dict[str, list[str]]:
    """``docker.io=http://10.0.0.5:5000,https://mirror.gcr.io;nvcr.io=http://cache:5000`` ->
    {"docker.io": [...], "nvcr.io": [...]}: per registry, the mirrors to try first, in order."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in spec.replace("\n", ";").split(";"))):
        registry, sep, endpoints = part.partition("=")
        if not sep or not registry.strip() or not endpoints.strip():
            raise ValueError(f"registry mirrors: want REGISTRY=URL[,URL...], got {part!r}")
        out.setdefault(registry.strip(), []).extend(e.strip() for e in endpoints.split(",") if e.strip())
    return out


class RegistryClient:
    def __init__(
        self,
        insecure: Iterable[str] = (),
        ca_file: str | None = None,
        timeout: float = 60.0,
        mirrors: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.insecure = {*LOOPBACK_HOSTS, *insecure}
        # Per registry (as images name it: "docker.io"), mirror hosts tried before it, as
        # containerd's hosts.toml and Docker's registry-mirrors: anonymously, falling back in turn.
        self.mirrors: dict[str, list[str]] = {}
        for registry, endpoints in (mirrors or {}).items():
            for endpoint in endpoints:
                url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
                if url.scheme == "http":
                    self.insecure.add(url.netloc)
                self.mirrors.setdefault(registry, []).append(url.netloc)
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        # No read timeout on a whole blob, only between its chunks: a 5 GiB layer takes as long as it takes.
        self.http = httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=True, verify=verify, headers={"User-Agent": "kray"}
        )
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._blob_locks: dict[str, threading.Lock] = {}
        self.platform = host_platform()

    def close(self) -> None:
        self.http.close()

    # --- the protocol --------------------------------------------------------------------------
    def _url(self, ref: ImageReference, tail: str) -> str:
        host = ref.api_host
        bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        scheme = "http" if host in self.insecure or bare in self.insecure else "https"
        return f"{scheme}://{host}/v2/{ref.path}/{tail}"

    def _send(
        self,
        ref: ImageReference,
        tail: str,
        creds: Credentials | None,
        accept: str = "",
        stream: bool = False,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = self._url(ref, tail)
        headers = {"Accept": accept} if accept else {}
        headers.update(extra or {})
        key = (ref.api_host, ref.path, creds.identity() if creds else "")
        with self._lock:
            cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            headers["Authorization"] = cached[0]
        resp = self._request(url, headers, stream, ref)
        if resp.status_code == 401:
            resp.close()
            headers["Authorization"] = self._authorize(ref, resp.headers.get("WWW-Authenticate", ""), creds, key)
            resp = self._request(url, headers, stream, ref)
        if resp.status_code >= 400:
            if stream:
                resp.read()
            raise _status_error(ref, resp, creds)
        return resp

    def _request(self, url: str, headers: dict[str, str], stream: bool, ref: ImageReference) -> httpx.Response:
        try:
            req = self.http.build_request("GET", url, headers=headers)
            return self.http.send(req, stream=stream)
        except httpx.HTTPError as exc:
            raise Unavailable(f"{ref}: cannot reach registry {ref.api_host}: {exc}") from None

    def _authorize(
        self, ref: ImageReference, challenge: str, creds: Credentials | None, key: tuple[str, str, str]
    ) -> str:
        scheme, params = parse_challenge(challenge)
        if creds and creds.registry_token:
            value = f"Bearer {creds.registry_token}"
        elif scheme == "basic":
            if creds is None:
                raise Unauthenticated(f"{ref}: registry {ref.api_host} asks for a user and password (imagePullSecrets)")
            value = "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        elif scheme == "bearer" and params.get("realm"):
            value = "Bearer " + self._token(ref, params, creds, key)
            return value
        else:
            raise Unauthenticated(f"{ref}: registry {ref.api_host} sent an unusable challenge {challenge!r}")
        with self._lock:
            self._tokens[key] = (value, time.monotonic() + 300)
        return value

    def _token(
        self, ref: ImageReference, params: dict[str, str], creds: Credentials | None, key: tuple[str, str, str]
    ) -> str:
        query = {"scope": f"repository:{ref.path}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        auth = (creds.username, creds.password) if creds and creds.username else None
        try:
            resp = self.http.get(params["realm"], params=query, auth=auth)
        except httpx.HTTPError as exc:
            raise Unavailable(f"{ref}: cannot reach the token service {params['realm']}: {exc}") from None
        if resp.status_code in (401, 403):
            raise Unauthenticated(
                f"{ref}: the token service {params['realm']} refused the credentials ({resp.status_code})"
            )
        if resp.status_code >= 400:
            raise Unavailable(f"{ref}: the token service {params['realm']} answered {resp.status_code}")
        try:
            body = resp.json()
            token = str(body.get("token") or body["access_token"])
            expires = float(body.get("expires_in") or 60)
        except (ValueError, KeyError, TypeError):
            raise Unavailable(f"{ref}: the token service {params['realm']} answered no token") from None
        with self._lock:
            # Renew a little early: a token that expires mid-download fails the layer.
            self._tokens[key] = (f"Bearer {token}", time.monotonic() + max(expires - 10, expires / 2))
        return token

    def manifest(self, ref: ImageReference, reference: str, creds: Credentials | None) -> tuple[bytes, str, str]:
        """(body, media type, digest of the body); a pinned digest must match the body."""
        accept = ", ".join((*INDEX_TYPES, *IMAGE_TYPES))
        resp = self._send(ref, f"manifests/{reference}", creds, accept=accept)
        body = resp.content
        if len(body) > MAX_MANIFEST:
            raise InvalidArgument(f"{ref}: manifest is {len(body)} bytes, over {MAX_MANIFEST}")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise Unavailable(f"{ref}: registry answered a manifest with digest {digest}, not {reference}")
        media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            media = json.loads(body).get("mediaType") or media
        except ValueError:
            raise Unavailable(f"{ref}: manifest {reference} is not JSON") from None
        return body, media, digest

    def resolve(self, ref: ImageReference, creds: Credentials | None) -> str:
        """The manifest digest `ref` names now (what a pull would fetch), for pull-policy Always."""
        return self._resolve(ref, creds)[2]

    def _resolve(self, ref: ImageReference, creds: Credentials | None) -> tuple[bytes, str, str]:
        body, media, digest = self.manifest(ref, ref.reference, creds)
        if media in INDEX_TYPES:
            desc = pick_platform(json.loads(body), self.platform, str(ref))
            body, media, digest = self.manifest(ref, desc["digest"], creds)
        if media not in IMAGE_TYPES:
            raise InvalidArgument(
                f"{ref}: manifest type {media!r} is not a container image (Docker schema 1 is not supported)"
            )
        return body, media, digest

    def blob(self, ref: ImageReference, digest: str, creds: Credentials | None, store: ImageStore) -> None:
        """Download one blob into the store unless it is there; two pulls of one blob share one download."""
        with self._lock:
            lock = self._blob_locks.setdefault(digest, threading.Lock())
        with lock:
            if store.has_blob(digest):
                return
            try:
                store.write_blob(digest, self._download(ref, digest, creds))
            except ImageError as exc:
                raise Unavailable(f"{ref}: {exc}") from None

    def _download(self, ref: ImageReference, digest: str, creds: Credentials | None) -> Iterator[bytes]:
        """A blob's bytes. A download that breaks off resumes where it stopped (an HTTP Range
        request), up to RESUMES times, so a dropped connection near the end of a 10 GiB layer
        costs the rest, not the whole. A server that ignores the range sends it all again: the
        bytes already had are skipped."""
        got = 0
        for attempt in range(RESUMES + 1):
            resp = self._send(
                ref, f"blobs/{digest}", creds, stream=True, extra={"Range": f"bytes={got}-"} if got else None
            )
            skip = got if got and resp.status_code != 206 else 0
            try:
                for chunk in resp.iter_bytes():  # as received: a break keeps what came
                    if skip:
                        drop = min(skip, len(chunk))
                        chunk, skip = chunk[drop:], skip - drop
                    got += len(chunk)
                    yield chunk
                return
            except httpx.HTTPError as exc:
                if attempt == RESUMES:
                    raise Unavailable(f"{ref}: download of {digest} broke off {attempt + 1} times: {exc}") from None
                log.warning("%s: download of %s broke off at byte %d (%s); resuming", ref, digest, got, exc)
            finally:
                resp.close()

    # --- a whole image ---------------------------------------------------------------------------
    def pull(
        self,
        ref: ImageReference,
        name: str,
        store: ImageStore,
        creds: Credentials | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> ImageInfo:
        """Fetch `ref` into `store` and record it under `name`; blobs already there are kept.
        Mirrors of its registry are tried first (anonymously); the registry itself last, whose
        error is the one raised when every source fails."""
        for mirror in self.mirrors.get(ref.domain, []):
            try:
                return self._pull_from(replace(ref, domain=mirror), ref, name, store, None, progress)
            except CriError as exc:
                log.warning("%s: mirror %s failed (%s); trying the next source", ref, mirror, exc)
        return self._pull_from(ref, ref, name, store, creds, progress)

    def _pull_from(
        self,
        source: ImageReference,
        ref: ImageReference,
        name: str,
        store: ImageStore,
        creds: Credentials | None,
        progress: Callable[[str], None] | None,
    ) -> ImageInfo:
        """`ref`, fetched from `source` (the same repository on a mirror, or `ref` itself)."""
        body, _media, digest = self._resolve(source, creds)
        manifest = json.loads(body)
        config_desc = manifest.get("config") or {}
        if config_desc.get("mediaType") not in CONFIG_TYPES:
            raise InvalidArgument(f"{ref}: config type {config_desc.get('mediaType')!r} is not a container image's")
        for layer in manifest.get("layers", []):
            if layer.get("mediaType") not in LAYER_TYPES:
                raise InvalidArgument(
                    f"{ref}: layer {layer.get('digest')} has type {layer.get('mediaType')!r}, which kray cannot unpack"
                    f" (it takes {', '.join(LAYER_TYPES)})"
                )
        self.blob(source, config_desc["digest"], creds, store)
        layers = [ld["digest"] for ld in manifest.get("layers", [])]

        def fetch(digest: str) -> str:
            self.blob(source, digest, creds, store)
            return digest

        with ThreadPoolExecutor(PARALLEL_LAYERS, thread_name_prefix="pull") as pool:
            for done in pool.map(fetch, layers):
                if progress:
                    progress(done)
        store.write_blob(digest, [body])
        config = json.loads(store.blob_path(config_desc["digest"]).read_bytes())
        return store.register(name, digest, manifest, config, repo_digest=f"{ref.domain}/{ref.path}@{digest}")


def _status_error(ref: ImageReference, resp: httpx.Response, creds: Credentials | None) -> CriError:
    """The registry's error, as a CRI error with the registry's own code and message."""
    detail = ""
    try:
        errors = resp.json().get("errors") or []
        detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors)
    except (ValueError, AttributeError):
        pass
    what = f"{ref}: {resp.status_code} from {ref.api_host}" + (f" ({detail})" if detail else "")
    if resp.status_code == 404:
        return NotFound(what)
    if resp.status_code == 401:
        hint = "" if creds else "; the repository does not exist or needs credentials (imagePullSecrets)"
        return Unauthenticated(what + hint)
    if resp.status_code == 403:
        return PermissionDenied(what)
    if resp.status_code == 429 or resp.status_code >= 500:
        return Unavailable(what)
    return InvalidArgument(what)
