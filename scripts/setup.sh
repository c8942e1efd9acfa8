#!/usr/bin/env bash
# One-time setup on a fresh Debian 12 machine: system packages, then header-only packages from
# pinned Python-registry wheels unpacked into .deps/. Safe to run again (it skips what is there).
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned header packages (see README "Dependencies" for why these versions).
CUTLASS_WHEEL_VERSION=4.2.0.0        # nvidia-cutlass: CUTLASS 4.2.0 headers, compile with CUDA 13.0
FLASHINFER_WHEEL_VERSION=0.7.2.post1 # flashinfer-python: header-only paged attention (+ CUTLASS 4.5)
NCCL_WHEEL_VERSION=2.28.9            # nvidia-nccl-cu13: NCCL for tensor parallelism (cuda builds only)

APT_PACKAGES=(build-essential cmake ninja-build pkg-config git python3 python3-pip python3-venv unzip
  clang libclang-rt-14-dev
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libcpp-httplib-dev libpcre2-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev curl ccache)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Header packages: pip download --no-deps, then unpack only the include trees.
mkdir -p .deps/wheels
fetch_wheel() {  # name version -> path of the wheel
  local name=$1 version=$2 norm
  norm=$(echo "$name" | tr '-' '_')
  local whl
  whl=$(ls .deps/wheels/${norm}-${version}-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: -d .deps/wheels "${name}==${version}" >&2
    whl=$(ls .deps/wheels/${norm}-${version}-*.whl | head -n1)
  fi
  echo "$whl"
}
unpack() {  # wheel, path inside wheel, destination
  local whl=$1 inner=$2 dest=$3 tmp
  tmp=$(mktemp -d)
  python3 - "$whl" "$inner" "$tmp" <<'PY'
import sys, zipfile
whl, inner, out = sys.argv[1], sys.argv[2].rstrip('/') + '/', sys.argv[3]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith(inner)]
    if not names:
        sys.exit(f"setup: {whl} has no {inner}")
    z.extractall(out, names)
PY
  rm -rf "$dest"; mkdir -p "$(dirname "$dest")"; mv "$tmp/$inner" "$dest"; rm -rf "$tmp"
}

# "-cccl": the stamp name changed when the CCCL tree was added, so older .deps/ re-unpack.
stamp=".deps/.stamp-cutlass-${CUTLASS_WHEEL_VERSION}-flashinfer-${FLASHINFER_WHEEL_VERSION}-cccl"
if [ ! -f "$stamp" ]; then
  echo "setup: fetching nvidia-cutlass==${CUTLASS_WHEEL_VERSION} and flashinfer-python==${FLASHINFER_WHEEL_VERSION} (headers only)"
  w=$(fetch_wheel nvidia-cutlass "$CUTLASS_WHEEL_VERSION")
  unpack "$w" cutlass_library/source/include .deps/cutlass/include
  w=$(fetch_wheel flashinfer-python "$FLASHINFER_WHEEL_VERSION")
  unpack "$w" flashinfer/data/include .deps/flashinfer/include
  # FlashInfer's headers need a newer CCCL (cuda::fast_mod_div) than CUDA 13.0 ships: the wheel's
  # own libcudacxx/CUB/Thrust go first on the include path of the FlashInfer translation unit.
  for sub in libcudacxx/include cub/cub thrust/thrust; do
    unpack "$w" "flashinfer/data/cccl/$sub" ".deps/flashinfer/cccl/$sub"
  done
  rm -f .deps/.stamp-cutlass-*; touch "$stamp"
fi
# NCCL (headers + libnccl.so.2, ~200 MB): only where the cuda preset can be built, so the CPU-only
# CI never downloads it. NESTEDFP_NCCL=1 forces it, NESTEDFP_NCCL=0 skips it.
if [ "${NESTEDFP_NCCL:-}" = 1 ] || { [ "${NESTEDFP_NCCL:-}" != 0 ] && { command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; }; }; then
  nstamp=".deps/.stamp-nccl-${NCCL_WHEEL_VERSION}"
  if [ ! -f "$nstamp" ]; then
    echo "setup: fetching nvidia-nccl-cu13==${NCCL_WHEEL_VERSION} (NCCL for tensor parallelism)"
    w=$(fetch_wheel nvidia-nccl-cu13 "$NCCL_WHEEL_VERSION")
    unpack "$w" nvidia/nccl .deps/nccl
    rm -f .deps/.stamp-nccl-*; touch "$nstamp"
  fi
fi
# Python packages the end-to-end tests use (pinned): the official OpenAI client.
OPENAI_VERSION=3.54.0
if [ ! -x .deps/venv/bin/python3 ] || ! .deps/venv/bin/python3 -c "import openai, sys; sys.exit(openai.__version__ != '${OPENAI_VERSION}')" 2>/dev/null; then
  echo "setup: creating .deps/venv with openai==${OPENAI_VERSION}"
  python3 -m venv .deps/venv
  .deps/venv/bin/python3 -m pip install -q --disable-pip-version-check "openai==${OPENAI_VERSION}"
fi
echo "setup: done (CUTLASS $(grep -m1 'define CUTLASS_MINOR' .deps/cutlass/include/cutlass/version.h | awk '{print "4."$3}'), FlashInfer ${FLASHINFER_WHEEL_VERSION})"
