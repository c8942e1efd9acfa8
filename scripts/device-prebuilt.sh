#!/usr/bin/env bash
# Runs a command on the GPU machine with binaries built here, when too little device time is left
# for a device build (a cold start plus the default-set build is ~4.5 minutes). Here:
#
#   cmake -S . -B build/prebuilt -G Ninja -DCMAKE_BUILD_TYPE=Release -DNESTEDFP_CUDA=ON \
#     -DCMAKE_CUDA_COMPILER=nvcc -DCMAKE_CUDA_ARCHITECTURES=OFF -DNESTEDFP_CUDA_KERNEL_SET=default
#   cmake --build build/prebuilt --target nestedfp test_gpu    # ~10 min on 2 cores
#   mkdir -p build/prebuilt/lib && cp -L /lib/x86_64-linux-gnu/libspdlog.so.1.10 build/prebuilt/lib/
#   bash scripts/pack-device.sh
#
# (the device image has no shared spdlog; it has fmt 9, which spdlog needs), then a device command with carry [".carry",
# "build/prebuilt/nestedfp", "build/prebuilt/test_gpu", "build/prebuilt/lib"]:
#
#   bash scripts/device-prebuilt.sh build/prebuilt/test_gpu --gtest_filter='NestedFp16Gemm.*'
#
# It unpacks the carried sysroot (cpp-httplib and the Brotli libraries the binaries link against),
# puts it and build/prebuilt/lib on LD_LIBRARY_PATH, names the commit for results
# (.carry/git-commit) and runs the command. Used in session 24 with 243 s of device time left.
set -u
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,18p' "$0"; exit 2; }
[ -f .carry/sysroot.tar.xz ] || { echo "device-prebuilt: no .carry/sysroot.tar.xz: run scripts/pack-device.sh here and carry .carry" >&2; exit 2; }
# A sysroot unpacked completely before (marked .ok) on this warm machine is reused.
ok=$(ls -td /tmp/nfp-sysroot.*/.ok 2>/dev/null | head -1)
if [ -n "$ok" ]; then
  sr=$(dirname "$ok")/sysroot/lib
else
  parent=$(mktemp -d /tmp/nfp-sysroot.XXXX)
  if ! tar -C "$parent" -xJf .carry/sysroot.tar.xz; then
    rm -rf "$parent"
    echo "device-prebuilt: cannot unpack .carry/sysroot.tar.xz" >&2
    exit 1
  fi
  touch "$parent/.ok"
  sr=$parent/sysroot/lib
fi
export LD_LIBRARY_PATH=$PWD/build/prebuilt/lib:$sr${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[ -f .carry/git-commit ] && export NESTEDFP_GIT_COMMIT=$(cat .carry/git-commit)
"$@"
