"""`kray cp`'s pure parts: remote path parsing and the refusal of archive members that would
land outside the copy."""

from __future__ import annotations

import io
import tarfile

import pytest

from kray.cli.common import CliError
from kray.cli.cp import _safe_members, split_remote


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("web:/tmp/x", ("default", "web", "/tmp/x")),
        ("team/web:/data", ("team", "web", "/data")),
        ("/local/path", None),
        ("./rel:name", None),
        ("plain", None),
    ],
)
def test_split_remote(spec: str, expected: tuple[str, str, str] | None) -> None:
    assert split_remote(spec, "default") == expected


def test_bad_remote() -> None:
    with pytest.raises(CliError, match="expected"):
        split_remote("web:", "default")


def archive(*entries: tuple[str, str | None]) -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info, io.BytesIO(b""))
    buffer.seek(0)
    return tarfile.open(fileobj=buffer, mode="r")


def test_members_must_stay_inside_the_copy() -> None:
    assert [m.name for m in _safe_members(archive(("ckpt", None), ("ckpt/a", None)), "ckpt")] == ["ckpt", "ckpt/a"]
    assert _safe_members(archive(("ckpt/ok", "a")), "ckpt")
    for bad, message in (
        (("../etc/passwd", None), "outside"),
        (("/etc/passwd", None), "outside"),
        (("other/x", None), "outside"),
        (("ckpt/ln", "/etc/shadow"), "points outside"),
        (("ckpt/ln", "../../x"), "points outside"),
    ):
        with pytest.raises(CliError, match=message):
            _safe_members(archive(bad), "ckpt")
