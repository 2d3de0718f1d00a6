"""The client config file (``~/.kray/config``): where the API server is and the token to use.

``kray up`` writes it; the CLI and the Python client read it. ``KRAY_CONFIG`` names another
file; ``KRAY_SERVER`` and ``KRAY_TOKEN`` override single fields (handy in tests and CI).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml


class ConfigError(Exception):
    """The config file is missing or malformed."""


@dataclass(frozen=True)
class KrayConfig:
    server: str
    token: str


def default_config_path() -> Path:
    env = os.environ.get("KRAY_CONFIG")
    return Path(env) if env else Path.home() / ".kray" / "config"


def load_config(path: Path | None = None) -> KrayConfig:
    server_env, token_env = os.environ.get("KRAY_SERVER"), os.environ.get("KRAY_TOKEN")
    if server_env and token_env:
        return KrayConfig(server=server_env, token=token_env)
    path = path or default_config_path()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no kray config at {path}: run `kray up` first, or set KRAY_SERVER and KRAY_TOKEN") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("server"), str):
        raise ConfigError(f"{path}: missing 'server'")
    return KrayConfig(server=server_env or data["server"], token=token_env or str(data.get("token", "")))


def save_config(config: KrayConfig, path: Path | None = None) -> Path:
    path = path or default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({"server": config.server, "token": config.token}))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path
