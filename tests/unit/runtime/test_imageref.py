"""Image references (distribution's grammar and Docker's normalization) and the pure parts of the
registry client: WWW-Authenticate challenges, platform choice in an index, CRI credentials."""

from __future__ import annotations

import base64

import pytest

from kray.runtime.imageref import ImageReference, ReferenceError, parse_reference
from kray.runtime.records import InvalidArgument, NotFound
from kray.runtime.registry import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    Credentials,
    host_platform,
    parse_challenge,
    pick_platform,
)

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image", "domain", "path", "tag", "digest"),
    [
        # Docker Hub: one component goes under library/, the aliases all mean docker.io.
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/library/busybox:1", "docker.io", "library/busybox", "1", None),
        ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("registry-1.docker.io/user/app:v2", "docker.io", "user/app", "v2", None),
        # Other registries: a first component with a dot, a port, or localhost.
        ("nvcr.io/nvidia/pytorch:24.01-py3", "nvcr.io", "nvidia/pytorch", "24.01-py3", None),
        ("ghcr.io/org/team/app", "ghcr.io", "org/team/app", "latest", None),
        ("127.0.0.1:5000/app:dev", "127.0.0.1:5000", "app", "dev", None),
        ("reg.example.com:443/a/b", "reg.example.com:443", "a/b", "latest", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/app:1", "localhost:5000", "app", "1", None),
        ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
        ("[::1]/app", "[::1]", "app", "latest", None),
        # Without a slash, `localhost:5000` is a Hub image tagged 5000 (as Docker reads it).
        ("localhost:5000", "docker.io", "library/localhost", "5000", None),
        # Separators inside components; tags with _ . -.
        ("user/a.b_c__d-e--f", "docker.io", "user/a.b_c__d-e--f", "latest", None),
        ("busybox:_Tag.with-Dash", "docker.io", "library/busybox", "_Tag.with-Dash", None),
        # Digests: no default tag when pinned; a tag and a digest together keep both.
        (f"busybox@{D}", "docker.io", "library/busybox", None, D),
        (f"busybox:1.36@{D}", "docker.io", "library/busybox", "1.36", D),
        (f"localhost:5000/app@{D}", "localhost:5000", "app", None, D),
    ],
)
def test_parse_reference_normalizes(image: str, domain: str, path: str, tag: str | None, digest: str | None):
    ref = parse_reference(image)
    assert ref == ImageReference(domain=domain, path=path, tag=tag, digest=digest)


def test_reference_properties():
    hub = parse_reference("busybox")
    assert hub.api_host == "registry-1.docker.io" and hub.reference == "latest"
    assert str(hub) == "docker.io/library/busybox:latest"
    pinned = parse_reference(f"localhost:5000/app:1@{D}")
    assert pinned.api_host == "localhost:5000" and pinned.reference == D  # the digest wins over the tag
    assert str(pinned) == f"localhost:5000/app:1@{D}"
    assert str(parse_reference(f"busybox@{D}")) == f"docker.io/library/busybox@{D}"


@pytest.mark.parametrize(
    ("image", "part"),
    [
        ("", "invalid reference format"),
        (" busybox", "invalid reference format"),
        ("busybox\n", "invalid reference format"),
        ("Busybox", "must be lowercase"),
        ("Bad/Name:1", "'Bad' must be lowercase"),
        ("user/App", "'App' must be lowercase"),
        ("a//b", "invalid repository name"),
        ("-a/b", "invalid repository name"),
        ("a_/b", "invalid repository name"),
        ("a/b c", "invalid repository name"),
        ("busybox:", "invalid tag ''"),
        ("busybox:-x", "invalid tag '-x'"),
        ("busybox:" + "t" * 129, "invalid tag"),
        ("busybox:a/b", "invalid registry host 'busybox:a'"),  # a colon before a slash names a host
        ("a.b_c/x", "invalid registry host 'a.b_c'"),  # a dot makes it a host, where _ is not allowed
        ("busybox@sha256:abc", "invalid digest 'sha256:abc'"),
        ("busybox@md5:" + "ab" * 16, "invalid digest"),
        ("busybox@sha256:" + "AB" * 32, "invalid digest"),
        ("busybox@", "invalid digest ''"),
        ("exa_mple.com/app", "invalid registry host 'exa_mple.com'"),
        ("example.com:/app", "invalid registry host"),
        ("example.com:port/app", "invalid registry host"),
        ("-bad.com/app", "invalid registry host"),
        ("example.com/" + "a" * 250, "longer than 255 characters"),
        ("a/" * 130 + "a", "longer than 255 characters"),
    ],
)
def test_parse_reference_rejects_naming_the_part(image: str, part: str):
    with pytest.raises(ReferenceError) as exc:
        parse_reference(image)
    assert part in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_name_length_limit_counts_the_normalized_name():
    # 255 characters in all, domain and "/" included: the longest name that parses.
    ok = "example.com/" + "a" * (255 - len("example.com/"))
    assert parse_reference(ok).path == "a" * 243
    with pytest.raises(ReferenceError, match="longer than 255"):
        parse_reference(ok + "a")
    # A Hub name counts its docker.io/library/ prefix.
    hub = "a" * (255 - len("docker.io/library/"))
    assert parse_reference(hub).path == f"library/{hub}"
    with pytest.raises(ReferenceError, match="longer than 255"):
        parse_reference(hub + "a")


def test_longest_tag_is_128_characters():
    assert parse_reference("busybox:" + "t" * 128).tag == "t" * 128


