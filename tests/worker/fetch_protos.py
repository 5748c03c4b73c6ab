"""Put the Functions host<->worker protobuf modules where tests/worker/host.py finds them.

The generated ``FunctionRpc_pb2`` (with ``identity/ClaimsIdentityRpc_pb2`` and ``shared/NullableTypes_pb2``, which
it imports relatively) is shipped in the ``azure-functions-runtime-v1`` wheel pinned in ``protos.txt``, under
``tests/protos``. This downloads that wheel with pip (no install: it also carries a top-level ``tests`` package)
into ``.tools/worker/wheels`` and unpacks only those modules into ``.tools/worker/protos/functions_rpc``, a package
of its own whose ``__init__`` is empty (the wheel's imports grpc, which the in-process host does not need).

Run by scripts/test.sh with the worker venv's Python; does nothing when the pin has not changed.
Usage: python tests/worker/fetch_protos.py [--tools-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PIN_FILE = HERE / "protos.txt"
PACKAGE = "functions_rpc"
MODULES = {  # path in the wheel -> path in the package
    "tests/protos/FunctionRpc_pb2.py": "FunctionRpc_pb2.py",
    "tests/protos/identity/ClaimsIdentityRpc_pb2.py": "identity/ClaimsIdentityRpc_pb2.py",
    "tests/protos/shared/NullableTypes_pb2.py": "shared/NullableTypes_pb2.py",
}
PIP_TIMEOUT_SECONDS = 300


def pin() -> str:
    lines = [line.strip() for line in PIN_FILE.read_text().splitlines()]
    pins = [line for line in lines if line and not line.startswith("#")]
    if len(pins) != 1 or "==" not in pins[0]:
        raise SystemExit(f"{PIN_FILE.relative_to(ROOT)} must hold exactly one name==version line")
    return pins[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools-dir", type=Path, default=ROOT / ".tools" / "worker")
    args = parser.parse_args()
    requirement = pin()
    name, version = requirement.split("==")
    wheels = args.tools_dir / "wheels"
    target = args.tools_dir / "protos"
    stamp = target / ".pin"
    unpacked = all((target / PACKAGE / module).is_file() for module in MODULES.values())
    if unpacked and stamp.is_file() and stamp.read_text() == requirement:
        return 0

    wheels.mkdir(parents=True, exist_ok=True)
    wheel_glob = f"{name.replace('-', '_')}-{version}-*.whl"
    if not list(wheels.glob(wheel_glob)):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", "--dest", str(wheels), requirement],
            check=True, timeout=PIP_TIMEOUT_SECONDS,
        )
    wheel = sorted(wheels.glob(wheel_glob))[-1]

    staging = target.with_name("protos.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    package = staging / PACKAGE
    with zipfile.ZipFile(wheel) as archive:
        for source, destination in MODULES.items():
            path = package / destination
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(source))
    for folder in {package, *(p.parent for p in package.rglob("*_pb2.py"))}:
        (folder / "__init__.py").write_text("")
    (staging / "SOURCE").write_text(f"{wheel.name} sha256={hashlib.sha256(wheel.read_bytes()).hexdigest()}\n")
    (staging / ".pin").write_text(requirement)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    print(f"Functions worker protos from {wheel.name} in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
