"""Copy train.py into trainingjob.yaml's ConfigMap (run after editing train.py).

    python examples/train/embed.py

The manifest carries the program so `kray apply -f` needs nothing else; a unit test fails when
the two drift apart.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
START = "  train.py: |\n"
END = "---\n"


def embed(manifest: str, program: str) -> str:
    head, sep, rest = manifest.partition(START)
    if not sep:
        raise SystemExit(f"no {START.strip()!r} key in the manifest")
    _, end, tail = rest.partition(END)
    body = "".join(("    " + line) if line.strip() else "\n" for line in program.splitlines(keepends=True))
    return head + START + body + end + tail


if __name__ == "__main__":
    path = HERE / "trainingjob.yaml"
    path.write_text(embed(path.read_text(), (HERE / "train.py").read_text()))
    print(f"updated {path}")