@pytest.mark.parametrize("tag", ["é", "v1\u0661"])
def test_non_ascii_tag_is_rejected(tag: str):
    with pytest.raises(ReferenceError, match="invalid tag"):
        parse_reference(f"busybox:{tag}")


# --- WWW-Authenticate ------------------------------------------------------------------------


def test_parse_challenge_bearer_quoted():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull",
    }


def test_parse_challenge_unquoted_spaces_and_case():
    scheme, params = parse_challenge("  BASIC Realm=registry , Charset=UTF-8 ")
    assert scheme == "basic" and params == {"realm": "registry", "charset": "UTF-8"}


def test_parse_challenge_escaped_quote_and_commas_inside_quotes():
    scheme, params = parse_challenge(r'Bearer realm="https://a/t?x=1,y=2",service="say \"hi\""')
    assert scheme == "bearer"
    assert params == {"realm": "https://a/t?x=1,y=2", "service": 'say "hi"'}


def test_parse_challenge_insufficient_scope_error():
    _, params = parse_challenge(
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/p:pull",error="insufficient_scope"'
    )
    assert params["error"] == "insufficient_scope" and params["scope"] == "repository:o/p:pull"


def test_parse_challenge_scheme_only_and_empty():
    assert parse_challenge("Basic") == ("basic", {})
    assert parse_challenge("") == ("", {})


# --- platforms -----------------------------------------------------------------------------


def _desc(os_: str, arch: str, digest: str, media: str = OCI_MANIFEST, variant: str = "") -> dict:
    plat = {"os": os_, "architecture": arch, **({"variant": variant} if variant else {})}
    return {"mediaType": media, "digest": digest, "size": 1, "platform": plat}


INDEX = {
    "manifests": [
        _desc("unknown", "unknown", "sha256:att-amd64"),  # a buildkit attestation
        _desc("linux", "arm", "sha256:arm", variant="v7"),
        _desc("linux", "amd64", "sha256:amd64", media=DOCKER_MANIFEST),
        _desc("linux", "arm64", "sha256:arm64", variant="v8"),
        _desc("windows", "amd64", "sha256:win"),
    ]
}


def test_pick_platform_chooses_the_wanted_one():
    assert pick_platform(INDEX, ("linux", "amd64"), "busybox")["digest"] == "sha256:amd64"
    assert pick_platform(INDEX, ("linux", "arm64"), "busybox")["digest"] == "sha256:arm64"
    assert pick_platform(INDEX, ("windows", "amd64"), "busybox")["digest"] == "sha256:win"
    # A copy: the caller may change it without touching the index.
    got = pick_platform(INDEX, ("linux", "amd64"), "busybox")
    got["digest"] = "x"
    assert INDEX["manifests"][2]["digest"] == "sha256:amd64"


def test_pick_platform_skips_attestations_and_other_media_types():
    index = {
        "manifests": [
            {**_desc("linux", "amd64", "sha256:odd"), "mediaType": "application/vnd.in-toto+json"},
            {k: v for k, v in _desc("linux", "amd64", "sha256:plain").items() if k != "mediaType"},
        ]
    }
    assert pick_platform(index, ("linux", "amd64"), "x")["digest"] == "sha256:plain"  # no mediaType: OCI
    with pytest.raises(NotFound, match=r"the index has linux/amd64\)"):
        pick_platform({"manifests": index["manifests"][:1]}, ("linux", "amd64"), "x")  # an in-toto one only


def test_pick_platform_not_found_lists_what_the_index_has():
    with pytest.raises(NotFound) as exc:
        pick_platform(INDEX, ("linux", "s390x"), "docker.io/library/busybox:1")
    msg = str(exc.value)
    assert msg.startswith("docker.io/library/busybox:1: no image for linux/s390x")
    assert "linux/arm/v7, linux/amd64, linux/arm64/v8, windows/amd64" in msg
    assert "unknown" not in msg.split("no image for")[1].split("(")[1]  # attestations not listed
    with pytest.raises(NotFound, match=r"the index has nothing"):
        pick_platform({"manifests": []}, ("linux", "amd64"), "x")
    with pytest.raises(NotFound, match=r"the index has nothing"):
        pick_platform({}, ("linux", "amd64"), "x")


def test_host_platform_is_linux_with_a_go_arch_name():
    os_, arch = host_platform()
    assert os_ == "linux" and arch and arch not in ("x86_64", "aarch64")


# --- credentials ---------------------------------------------------------------------------


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def test_credentials_from_auth_decodes_user_and_password():
    assert Credentials.from_auth("", "", _b64("bot:s3:cret"), "") == Credentials("bot", "s3:cret", "")
    assert Credentials.from_auth("", "", _b64("bot:"), "") == Credentials("bot", "", "")


def test_credentials_explicit_username_wins_over_auth():
    assert Credentials.from_auth("me", "pw", _b64("bot:other"), "") == Credentials("me", "pw", "")
    assert Credentials.from_auth("me", "pw", "", "") == Credentials("me", "pw", "")


@pytest.mark.parametrize("bad", ["abc", _b64(b"\xff\xfe:pw")])
def test_credentials_bad_auth_is_invalid_argument(bad: str):
    with pytest.raises(InvalidArgument, match="auth: not base64 of user:password"):
        Credentials.from_auth("", "", bad, "")


def test_credentials_nothing_is_anonymous():
    assert Credentials.from_auth("", "", "", "") is None
    assert Credentials.from_auth("", "pw-without-user", "", "") is None


def test_credentials_registry_token_only():
    assert Credentials.from_auth("", "", "", "tok") == Credentials("", "", "tok")
