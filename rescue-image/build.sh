#!/usr/bin/env bash
# make rescue-image: the rescue RAM environment the agent runs in, from Debian packages and this
# machine's node. Writes build/rescue/vmlinuz and build/rescue/initramfs.img (one zstd cpio):
#   /init                     rescue-image/init (PID 1, busybox sh)
#   /bin/busybox + applets    busybox-static
#   /lib/modules/VER          the modules in rescue-image/modules.list and their dependencies,
#                             from Debian's linux-image-amd64 (the same package as vmlinuz);
#                             /etc/modules-always, those of them PID 1 loads at every boot
#   /usr/bin/node + its libs  the host's node (Node >= 20.18 is needed: Debian bookworm's nodejs
#                             is 18), stripped of debug symbols, with the shared libraries ldd lists
#   /agent/byoi-agent.mjs     the agent bundled by esbuild, decompress-worker.mjs and
#                             compress-worker.mjs beside it (the qcow2 pools' worker threads),
#                             binding-HASH.node (zstd-napi's native addon, compiled by npm ci),
#                             schemas/ (the payload schemas)
# Needs: apt-get (the kernel .deb is fetched with `apt-get download`, never installed), dpkg-deb,
# kmod (depmod, modprobe --show-depends), busybox-static, cpio, zstd, binutils (strip), npm deps.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/rescue
cache="$out/cache"
stage="$out/initramfs"
KERNEL_PACKAGE="${BYOI_RESCUE_KERNEL:-linux-image-amd64}"
started=$(date +%s%N)
log() { printf '[rescue %5.1fs] %s\n' "$(( ($(date +%s%N) - started) / 1000000 ))e-3" "$*"; }
mkdir -p "$cache"

# The kernel: the metapackage names the versioned package; fetch it once, keep it in the cache.
kpkg=$(apt-cache depends "$KERNEL_PACKAGE" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || { echo "no linux-image package behind $KERNEL_PACKAGE (apt-get update?)" >&2; exit 1; }
kver=${kpkg#linux-image-}
deb=$(ls "$cache/${kpkg}"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  log "apt-get download $kpkg"
  (cd "$cache" && apt-get download -q "$kpkg" 2>&1 | grep -v 'unsandboxed' || true)
  deb=$(ls "$cache/${kpkg}"_*.deb | head -1)
fi
kroot="$PWD/$cache/$kpkg"
if [ ! -f "$kroot/lib/modules/$kver/modules.dep" ]; then
  log "extracting $(basename "$deb")"
  rm -rf "$kroot" && dpkg-deb -x "$deb" "$kroot"
  depmod -b "$kroot" "$kver"
fi

log "staging the initramfs"
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,agent,lib/x86_64-linux-gnu,lib64}
mknod -m 600 "$stage/dev/console" c 5 1 # the kernel opens it for PID 1 before devtmpfs is mounted
mknod -m 666 "$stage/dev/null" c 1 3
install -m 755 rescue-image/init "$stage/init"
install -m 755 rescue-image/udhcpc.script "$stage/etc/udhcpc.script"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$stage/etc/passwd"
printf 'root:x:0:\n' > "$stage/etc/group"
printf '127.0.0.1 localhost byoi-rescue\n::1 localhost\n' > "$stage/etc/hosts"
printf 'hosts: files dns\n' > "$stage/etc/nsswitch.conf"
: > "$stage/etc/resolv.conf"

# busybox: the binary once, every applet as a symbolic link to it.
install -m 755 /bin/busybox "$stage/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  [ -e "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
done

# Kernel modules with their dependencies, then depmod for the subset (modprobe reads modules.dep).
mods=$(grep -v '^\s*\(#\|$\)' rescue-image/modules.list | awk '{print $1}')
# Those marked `always` (no device alias brings them in): PID 1 loads them at every boot.
awk '$1 !~ /^#/ && $2 == "always" {print $1}' rescue-image/modules.list > "$stage/etc/modules-always"
mdir="lib/modules/$kver"
mkdir -p "$stage/$mdir"
for m in $mods; do
  modprobe -d "$kroot" -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" {print $2}' | sort -u | while read -r ko; do
  rel=${ko#"$kroot/"}
  mkdir -p "$stage/$(dirname "$rel")"
  cp "$ko" "$stage/$rel"
done
cp "$kroot/$mdir"/modules.{order,builtin,builtin.modinfo} "$stage/$mdir/"
depmod -b "$stage" "$kver"
install -m 644 "$kroot/boot/vmlinuz-$kver" "$out/vmlinuz"

# node and the shared libraries it links (their real files, under the names the loader asks for).
node_bin=$(command -v node)
strip -o "$stage/usr/bin/node" "$node_bin"
ldd "$node_bin" | awk '/=> \// {print $3} /^[ \t]*\/lib/ {print $1}' | while read -r lib; do
  mkdir -p "$stage/$(dirname "$lib")"
  cp -L "$lib" "$stage/$lib"
done

log "bundling the agent (esbuild)"
# Three entry points: the agent, and the qcow2 pools' workers (decompression for installs,
# compression for captures), which each pool starts from ./NAME-worker<extension of the calling
# file>, i.e. decompress-worker.mjs and compress-worker.mjs beside the bundle.
# The banner gives CommonJS dependencies (pino) the require() an ES module lacks. zstd-napi's addon
# (required as ./build/<config>/binding.node) is copied beside the bundle, which requires it by its
# new name through that require (relative to the bundle); xz-decompress's WebAssembly is inlined.
npx esbuild agent/main.ts agent/image/qcow2/decompress-worker.ts agent/image/qcow2/compress-worker.ts \
  --bundle --platform=node --target=node20 --format=esm --out-extension:.js=.mjs --loader:.node=copy \
  --outdir="$stage/agent" --entry-names='[name]' --legal-comments=none --log-level=warning \
  --banner:js="import { createRequire as __byoiCreateRequire } from 'node:module'; const require = __byoiCreateRequire(import.meta.url);"
mv "$stage/agent/main.mjs" "$stage/agent/byoi-agent.mjs"
mkdir -p "$stage/agent/schemas" && cp schemas/*.json "$stage/agent/schemas/"
# The image's node must run with the libraries staged, and the bundle on its own (no node_modules; the
# addon is loaded at start, so this checks it links against what is staged: libstdc++, libgcc_s, libc).
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$stage" /usr/bin/node /agent/byoi-agent.mjs --help >/dev/null

log "packing (cpio newc, zstd)"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | zstd -q -19 -T0 -f -o "$out/initramfs.img"
unpacked=$(du -sb "$stage" | cut -f1)
log "done: vmlinuz $(stat -c %s "$out/vmlinuz") B, initramfs.img $(stat -c %s "$out/initramfs.img") B ($((unpacked / 1048576)) MiB unpacked), kernel $kver"
