#!/usr/bin/env bash
# Regenerate the etcd v3 gRPC stubs in actors/store/etcdpb/ from the trimmed .proto copies.
#
# Needs grpcio-tools (a test extra). Post-processing:
#  * imports become package-relative, so the stubs load as kray.actors.store.etcdpb.*;
#  * the generator's version guards are relaxed to the floors pyproject pins (protobuf>=5.28,
#    grpcio>=1.66): the code uses nothing newer, and a fresh grpcio-tools otherwise stamps
#    its own version as the minimum runtime.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/actors/store/etcdpb"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3

cd "$out"
"$python" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. kv.proto rpc.proto
rm -f kv_pb2_grpc.py  # kv.proto has no services
"$python" - <<'PY'
import re
from pathlib import Path

for name in ("kv_pb2.py", "rpc_pb2.py", "rpc_pb2_grpc.py", "rpc_pb2.pyi"):
    path = Path(name)
    text = path.read_text()
    text = re.sub(r"^import (kv_pb2|rpc_pb2) as ", r"from . import \1 as ", text, flags=re.M)
    # Drop the "runtime must be >= generator" check (a call spanning several lines).
    text = re.sub(r"^_runtime_version\.ValidateProtobufRuntimeVersion\(\n(?:    .*\n)*?\)\n", "", text, flags=re.M)
    text = re.sub(r"^GRPC_GENERATED_VERSION = '[^']*'", "GRPC_GENERATED_VERSION = '1.66.0'", text, flags=re.M)
    path.write_text(text)
PY
echo "generated in $out: $(cd "$out" && ls *_pb2*.py* | tr '\n' ' ')"

# --- CRI v1 (trimmed) stubs in runtime/cri/ --------------------------------------------------
# Compiled from runtime/ as "cri/api.proto", so the descriptor registered in protobuf's global
# pool carries a directory and cannot clash with some other library's "api.proto".
cri_root="$root/runtime"
cd "$cri_root"
"$python" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. cri/api.proto cri/portforward.proto
"$python" - <<'PY'
import re
from pathlib import Path

names = [f"cri/{base}{ext}" for base in ("api_pb2", "portforward_pb2") for ext in (".py", "_grpc.py", ".pyi")]
for name in names:
    path = Path(name)
    text = path.read_text()
    text = re.sub(r"^from cri import (api_pb2|portforward_pb2) as ", r"from . import \1 as ", text, flags=re.M)
    text = re.sub(r"^_runtime_version\.ValidateProtobufRuntimeVersion\(\n(?:    .*\n)*?\)\n", "", text, flags=re.M)
    text = re.sub(r"^GRPC_GENERATED_VERSION = '[^']*'", "GRPC_GENERATED_VERSION = '1.66.0'", text, flags=re.M)
    path.write_text(text)
PY
echo "generated in $cri_root/cri: $(cd "$cri_root/cri" && ls *_pb2*.py* | tr '\n' ' ')"

# --- device plugin API (deviceplugins/api/), Kubernetes' v1beta1 with the same post-processing, ---
# --- and kray's DeviceUsage extension (deviceusage.proto), served next to it by the GPU plugin ---
dp="$root/deviceplugins/api"
cd "$dp"
"$python" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. deviceplugin.proto deviceusage.proto
"$python" - <<'PY'
import re
from pathlib import Path

names = [f"{base}{ext}" for base in ("deviceplugin_pb2", "deviceusage_pb2") for ext in (".py", "_grpc.py", ".pyi")]
for name in names:
    path = Path(name)
    text = path.read_text()
    text = re.sub(r"^import (deviceplugin_pb2|deviceusage_pb2) as ", r"from . import \1 as ", text, flags=re.M)
    text = re.sub(r"^_runtime_version\.ValidateProtobufRuntimeVersion\(\n(?:    .*\n)*?\)\n", "", text, flags=re.M)
    text = re.sub(r"^GRPC_GENERATED_VERSION = '[^']*'", "GRPC_GENERATED_VERSION = '1.66.0'", text, flags=re.M)
    path.write_text(text)
PY
echo "generated in $dp: $(cd "$dp" && ls *_pb2*.py* | tr '\n' ' ')"
