#!/usr/bin/env bash
# Builds (once, cached) an aarch64 CPython 3.11 with numpy + onnxruntime that runs here under qemu-user,
# so that `edgec bench --device qemu-aarch64` can check a model loads and computes correctly on ARM.
# Timings under emulation mean nothing. Needs root, Debian's apt and PyPI. No binfmt, chroot or mounts:
# every aarch64 process is started as `qemu-aarch64 -L <sysroot> python3.11`.
#
#   EDGEC_ARMLAB_CACHE=~/.cache/edgec/armlab EDGEC_ARM_PACKAGES="onnxruntime==X numpy==Y" bash qemu_aarch64.sh
#   then: $EDGEC_ARMLAB_CACHE/bin/arm-python script.py   (ARM_PYTHONPATH is added to the guest's PYTHONPATH)
set -euo pipefail

CACHE=${EDGEC_ARMLAB_CACHE:-$HOME/.cache/edgec/armlab}
PKGS=${EDGEC_ARM_PACKAGES:-onnxruntime numpy}
SUITE=bookworm
PYV=3.11
ROOT=$CACHE/sysroot-$SUITE-arm64
SITE=$ROOT/opt/site
say() { printf '[edgec qemu] %s\n' "$*" >&2; }
mkdir -p "$CACHE/bin" "$CACHE/dl"
exec 9>"$CACHE/.lock"; flock 9     # concurrent jobs sharing the cache wait here
export DEBIAN_FRONTEND=noninteractive

mirror() {  # the host's own Debian mirror (EDGEC_DEBIAN_MIRROR overrides)
  { sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security
    awk '$1=="deb" && $0 !~ /security/ {print $2}' /etc/apt/sources.list 2>/dev/null; } | head -n 1 || true
}
MIRROR=${EDGEC_DEBIAN_MIRROR:-$(mirror)}
[ -n "$MIRROR" ] || { echo "no Debian mirror in the host's apt sources; set EDGEC_DEBIAN_MIRROR" >&2; exit 2; }
updated=0
apt_get() { [ $updated = 1 ] || { apt-get update -qq; updated=1; }; apt-get "$@"; }

# 1. a static qemu-aarch64, unpacked from Debian's qemu-user-static into the cache (never installed)
QEMU=$CACHE/qemu/qemu-aarch64
if [ ! -x "$QEMU" ]; then
  say "fetching qemu-user-static"
  d=$(mktemp -d "$CACHE/dl/q.XXXX")
  ( cd "$d" && apt_get download -qq qemu-user-static ) 2>&1 | grep -v unsandboxed || true
  dpkg-deb -x "$d"/qemu-user-static*.deb "$d/x"
  mkdir -p "$(dirname "$QEMU")"
  cp "$d/x/usr/bin/qemu-aarch64-static" "$QEMU.tmp" && mv "$QEMU.tmp" "$QEMU"
  rm -rf "$d"
fi

# 2. an arm64 Debian sysroot with python3: debootstrap only downloads; the host's dpkg-deb unpacks
if [ ! -x "$ROOT/usr/bin/python$PYV" ]; then
  command -v debootstrap >/dev/null || apt_get install -y -qq debootstrap >/dev/null
  say "debootstrap arm64 $SUITE (about a minute)"
  rm -rf "$ROOT.tmp"
  debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 "$SUITE" "$ROOT.tmp" "$MIRROR" \
    > "$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  for deb in "$ROOT.tmp"/var/cache/apt/archives/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$ROOT.tmp" -f -
  done
  rm -f "$ROOT.tmp"/var/cache/apt/archives/*.deb
  rm -rf "$ROOT"; mv "$ROOT.tmp" "$ROOT"
fi

# 3. aarch64 wheels, installed by the host's pip (protobuf is only tagged manylinux2014, hence three tags)
if [ ! -f "$SITE/.stamp" ] || [ "$(cat "$SITE/.stamp")" != "$PKGS" ]; then
  say "aarch64 wheels: $PKGS"
  PLAT=(--platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64
        --python-version "$PYV" --implementation cp --abi cp311 --only-binary=:all:)
  # shellcheck disable=SC2086
  python3 -m pip download -q "${PLAT[@]}" -d "$CACHE/wheels" $PKGS
  rm -rf "$SITE.tmp"
  # shellcheck disable=SC2086
  python3 -m pip install -q --no-index --find-links "$CACHE/wheels" "${PLAT[@]}" --target "$SITE.tmp" $PKGS
  echo "$PKGS" > "$SITE.tmp/.stamp"
  rm -rf "$SITE"; mv "$SITE.tmp" "$SITE"
fi

# 4. qemu 7.2 passes the host's x86 /proc/cpuinfo through; ORT's cpuinfo crashes when it can also read
#    the cpu/{possible,present} files. Empty copies in the sysroot (qemu -L looks there first) avoid it.
mkdir -p "$ROOT/sys/devices/system/cpu"
: > "$ROOT/sys/devices/system/cpu/possible"; : > "$ROOT/sys/devices/system/cpu/present"

# 5. the wrapper
cat > "$CACHE/bin/arm-python" <<WRAP
#!/bin/sh
exec env -u PYTHONHOME -u LD_LIBRARY_PATH -u LD_PRELOAD -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
  QEMU_LD_PREFIX="$ROOT" PYTHONNOUSERSITE=1 PYTHONPATH="$SITE\${ARM_PYTHONPATH:+:\$ARM_PYTHONPATH}" \\
  "$QEMU" "$ROOT/usr/bin/python$PYV" "\$@"
WRAP
chmod +x "$CACHE/bin/arm-python"
"$CACHE/bin/arm-python" -c "import platform, onnxruntime, numpy; print('edgec qemu:', platform.machine(), 'onnxruntime', onnxruntime.__version__, 'numpy', numpy.__version__)" 2> >(grep -vi cpuinfo >&2)
