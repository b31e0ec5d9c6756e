"""Generate the Python gRPC code (and mypy stubs) from the .proto files.

Runs as a hatchling build hook, so `pip install -e .` (or building a wheel)
leaves `hashmatch/v1/*_pb2*.py{,i}` next to the sources; it can also be run
directly: `python proto/generate.py`.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent


def _plugin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.exists():
        return str(candidate)
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    raise RuntimeError(f"protoc plugin {name!r} not found; is mypy-protobuf installed?")


def generate(out_dir: Path = REPO_ROOT) -> list[Path]:
    from grpc_tools import protoc  # imported late: only the build environment has it

    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(p.name for p in protos))
    return protos


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # running outside a build
    pass
else:

    class ProtoBuildHook(BuildHookInterface):  # type: ignore[misc]
        PLUGIN_NAME = "custom"

        def initialize(self, version: str, build_data: dict[str, Any]) -> None:
            generate(Path(self.root))


if __name__ == "__main__":
    for proto in generate():
        print(f"generated code for {proto.relative_to(REPO_ROOT)}")
