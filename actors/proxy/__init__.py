"""The per-node service proxy: Services + Endpoints -> one kray-owned nftables table.

``ProxyCore`` (core.py) is a plain asyncio class handed a ListWatcher and an ``Nftables`` port
(nftables.py: ``NftCli`` runs the real ``nft``, ``FakeNftables`` records rulesets). The ruleset
model and its rendering are in rules.py; the Ray wrapper is actor.py (the only module that
imports Ray).
"""

from .core import ProxyCore, desired_services
from .nftables import FakeNftables, Nftables, NftablesError, NftCli
from .rules import MASQ_MARK, Backend, Ruleset, ServiceRule

__all__ = [
    "MASQ_MARK",
    "Backend",
    "FakeNftables",
    "NftCli",
    "Nftables",
    "NftablesError",
    "ProxyCore",
    "Ruleset",
    "ServiceRule",
    "desired_services",
]
