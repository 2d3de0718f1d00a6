"""What the tests of this session left on the machine: netns, links, cgroups, nftables tables,
OCI runtime containers and processes named after a test prefix.

Tests that make machine-wide things name them after a random prefix from `session_prefix()`,
which remembers it; tests/conftest.py looks for those prefixes at the end of the session and
fails it when anything remains. Only registered prefixes count: other engineers' test sessions
(same machine, same name patterns, running right now) and a user's `kray up` (prefix `kray`) are
none of this session's business.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/var/run/netns")
IFNAMSIZ = 15
VETH_HEAD = IFNAMSIZ - 8  # BridgeNetwork.veth_name keeps this much of the prefix

_prefixes: set[str] = set()


def session_prefix(head: str, nbytes: int = 3) -> str:
    """`head` + random hex, remembered for the end-of-session leftover check."""
    if head.startswith("kray"):
        raise ValueError("test prefixes must not look like a user's `kray up` (prefix kray)")
    prefix = head + secrets.token_hex(nbytes)
    _prefixes.add(prefix)
    return prefix


def registered() -> set[str]:
    return set(_prefixes)


def _out(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _ours(name: str, prefixes: set[str]) -> bool:
    return any(name.startswith(p) for p in prefixes)


def _links(prefixes: set[str]) -> list[str]:
    heads = {p[:VETH_HEAD] for p in prefixes}  # veths carry only the prefix's head, then a hash
    names = [line.split()[0].split("@")[0] for line in _out("ip", "-br", "link").splitlines() if line.strip()]
    return [f"link {n}" for n in names if _ours(n, prefixes) or (len(n) == IFNAMSIZ and _ours(n, heads))]


def _cgroups(prefixes: set[str]) -> list[str]:
    out = []
    for controller in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        for p in prefixes:
            if (controller / p).is_dir():
                out.append(f"cgroup {controller / p}")
    return out


def _processes(prefixes: set[str]) -> list[str]:
    out = []
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(p in cmd for p in prefixes):
            out.append(f"process {d.name}: {cmd[:160]}")
    return out


def _oci_containers(roots: list[Path]) -> list[str]:
    """crun/runc containers still known to a runtime state folder under `roots` (the tests'
    node folders keep theirs at <node>/.../oci/<runtime>)."""
    out = []
    for root in roots:
        for binary in ("crun", "runc"):
            for state in root.glob(f"**/oci/{binary}") if root.is_dir() else []:
                for line in _out(binary, "--root", str(state), "list", "-q").splitlines():
                    if line.strip():
                        out.append(f"{binary} container {line.strip()} in {state}")
    return out


def leftovers(prefixes: set[str] | None = None, roots: list[Path] | None = None) -> list[str]:
    """Everything named after `prefixes` (default: this session's), plus OCI containers under
    `roots` (the session's temp folders)."""
    prefixes = registered() if prefixes is None else prefixes
    if not prefixes:
        return []
    found: list[str] = []
    if NETNS_DIR.is_dir():
        found += [f"netns {n}" for n in sorted(os.listdir(NETNS_DIR)) if _ours(n, prefixes)]
    found += _links(prefixes)
    found += _cgroups(prefixes)
    tables = re.findall(r"^table (\S+) (\S+)", _out("nft", "list", "tables"), re.MULTILINE)
    found += [f"nft table {fam} {name}" for fam, name in tables if any(p in name for p in prefixes)]
    found += _oci_containers(roots or [])
    found += _processes(prefixes)
    return found


def default_prefix_netns() -> set[str]:
    """Pod netns of a node with kray's default prefix (`kray` + a 32-hex sandbox id), which the
    tests that run a plain `kray up` use: they compare these before and after `kray down`."""
    if not NETNS_DIR.is_dir():
        return set()
    return {n for n in os.listdir(NETNS_DIR) if n.startswith("kray") and len(n) == 36 and n[4:].isalnum()}
