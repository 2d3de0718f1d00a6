"""Run the API server as a plain process: ``python -m kray.actors.apiserver --etcd URL``.

`kray up` runs it as a Ray actor; this entry point serves benchmarks and debugging, where a
separate process without Ray is what is wanted.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from kray.actors.store import ObjectStore
from kray.actors.store.etcd import EtcdKV

from .app import ApiServer
from .server import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kray.actors.apiserver")
    parser.add_argument("--etcd", required=True, help="etcd endpoint(s), comma-separated")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--token", default=os.environ.get("KRAY_TOKEN"), help="bearer token (or KRAY_TOKEN)")
    args = parser.parse_args()

    async def run() -> None:
        api = ApiServer(ObjectStore(EtcdKV(args.etcd)), token=args.token or None)
        await serve(api, args.host, args.port)

    asyncio.run(run())


if __name__ == "__main__":
    main()
