#!/usr/bin/env bash
# Installs the Debian 12 packages Mercato needs to build, run and test.
# Idempotent: installs only what is missing. Runs apt-get as root, or through
# sudo when not root.
set -euo pipefail

PACKAGES=(
  build-essential cmake ccache pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libeigen3-dev librocksdb-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libhnswlib-dev zlib1g-dev
  python3 python3-grpcio python3-numpy python3-pip python3-setuptools python3-wheel
  prometheus tzdata openssl libssl-dev
  redis-server libhiredis-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
