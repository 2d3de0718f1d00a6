"""A real OCI distribution registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1, for
tests of kray's registry image-pull client. Plain HTTP in every mode (2.8 serves htpasswd without
TLS). Tests call `start_registry(tmp_path, auth=...)` in their own fixtures and `stop()` after.

auth="none": no auth. auth="basic": htpasswd (bcrypt); 401 + `WWW-Authenticate: Basic realm="kray-test"`.
auth="token": a stdlib token server at http://127.0.0.1:TPORT/token issuing RS256 JWTs; the registry
answers 401 + `WWW-Authenticate: Bearer realm="...",service="kray-test-registry",scope="repository:R:pull"`.
Anonymous token requests get `pull` only, and nothing for repos under `private/`; wrong Basic
credentials get 401. GET only (no OAuth2 POST). Requests the push helpers make are not recorded in
`token_requests` (they carry the `X-Kray-Test-Helper` header).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from kray.etcd_server import exit_with_parent

BINARY = "/usr/bin/docker-registry"
SERVICE = "kray-test-registry"
ISSUER = "kray-test-issuer"
REALM = "kray-test"
PROTECTED_PREFIX = "private/"
HELPER_HEADER = "X-Kray-Test-Helper"
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class TokenIssuer:
    """Signs registry tokens (RS256 JWT, self-signed cert in the `x5c` header)."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @classmethod
    def generate(cls) -> TokenIssuer:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def sign(self, sub: str, aud: str, access: list[dict[str, Any]], ttl: int = 300) -> str:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": sub, "aud": aud, "exp": now + ttl, "nbf": now - 10, "iat": now}
        claims |= {"jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(sig)}"


def parse_scopes(values: list[str]) -> list[tuple[str, str, list[str]]]:
    """`repository:team/x:pull,push` (repeated, or space-separated) -> [(type, name, actions)]."""
    out = []
    for value in values:
        for scope in value.split():
            rtype, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if rtype and name:
                out.append((rtype, name, [a for a in actions.split(",") if a]))
    return out


@dataclass
class Registry:
    host: str  # "127.0.0.1:PORT"
    auth: str  # "none" | "basic" | "token"
    username: str | None
    password: str | None
    root: Path
    token_requests: list[dict[str, str]] = field(default_factory=list)
    scheme: str = "http"  # always plain HTTP: distribution 2.8 does not insist on TLS for htpasswd
    realm: str | None = None  # auth="token": the token endpoint URL
    process: subprocess.Popen[bytes] | None = None
    token_server: ThreadingHTTPServer | None = None
    token_thread: threading.Thread | None = None
    issuer: TokenIssuer | None = None
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def grant(self, user: str | None, scopes: list[tuple[str, str, list[str]]]) -> list[dict[str, Any]]:
        """The token server's decision: anonymous gets pull only, and nothing under `private/`."""
        access = []
        for rtype, name, actions in scopes:
            if user is None:
                actions = [a for a in actions if a == "pull"] if not name.startswith(PROTECTED_PREFIX) else []
            if actions:
                access.append({"type": rtype, "name": name, "actions": actions})
        return access

    def _client(self, repo: str) -> httpx.Client:
        """A client authorized to push to `repo` (Basic credentials, or a pull,push token)."""
        creds = (self.username or "", self.password or "")
        if self.auth == "token" and repo not in self._tokens:
            assert self.realm is not None
            params = {"service": SERVICE, "scope": f"repository:{repo}:pull,push"}
            resp = httpx.get(self.realm, params=params, auth=creds, headers={HELPER_HEADER: "1"})
            self._tokens[repo] = resp.raise_for_status().json()["token"]
        headers = {"Authorization": f"Bearer {self._tokens[repo]}"} if self.auth == "token" else {}
        return httpx.Client(
            base_url=self.url, headers=headers, auth=creds if self.auth == "basic" else None, timeout=30
        )

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = _sha256(data)
        with self._client(repo) as c:
            resp = c.post(f"/v2/{repo}/blobs/uploads/")
            if resp.status_code != 202:
                raise RuntimeError(f"start upload {repo}: {resp.status_code} {resp.text}")
            location = resp.headers["Location"]
            url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
            resp = c.put(url, content=data, headers={"Content-Type": "application/octet-stream"})
            if resp.status_code != 201:
                raise RuntimeError(f"upload {digest} to {repo}: {resp.status_code} {resp.text}")
        return digest

    def push_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        with self._client(repo) as c:
            resp = c.put(f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type})
        if resp.status_code != 201:
            raise RuntimeError(f"push manifest {repo}:{ref}: {resp.status_code} {resp.text}")
        return _sha256(body)

    def push_layout(self, layout: Path, repo: str, tag: str) -> str:
        """Push an OCI image layout (blobs, child manifests by digest, then the top manifest as `tag`)."""
        blobs = layout / "blobs" / "sha256"

        def blob(digest: str) -> bytes:
            return (blobs / digest.split(":", 1)[1]).read_bytes()

        def push_image(desc: dict[str, Any], ref: str) -> str:
            body = blob(desc["digest"])
            manifest = json.loads(body)
            media_type = desc.get("mediaType") or manifest.get("mediaType")
            if media_type in INDEX_TYPES:
                return push_index(body, manifest, ref)
            for d in [manifest["config"], *manifest.get("layers", [])]:
                self.push_blob(repo, blob(d["digest"]))
            return self.push_manifest(repo, ref, body, media_type)

        def push_index(body: bytes, index: dict[str, Any], ref: str) -> str:
            for child in index.get("manifests", []):
                push_image(child, child["digest"])
            media_type = index.get("mediaType") or "application/vnd.oci.image.index.v1+json"
            return self.push_manifest(repo, ref, body, media_type)

        top_body = (layout / "index.json").read_bytes()
        top = json.loads(top_body)
        if len(top["manifests"]) == 1:
            return push_image(top["manifests"][0], tag)
        return push_index(top_body, top, tag)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.token_server is not None:
            self.token_server.shutdown()
            self.token_server.server_close()
        if self.token_thread is not None:
            self.token_thread.join(5)


