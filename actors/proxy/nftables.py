"""The nftables port: apply a whole table atomically, delete it, list what exists.

``NftCli`` runs the real ``nft`` (optionally inside a named network namespace through
``ip netns exec``); ``FakeNftables`` keeps the applied rulesets in memory with the same
semantics (one table per name, replaced whole; deleting a missing table is a no-op).
"""

from __future__ import annotations

import asyncio
import json
from typing import Protocol, runtime_checkable

from .rules import Ruleset


class NftablesError(RuntimeError):
    pass


@runtime_checkable
class Nftables(Protocol):
    async def apply(self, ruleset: Ruleset) -> None:
        """Replace the ruleset's table (create it if missing) in one transaction."""
        ...

    async def delete_table(self, family: str, name: str) -> None:
        """Remove a table; a missing one is not an error."""
        ...

    async def tables(self) -> list[tuple[str, str]]:
        """(family, name) of every table."""
        ...


class NftCli:
    """The real thing: ``nft -f -`` per transaction, ``nft -j list tables`` to look."""

    def __init__(self, netns: str | None = None, nft: str = "nft") -> None:
        self.netns = netns
        self.nft = nft

    def _argv(self, *args: str) -> list[str]:
        base = [self.nft, *args]
        return ["ip", "netns", "exec", self.netns, *base] if self.netns else base

    async def _run(self, *args: str, stdin: str | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self._argv(*args),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if proc.returncode != 0:
            raise NftablesError(f"nft {' '.join(args)} failed ({proc.returncode}): {err.decode().strip()}")
        return out.decode()

    async def apply(self, ruleset: Ruleset) -> None:
        await self._run("-f", "-", stdin=ruleset.render())

    async def delete_table(self, family: str, name: str) -> None:
        # "table X; delete table X" in one transaction: no error when it was already gone.
        await self._run("-f", "-", stdin=f"table {family} {name}\ndelete table {family} {name}\n")

    async def tables(self) -> list[tuple[str, str]]:
        data = json.loads(await self._run("-j", "list", "tables") or "{}")
        return [
            (item["table"]["family"], item["table"]["name"]) for item in data.get("nftables", []) if "table" in item
        ]

    async def list_table(self, family: str, name: str) -> str:
        """The kernel's view of a table, as nft prints it (debugging, tests)."""
        return await self._run("list", "table", family, name)


class FakeNftables:
    """In-memory nftables: the last ruleset applied per table, and every transaction."""

    def __init__(self) -> None:
        self.tables_by_name: dict[tuple[str, str], Ruleset] = {}
        self.transactions: list[str] = []  # rendered scripts, in order (what nft -f would get)
        self.fail_next: Exception | None = None

    async def apply(self, ruleset: Ruleset) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        script = ruleset.render()  # rendering must work, as the real one needs it
        self.transactions.append(script)
        self.tables_by_name[(ruleset.family, ruleset.table)] = ruleset

    async def delete_table(self, family: str, name: str) -> None:
        self.tables_by_name.pop((family, name), None)
        self.transactions.append(f"delete table {family} {name}")

    async def tables(self) -> list[tuple[str, str]]:
        return sorted(self.tables_by_name)

    def ruleset(self, name: str, family: str = "ip") -> Ruleset | None:
        return self.tables_by_name.get((family, name))
