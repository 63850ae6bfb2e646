"""The Mercato Python client, with its gRPC stubs generated from
proto/mercato/v1 at build time (Debian's protoc and grpc_python_plugin).

    pip install ./clients/python        # in a venv, or with Debian's pip:
    pip install --break-system-packages --no-build-isolation ./clients/python
"""

import glob
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


class BuildPyWithStubs(build_py):
    """build_py, then protoc over the API into the build tree."""

    def run(self):
        super().run()
        plugin = shutil.which("grpc_python_plugin")
        if plugin is None or shutil.which("protoc") is None:
            raise RuntimeError("protoc and grpc_python_plugin are needed "
                               "(Debian: protobuf-compiler, protobuf-compiler-grpc)")
        protos = sorted(glob.glob(os.path.join(PROTO_DIR, "mercato", "v1", "*.proto")))
        if not protos:
            raise RuntimeError(f"no .proto files under {PROTO_DIR}")
        subprocess.check_call(["protoc", f"--proto_path={PROTO_DIR}",
                               f"--python_out={self.build_lib}", f"--grpc_out={self.build_lib}",
                               f"--plugin=protoc-gen-grpc={plugin}", *protos])
        for package in ("mercato", os.path.join("mercato", "v1")):
            open(os.path.join(self.build_lib, package, "__init__.py"), "a").close()


setup(
    name="mercato-client",
    version="1.0.0",
    description="Python client for the Mercato recommendation and scoring server",
    py_modules=["mercato_client"],
    install_requires=[],  # grpcio and protobuf: Debian's python3-grpcio, or from an index
    cmdclass={"build_py": BuildPyWithStubs},
    python_requires=">=3.9",
)