def _token_handler(reg: Registry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/token":
                return self._reply(404, {"error": "not found"})
            query = urllib.parse.parse_qs(url.query)
            user: str | None = None
            header = self.headers.get("Authorization", "")
            if header:
                try:
                    scheme, _, cred = header.partition(" ")
                    name, _, pw = base64.b64decode(cred).decode().partition(":")
                    ok = scheme.lower() == "basic" and name == reg.username and pw == reg.password
                except ValueError:
                    ok = False
                if not ok:
                    unauth = {"errors": [{"code": "UNAUTHORIZED", "message": "incorrect username or password"}]}
                    return self._reply(401, unauth, {"WWW-Authenticate": f'Basic realm="{REALM}"'})
                user = name
            if self.headers.get(HELPER_HEADER) is None:
                reg.token_requests.append({k: " ".join(v) for k, v in query.items()} | {"user": user or ""})
            assert reg.issuer is not None
            service = query.get("service", [SERVICE])[0]
            token = reg.issuer.sign(user or "", service, reg.grant(user, parse_scopes(query.get("scope", []))))
            issued = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._reply(200, {"token": token, "access_token": token, "expires_in": 300, "issued_at": issued})

    return Handler


def start_registry(workdir: Path, auth: str = "none", username: str = "alice", password: str = "s3cret") -> Registry:
    if auth not in ("none", "basic", "token"):
        raise ValueError(f"auth must be none, basic or token, not {auth!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    creds = auth != "none"
    reg = Registry(f"127.0.0.1:{free_port()}", auth, username if creds else None, password if creds else None, workdir)
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
        "http": {"addr": reg.host, "secret": secrets.token_hex(16)},
        "health": {"storagedriver": {"enabled": False}},
    }
    if auth == "basic":
        line = subprocess.run(["htpasswd", "-Bbn", username, password], check=True, capture_output=True, text=True)
        (workdir / "htpasswd").write_text(line.stdout.strip() + "\n")
        config["auth"] = {"htpasswd": {"realm": REALM, "path": str(workdir / "htpasswd")}}
    elif auth == "token":
        reg.issuer = TokenIssuer.generate()
        (workdir / "token-cert.pem").write_bytes(reg.issuer.cert_pem())
        reg.token_server = ThreadingHTTPServer(("127.0.0.1", 0), _token_handler(reg))
        reg.token_server.daemon_threads = True
        reg.realm = f"http://127.0.0.1:{reg.token_server.server_address[1]}/token"
        reg.token_thread = threading.Thread(target=reg.token_server.serve_forever, name="token-server", daemon=True)
        reg.token_thread.start()
        token_cfg = {"realm": reg.realm, "service": SERVICE, "issuer": ISSUER}
        config["auth"] = {"token": token_cfg | {"rootcertbundle": str(workdir / "token-cert.pem")}}
    config_path = workdir / "registry.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = workdir / "registry.log"
    with open(log, "wb") as out:
        reg.process = subprocess.Popen(
            [BINARY, "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=exit_with_parent,
        )
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"{reg.url}/v2/", timeout=1).status_code in (200, 401):
                return reg
        except httpx.HTTPError:
            pass
        if reg.process.poll() is not None or time.monotonic() > deadline:
            reg.stop()
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"docker-registry did not come up on {reg.host} (exit {reg.process.poll()}):\n{tail}")
        time.sleep(0.05)
