"""NodeRuntime keeps sandbox/container records in memory, re-read only when their file changed
(listings were O(pods) file reads and protobuf parses per call); what another writer changes on
disk is still seen, and what is gone is gone. The `process` runtime needs no root for this."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.images import ImageStore
from kray.runtime.procrt import ProcessRuntime
from kray.runtime.service import NodeRuntime, NotFound


def node(tmp_path: Path) -> NodeRuntime:
    return NodeRuntime(ProcessRuntime(tmp_path / "oci"), ImageStore(tmp_path / "images"), None, tmp_path / "state")


def sandbox_config(name: str) -> pb.PodSandboxConfig:
    md = pb.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}")
    return pb.PodSandboxConfig(metadata=md, labels={"app": name})


def test_records_are_cached_until_their_file_changes(tmp_path: Path) -> None:
    rt = node(tmp_path)
    rec = rt.run_sandbox(sandbox_config("a"))
    assert rec.host_network and rec.host_pid  # the process runtime has only the node's namespaces
    assert rt.sandbox(rec.id) is rt.sandbox(rec.id)  # no re-read, no re-parse
    assert rt.sandbox(rec.id).pb_config() is rt.sandbox(rec.id).pb_config()
    f = rt.sandbox_root / rec.id / "sandbox.json"
    data = json.loads(f.read_text())
    data["state"] = "notready"
    f.write_text(json.dumps(data))
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # another writer, a later mtime
    assert rt.sandbox(rec.id).state == "notready"
    rt.remove_sandbox(rec.id)
    with pytest.raises(NotFound):
        rt.sandbox(rec.id)
    assert rt.sandboxes() == []


def test_a_second_instance_sees_the_same_records(tmp_path: Path) -> None:
    first = node(tmp_path)
    rec = first.run_sandbox(sandbox_config("b"))
    second = node(tmp_path)  # a restarted service: everything comes from disk
    assert [s.id for s in second.sandboxes()] == [rec.id]
    second.remove_sandbox(rec.id)
    assert first.sandboxes() == []
