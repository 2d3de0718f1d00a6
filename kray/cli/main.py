"""The ``kray`` command: kubectl-like verbs plus cluster lifecycle (``up``/``down``/``status``).

Commands are imported only when invoked (``LazyGroup``): ``kray get`` must answer in a few
hundred milliseconds, so it must not pay for Ray, the models, or other commands' imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

# name -> "module:attribute". Cluster lifecycle lives in kray.cli.cluster (imports Ray lazily).
COMMANDS: dict[str, str] = {
    "apply": "kray.cli.apply:apply_cmd",
    "diff": "kray.cli.diff:diff_cmd",
    "create": "kray.cli.apply:create_cmd",
    "get": "kray.cli.get:get_cmd",
    "describe": "kray.cli.describe:describe_cmd",
    "delete": "kray.cli.delete:delete_cmd",
    "rollout": "kray.cli.rollout:rollout_cmd",
    "scale": "kray.cli.scale:scale_cmd",
    "patch": "kray.cli.patch:patch_cmd",
    "label": "kray.cli.label:label_cmd",
    "annotate": "kray.cli.label:annotate_cmd",
    "wait": "kray.cli.wait:wait_cmd",
    "cordon": "kray.cli.node:cordon_cmd",
    "uncordon": "kray.cli.node:uncordon_cmd",
    "drain": "kray.cli.node:drain_cmd",
    "logs": "kray.cli.logs:logs_cmd",
    "exec": "kray.cli.exec:exec_cmd",
    "cp": "kray.cli.cp:cp_cmd",
    "port-forward": "kray.cli.portforward:portforward_cmd",
    "top": "kray.cli.top:top_cmd",
    "edit": "kray.cli.edit:edit_cmd",
    "api-resources": "kray.cli.info:api_resources_cmd",
    "version": "kray.cli.info:version_cmd",
    "image": "kray.cli.image:image",
    "up": "kray.cli.cluster:up",
    "down": "kray.cli.cluster:down",
    "status": "kray.cli.cluster:status",
    "controller": "kray.cli.controller:controller_cmd",
}


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


class LazyGroup(click.Group):
    """Imports a command's module on first use; reports user errors as one ``error:`` line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, target in COMMANDS.items() if _module_exists(target.partition(":")[0]))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name == module_name:  # e.g. kray.cli.cluster not written yet
                return None
            raise
        cmd = getattr(module, attr, None)
        return cmd if isinstance(cmd, click.Command) else None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except Exception as exc:
            from kray.cli.common import user_error_message

            message = user_error_message(exc)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            raise click.exceptions.Exit(1) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", envvar="KRAY_SERVER", help="API server URL (default: from ~/.kray/config).")
@click.option("--token", envvar="KRAY_TOKEN", help="Bearer token (default: from ~/.kray/config).")
@click.pass_context
def cli(ctx: click.Context, server: str | None, token: str | None) -> None:
    """kray: Kubernetes' architecture on Ray. Manage the cluster and its objects."""
    ctx.obj = {"server": server, "token": token}


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="kray")


if __name__ == "__main__":  # pragma: no cover
    main()
