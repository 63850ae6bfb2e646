#!/usr/bin/env bash
# Configures and builds Mercato in ./build (Release, ccache when present).
# Extra arguments go to cmake, e.g. -DMERCATO_ARCH= for a generic build.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$(nproc)"
