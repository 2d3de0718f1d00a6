"""``kray create namespace|secret|configmap`` (kubectl's imperative generators) against a real API server.

Output lines, error lines and exit codes are kubectl's; bad input and client dry runs must write
nothing (checked by the object not existing afterwards).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_it import kray

from kray.actors.kubelet.images import credentials_for, parse_docker_config
from kray.client import Client, NotFound

Obj = dict[str, Any]


def get(client: Client, plural: str, name: str, ns: str | None = None) -> Obj:
    return client.get_raw(client.resolve(plural), name, ns)


def absent(client: Client, plural: str, name: str, ns: str | None = None) -> bool:
    try:
        get(client, plural, name, ns)
    except NotFound:
        return True
    return False


def decoded(secret: Obj) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def test_create_namespace(client: Client) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    r = kray("create", "namespace", name)
    assert (r.exit_code, r.stdout) == (0, f"namespace/{name} created\n"), r.output
    assert get(client, "namespaces", name)["metadata"]["name"] == name
    again = kray("create", "ns", name)  # kubectl's short name
    assert again.exit_code == 1
    assert again.stderr == f'Error from server (AlreadyExists): namespaces "{name}" already exists\n'
    assert kray("create", "namespace").stderr == "error: exactly one NAME is required, got 0\n"


def test_secret_generic_literals_files_dirs_and_type(client: Client, ns: str, tmp_path: Path) -> None:
    (tmp_path / "ssh").write_bytes(b"\x00\xffkey")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.txt").write_text("A")
    (conf / "b.txt").write_text("B")
    (conf / "sub").mkdir()  # directories inside are skipped, as kubectl does
    r = kray(
        "create", "secret", "generic", "creds", "-n", ns, "--from-literal=user=admin", "--from-literal", "pw=a=b",
        f"--from-file={tmp_path / 'ssh'}", f"--from-file=renamed={conf / 'a.txt'}", f"--from-file={conf}",
        "--type=example.com/custom",
    )  # fmt: skip
    assert (r.exit_code, r.stdout) == (0, "secret/creds created\n"), r.output
    got = get(client, "secrets", "creds", ns)
    assert got["type"] == "example.com/custom"
    assert decoded(got) == {
        "user": b"admin",
        "pw": b"a=b",
        "ssh": b"\x00\xffkey",
        "renamed": b"A",
        "a.txt": b"A",
        "b.txt": b"B",
    }
    # -n given to `kray create` itself works too; -o name prints the kubectl name
    r = kray("create", "-n", ns, "secret", "generic", "plain", "--from-literal=k=v", "-o", "name")
    assert (r.exit_code, r.stdout) == (0, "secret/plain\n"), r.output
    assert decoded(get(client, "secrets", "plain", ns)) == {"k": b"v"}

    again = kray("create", "secret", "generic", "creds", "-n", ns, "--from-literal=x=y")
    assert (again.exit_code, again.stdout) == (1, "")
    assert again.stderr == 'Error from server (AlreadyExists): secrets "creds" already exists\n'


def test_env_files(client: Client, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / "app.env"
    env.write_bytes(b"\xef\xbb\xbfMODE=fast\n# a comment\n\n   LEVEL=3 \r\nFROM_ENV\nEMPTY=\n")
    monkeypatch.setenv("FROM_ENV", "inherited")
    r = kray("create", "configmap", "envcm", "-n", ns, f"--from-env-file={env}")
    assert r.exit_code == 0, r.output
    assert get(client, "configmaps", "envcm", ns)["data"] == {
        "MODE": "fast",
        "LEVEL": "3 ",
        "FROM_ENV": "inherited",
        "EMPTY": "",
    }
    mixed = kray("create", "secret", "generic", "s", "-n", ns, f"--from-env-file={env}", "--from-literal=a=b")
    assert (mixed.exit_code, mixed.stderr) == (
        1,
        "error: from-env-file cannot be combined with from-file or from-literal\n",
    )
    (tmp_path / "bad.env").write_text("1BAD=x\n")
    bad = kray("create", "secret", "generic", "s", "-n", ns, f"--from-env-file={tmp_path / 'bad.env'}")
    assert bad.exit_code == 1 and '"1BAD" is not a valid key name' in bad.stderr
    assert absent(client, "secrets", "s", ns)


def test_docker_registry_secret_is_kubectls_and_the_kubelet_reads_it(client: Client, ns: str) -> None:
    server = "registry.example.com:5000"
    r = kray(
        "create", "secret", "docker-registry", "regcred", "-n", ns, f"--docker-server={server}",
        "--docker-username=robot", "--docker-password=s3cr<t", "--docker-email=ops@example.com",
    )  # fmt: skip
    assert (r.exit_code, r.stdout) == (0, "secret/regcred created\n"), r.output
    got = get(client, "secrets", "regcred", ns)
    assert got["type"] == "kubernetes.io/dockerconfigjson"
    raw = decoded(got)[".dockerconfigjson"]
    auth = base64.b64encode(b"robot:s3cr<t").decode()
    assert json.loads(raw) == {
        "auths": {server: {"username": "robot", "password": "s3cr<t", "email": "ops@example.com", "auth": auth}}
    }
    # byte for byte what kubectl's json.Marshal writes (compact; Go escapes <)
    assert (
        raw
        == (
            '{"auths":{"registry.example.com:5000":{"username":"robot","password":"s3cr\\u003ct",'
            f'"email":"ops@example.com","auth":"{auth}"}}}}}}'
        ).encode()
    )

    entries = parse_docker_config(raw)
    assert [a.username for a in credentials_for(f"{server}/team/app:1", entries)] == ["robot"]
    assert credentials_for("other.example.com/team/app:1", entries) == []

    # no email -> no "email" key; the default server is Docker Hub's
    r = kray("create", "secret", "docker-registry", "hub", "-n", ns, "--docker-username=u", "--docker-password=p")
    assert r.exit_code == 0, r.output
    hub = json.loads(decoded(get(client, "secrets", "hub", ns))[".dockerconfigjson"])
    assert hub == {"auths": {"https://index.docker.io/v1/": {"username": "u", "password": "p", "auth": "dTpw"}}}
    assert [a.username for a in credentials_for("library/nginx", parse_docker_config(json.dumps(hub)))] == ["u"]

    missing = kray("create", "secret", "docker-registry", "nope", "-n", ns, "--docker-username=u")
    assert missing.exit_code == 1 and "either --from-file or the combination of" in missing.stderr
    assert absent(client, "secrets", "nope", ns)


def test_docker_registry_from_file(client: Client, ns: str, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text('{"auths": {"ghcr.io": {"auth": "dTpw"}}}')
    r = kray("create", "secret", "docker-registry", "fromfile", "-n", ns, f"--from-file=.dockerconfigjson={cfg}")
    assert r.exit_code == 0, r.output
    got = get(client, "secrets", "fromfile", ns)
    assert got["type"] == "kubernetes.io/dockerconfigjson"
    assert decoded(got) == {".dockerconfigjson": cfg.read_bytes()}
    wrong = kray("create", "secret", "docker-registry", "wrongkey", "-n", ns, f"--from-file={cfg}")
    assert wrong.exit_code == 1 and ".dockerconfigjson" in wrong.stderr
    assert absent(client, "secrets", "wrongkey", ns)


@pytest.fixture
def key_pair(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_secret_tls(client: Client, ns: str, tmp_path: Path, key_pair: tuple[Path, Path]) -> None:
    cert, key = key_pair
    r = kray("create", "secret", "tls", "web-tls", "-n", ns, f"--cert={cert}", f"--key={key}")
    assert (r.exit_code, r.stdout) == (0, "secret/web-tls created\n"), r.output
    got = get(client, "secrets", "web-tls", ns)
    assert got["type"] == "kubernetes.io/tls"
    assert decoded(got) == {"tls.crt": cert.read_bytes(), "tls.key": key.read_bytes()}

    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    bad = kray("create", "secret", "tls", "bad", "-n", ns, f"--cert={junk}", f"--key={key}")
    assert bad.exit_code == 1
    assert bad.stderr == f"error: tls: failed to find any PEM data in certificate input ({junk})\n"
    bad = kray("create", "secret", "tls", "bad", "-n", ns, f"--cert={cert}", f"--key={cert}")
    assert bad.exit_code == 1 and "failed to find any PEM data in key input" in bad.stderr
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "genrsa", "-out", str(other), "2048"], check=True, capture_output=True)
    bad = kray("create", "secret", "tls", "bad", "-n", ns, f"--cert={cert}", f"--key={other}")
    assert (bad.exit_code, bad.stderr) == (1, "error: tls: private key does not match public key\n")
    bad = kray("create", "secret", "tls", "bad", "-n", ns, f"--cert={cert}")
    assert (bad.exit_code, bad.stderr) == (1, "error: key and cert must be specified\n")
    assert absent(client, "secrets", "bad", ns)


def test_configmap_binary_files_go_to_binary_data(client: Client, ns: str, tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (tmp_path / "app.conf").write_text("port = 80\nname = café\n")
    r = kray(
        "create", "cm", "assets", "-n", ns, f"--from-file={tmp_path / 'logo.png'}",
        f"--from-file={tmp_path / 'app.conf'}", "--from-literal=mode=fast", "-o", "json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)  # -o json prints what the server stored
    got = get(client, "configmaps", "assets", ns)
    assert printed["metadata"]["uid"] == got["metadata"]["uid"]
    assert got["data"] == {"mode": "fast", "app.conf": "port = 80\nname = café\n"}
    assert got["binaryData"] == {"logo.png": base64.b64encode(b"\x89PNG\r\n\x1a\n\xff\xfe").decode()}


def test_dry_run_client_sends_nothing(client: Client, ns: str) -> None:
    r = kray("create", "secret", "generic", "dry", "-n", ns, "--from-literal=k=v", "--dry-run=client", "-o", "yaml")
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.stdout) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "dry", "namespace": ns},
        "data": {"k": "dg=="},
    }
    r = kray("create", "configmap", "dry", "-n", ns, "--from-literal=k=v", "--dry-run=client")
    assert (r.exit_code, r.stdout) == (0, "configmap/dry created (dry run)\n")
    r = kray("create", "namespace", "dry-ns-never", "--dry-run=client", "-o", "json")
    assert json.loads(r.stdout)["metadata"] == {"name": "dry-ns-never"}
    assert absent(client, "secrets", "dry", ns) and absent(client, "configmaps", "dry", ns)
    assert absent(client, "namespaces", "dry-ns-never")
    server = kray("create", "configmap", "dry", "-n", ns, "--from-literal=k=v", "--dry-run=server")
    assert (server.exit_code, server.stdout) == (0, "configmap/dry created (server dry run)\n")
    assert absent(client, "configmaps", "dry", ns)


def test_bad_input_writes_nothing(client: Client, ns: str, tmp_path: Path) -> None:
    (tmp_path / "k").write_text("from file")
    dup = kray("create", "secret", "generic", "dup", "-n", ns, "--from-literal=k=v", f"--from-file={tmp_path / 'k'}")
    assert (dup.exit_code, dup.stderr) == (1, "error: cannot add key k, another key by that name already exists\n")
    dup = kray("create", "configmap", "dup", "-n", ns, "--from-literal=k=v", "--from-literal=k=w")
    assert dup.exit_code == 1
    assert (
        dup.stderr == 'error: cannot add key "k", another key by that name already exists in Data for ConfigMap "dup"\n'
    )
    bad = kray("create", "secret", "generic", "dup", "-n", ns, "--from-literal=novalue")
    assert (bad.exit_code, bad.stderr) == (1, 'error: invalid --from-literal "novalue": expected key=value\n')
    bad = kray("create", "secret", "generic", "dup", "-n", ns, "--from-literal=a b=c")
    assert bad.exit_code == 1 and '"a b" is not a valid key name for a Secret' in bad.stderr
    missing = kray("create", "configmap", "dup", "-n", ns, "--from-literal=a=b", f"--from-file={tmp_path / 'nope'}")
    assert (missing.exit_code, missing.stderr) == (
        1,
        f"error: error reading {tmp_path / 'nope'}: no such file or directory\n",
    )
    named_dir = kray("create", "configmap", "dup", "-n", ns, f"--from-file=key={tmp_path}")
    assert named_dir.exit_code == 1 and "cannot give a key name for a directory path" in named_dir.stderr
    assert absent(client, "secrets", "dup", ns) and absent(client, "configmaps", "dup", ns)
    gone = kray("create", "secret", "generic", "x", "-n", f"{ns}-missing", "--from-literal=a=b")
    assert gone.exit_code == 1 and gone.stderr.startswith("Error from server (NotFound): ")


def test_create_from_file_still_works(client: Client, ns: str, tmp_path: Path) -> None:
    f = tmp_path / "cm.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fromfile}\ndata: {a: b}\n")
    r = kray("create", "-f", str(f), "-n", ns)
    assert (r.exit_code, r.stdout) == (0, "configmap/fromfile created\n"), r.output
    assert get(client, "configmaps", "fromfile", ns)["data"] == {"a": "b"}
    again = kray("create", "--filename", str(f), "--namespace", ns)
    assert again.exit_code == 1 and "already exists" in again.stderr
    none = kray("create")
    assert none.exit_code == 2 and "Missing option '-f' / '--filename'" in none.stderr
    both = kray("create", "-f", str(f), "namespace", "x")
    assert both.exit_code == 2 and "cannot be combined" in both.stderr
    listed = kray("create", "--help").stdout
    assert "-f, --filename" in listed and all(c in listed for c in ("configmap", "namespace", "secret"))
