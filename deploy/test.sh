#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
./deploy/build.sh
cd build
ctest --output-on-failure -j2 --timeout 600
