#!/usr/bin/env bash
# Installs cerebellum and what it needs: Mesa (headless EGL rendering) when run as root on Debian/Ubuntu, a torch
# build, then this package in editable mode. `--test` adds the test extras.
#   TORCH_SPEC     torch requirement to install first (default torch==2.13.0)
#   TORCH_INDEX    optional index URL for it, e.g. a CPU-only or a CUDA wheel index (see README, "GPU install")
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  need=""
  for pkg in libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libgbm1; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
  fi
fi

python=${PYTHON:-python3}
# torch first, so that the package's `torch>=2.4` is already satisfied and pip never swaps in another build.
if [ -n "${TORCH_INDEX:-}" ]; then
  $python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" --index-url "$TORCH_INDEX"
else
  $python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
$python -m pip install -q -e ".$extras"
# Hydra's Optuna sweeper: its newest release (1.3.0) still pins optuna<3 (whose SQLite storage fails with SQLAlchemy 2)
# but works with the current optuna installed above, so it goes in without its pinned dependencies.
$python -m pip install -q --no-deps "hydra-optuna-sweeper==1.3.0"
