#!/usr/bin/env bash
# Packs what the GPU machine's image lacks into the ignored folder .carry/ (run here, where
# scripts/setup.sh has run): the CUTLASS and FlashInfer header trees from .deps/ (FlashInfer's
# with its own CCCL), and a small sysroot with cpp-httplib (Debian builds it as a shared library),
# PCRE2 and zlib (static), the headers httplib.h pulls in (OpenSSL, Brotli) and the Brotli shared
# libraries it links against.
# scripts/gpu-check.sh unpacks it on the device. Everything is xz-compressed; total well < 30 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .deps/cutlass/include/cutlass/cutlass.h ] || { echo "pack-device: run scripts/setup.sh first" >&2; exit 1; }

out=.carry
# Device chain scripts kept in .carry/ (*.sh, CONTRIBUTING.md "GPU workflow" step 6) survive a
# repack; everything else is made anew.
keep=$(mktemp -d); cp "$out"/*.sh "$keep"/ 2>/dev/null || true
rm -rf "$out"; mkdir -p "$out"
cp "$keep"/*.sh "$out"/ 2>/dev/null || true; rm -rf "$keep"
[ -d .deps/flashinfer/cccl/libcudacxx/include ] || { echo "pack-device: .deps/flashinfer/cccl missing: run scripts/setup.sh again" >&2; exit 1; }
tar -C .deps -cJf "$out/deps-headers.tar.xz" cutlass/include flashinfer/include flashinfer/cccl

arch=x86_64-linux-gnu
lib=/usr/lib/$arch
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
root=$tmp/sysroot
mkdir -p "$root/include" "$root/lib/pkgconfig"
cp -a /usr/include/httplib.h /usr/include/pcre2.h /usr/include/zlib.h /usr/include/zconf.h "$root/include/"
cp -a /usr/include/openssl /usr/include/brotli "$root/include/"
# OpenSSL's arch-specific configuration headers live in the multiarch folder.
cp -a /usr/include/$arch/openssl/. "$root/include/openssl/"
cp -a $lib/libcpp-httplib.so* $lib/libpcre2-8.a $lib/libz.a "$root/lib/"
cp -a $lib/libbrotlicommon.so* $lib/libbrotlidec.so* $lib/libbrotlienc.so* "$root/lib/"

# .pc files: prefix becomes a placeholder that gpu-check.sh replaces with the unpack location.
# cpp-httplib's Requires.private (openssl, zlib, brotli) is dropped: its shared library already
# carries those dependencies, and the device has no .pc files for them.
cat > "$root/lib/pkgconfig/cpp-httplib.pc" <<PC
prefix=@SYSROOT@
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: cpp-httplib
Description: A C++ HTTP/HTTPS server and client library (Debian 12 build, carried)
Version: $(pkg-config --modversion cpp-httplib)
Libs: -L\${libdir} -lcpp-httplib
Cflags: $(pkg-config --cflags-only-other cpp-httplib) -I\${includedir}
PC
cat > "$root/lib/pkgconfig/libpcre2-8.pc" <<PC
prefix=@SYSROOT@
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: libpcre2-8
Description: PCRE2 8-bit (Debian 12 static library, carried)
Version: $(pkg-config --modversion libpcre2-8)
Libs: -L\${libdir} -lpcre2-8
Cflags: -I\${includedir}
PC
cat > "$root/lib/pkgconfig/zlib.pc" <<PC
prefix=@SYSROOT@
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: zlib
Description: zlib (Debian 12 static library, carried)
Version: $(pkg-config --modversion zlib)
Libs: -L\${libdir} -lz
Cflags: -I\${includedir}
PC
tar -C "$tmp" -cJf "$out/sysroot.tar.xz" sysroot
# The device has no ../shared: the eval text (engine GPU tests) and the traces (serve e2e,
# scripts/e2e-experiment.sh) travel too.
cp ../shared/data/eval/pystd_public.txt.gz ../shared/data/traces/azure_llm_2023_conv.csv \
  ../shared/data/traces/azure_llm_2023_code.csv "$out/"
# The device copy of the tree has no .git: record the commit the results belong to.
{ git rev-parse --short HEAD 2>/dev/null || echo unknown; } | tr -d '\n' > "$out/git-commit"
git diff --quiet HEAD 2>/dev/null && git ls-files --others --exclude-standard | grep -q . && echo -n "+untracked" >> "$out/git-commit"
git diff --quiet HEAD 2>/dev/null || echo -n "+dirty" >> "$out/git-commit"
du -ch "$out"/* | sed 's/^/pack-device: /'
