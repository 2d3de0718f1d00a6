"""Running a command in a running container (the CRI's ExecSync and streaming Exec), as a mixin
of NodeRuntime: kept apart from the sandbox and container lifecycle in service.py, which it
only reads from (the container's state and OCI config) and never changes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from kray.runtime.containers import ContainerManager, ContainerStatus
from kray.runtime.ocirt import CliRuntime
from kray.runtime.records import ContainerRecord, DeadlineExceeded, FailedPrecondition, InvalidArgument

MAX_EXEC_OUTPUT = 16 << 20  # CRI: cap ExecSync output at 16 MiB per stream


class ContainerExecs:
    """exec_start/exec_sync over the OCI runtime's `exec`; NodeRuntime provides the rest."""

    # What NodeRuntime provides (declared, not defined, so that a missing one fails loudly).
    runtime: CliRuntime
    containers: ContainerManager
    container: Callable[[str], tuple[ContainerRecord, ContainerStatus]]

    def _exec_argv(self, cid: str, cmd: list[str]) -> list[str]:
        _, st = self.container(cid)
        if st.state != "running":
            raise FailedPrecondition(f"container {cid} is {st.state}, not running")
        if not cmd:
            raise InvalidArgument("exec: empty command")
        return self.runtime.argv("exec", cid, *cmd)

    def exec_start(
        self,
        cid: str,
        cmd: list[str],
        stdin: bool,
        console: str = "",
        size: tuple[int, int] | None = None,
        relay_fd: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `cmd` in the running container with its output on pipes (streaming exec).

        With `console`, the path of a listening unix socket in a private folder, it runs on a new
        terminal instead, whose master the runtime sends to that socket (crun's
        `--console-socket`); only the runtime's own errors stay on a pipe (stderr). With
        `relay_fd` too (a pty of the caller's), the runtime is given that as its stdio and no
        socket: runc relays the terminal so (its console socket needs a detached exec, whose
        exit code nobody gets). The command goes in a process file in the socket's folder (the
        container's own process with these args, `terminal`, and `consoleSize` from `size`, as
        (columns, rows)): the runtime sizes the terminal as it starts the command (runc before
        it, crun along with it), where `exec --tty` would leave it 0x0 until a later resize."""
        argv = self._exec_argv(cid, cmd)  # checks the container runs and there is a command
        if not console:
            return subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        spec = json.loads((self.containers.dir(cid) / "config.json").read_text())
        process = {**spec.get("process", {}), "args": cmd, "terminal": True}
        env = list(process.get("env") or [])
        if not any(e.startswith("TERM=") for e in env):
            process["env"] = [*env, "TERM=xterm"]  # as containerd does: a terminal needs a type
        if size and all(size):
            process["consoleSize"] = {"width": size[0], "height": size[1]}
        process_file = Path(console).with_suffix(".json")
        process_file.write_text(json.dumps(process))
        if relay_fd is not None:
            argv = self.runtime.argv("exec", "--process", str(process_file), cid)
            return subprocess.Popen(argv, stdin=relay_fd, stdout=relay_fd, stderr=relay_fd)
        argv = self.runtime.argv("exec", "--process", str(process_file), "--console-socket", console, cid)
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def exec_sync(self, cid: str, cmd: list[str], timeout: float) -> tuple[bytes, bytes, int]:
        """Run `cmd` in the running container; (stdout, stderr, exit code)."""
        argv = self._exec_argv(cid, cmd)
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout if timeout > 0 else None,
            )
        except subprocess.TimeoutExpired:
            raise DeadlineExceeded(f"exec in {cid} timed out after {timeout}s: {cmd}") from None
        return proc.stdout[:MAX_EXEC_OUTPUT], proc.stderr[:MAX_EXEC_OUTPUT], proc.returncode
