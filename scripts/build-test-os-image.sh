#!/usr/bin/env bash
# make test-os-image: the operating system the e2e harness and the demo install. Debian bookworm
# (debootstrap, minbase) with linux-image-cloud-amd64 and cloud-init reading a ConfigDrive only, on
# a GPT disk that boots both ways:
#   - UEFI: an EFI system partition (FAT) holding GRUB built by grub-mkstandalone as
#     EFI/BOOT/BOOTX64.EFI, its grub.cfg embedded (finds the root by label);
#   - BIOS: syslinux's gptmbr.bin in the protective MBR, extlinux in the ext4 root (the partition
#     carries the "legacy BIOS bootable" attribute gptmbr.bin looks for).
# Kernel console on ttyS0; the serial getty logs root in automatically once cloud-init's final stage
# is done, so the console shows /etc/motd as the user data left it.
#
# Writes into build/test-os/ (never committed):
#   test-os.raw          512-byte-sector GPT disk image (IMAGE_MIB MiB)
#   test-os-4k.raw       the same system on a 4096-byte-sector GPT (UEFI only: gptmbr.bin is 512-byte code)
#   test-os.qcow2        qcow2 of test-os.raw; test-os-zlib.qcow2 and test-os-zstd.qcow2 compressed
#   *.sha512             their checksums;  stamp: the hash of this script the files were built by
# Rebuilt only when this script changes (or with FORCE=1). Runs as root; needs no partition nodes:
# partitions are built as separate files (mkfs.vfat -C + mtools, mkfs.ext4 -d) and copied in.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/test-os
stamp_value="$(sha256sum scripts/build-test-os-image.sh | cut -c1-16)"
products=(test-os.raw test-os-4k.raw test-os.qcow2 test-os-zlib.qcow2 test-os-zstd.qcow2)
up_to_date=1
for f in stamp "${products[@]}"; do [ -f "$out/$f" ] || up_to_date=0; done
if [ "$up_to_date" = 1 ] && [ "$(cat "$out/stamp")" = "$stamp_value" ] && [ "${FORCE:-0}" != 1 ]; then
  echo "test OS image up to date in $out (stamp $stamp_value)"
  exit 0
fi

MIRROR="${BYOI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGE_MIB=1536            # the whole disk image
ESP_MIB=63                # EFI system partition, from 1 MiB to 64 MiB
ROOT_MIB=$((IMAGE_MIB - 64 - 1)) # root from 64 MiB, 1 MiB left at the end for the backup GPT
ROOT_LABEL=byoi-root
PACKAGES=linux-image-cloud-amd64,cloud-init,python3-cffi-backend,systemd-sysv,udev,dbus,ifupdown,isc-dhcp-client,iproute2,netbase
# debootstrap keeps the .debs it fetched in apt's own cache, so a rebuild downloads nothing.
CACHE_DIR=/var/cache/apt/archives

work="$out/work"
started=$(date +%s)
log() { printf '[test-os %4ds] %s\n' $(( $(date +%s) - started )) "$*"; }

loop=""
mnt=""
cleanup() {
  if [ -n "$mnt" ] && mountpoint -q "$mnt"; then umount "$mnt"; fi
  if [ -n "$loop" ]; then losetup -d "$loop" 2>/dev/null || true; fi
  for m in proc sys dev/pts dev; do
    if mountpoint -q "$work/root/$m" 2>/dev/null; then umount -l "$work/root/$m"; fi
  done
}
trap cleanup EXIT

cleanup
rm -rf --one-file-system "$work" && mkdir -p "$work" "$CACHE_DIR"
root="$work/root"

log "debootstrap bookworm (minbase + $PACKAGES) from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$CACHE_DIR" bookworm "$root" "$MIRROR" \
  > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log"; exit 1; }
kver=$(basename "$(ls -d "$root"/lib/modules/*)")
log "debootstrap done: kernel $kver, $(du -sm "$root" | cut -f1) MiB"

log "configuring: cloud-init (ConfigDrive), fstab, serial console autologin"
cat > "$root/etc/cloud/cloud.cfg.d/90-byoi-e2e.cfg" <<'EOF'
# byoi e2e test image: the ConfigDrive the agent writes is the only datasource.
datasource_list: [ ConfigDrive, None ]
# No locales package in this image.
locale: "false"
EOF
# No SSH server either: cloud-init's ssh module (host keys) has nothing to do.
sed -i '/^ - ssh$/d' "$root/etc/cloud/cloud.cfg"
cat > "$root/etc/fstab" <<EOF
LABEL=$ROOT_LABEL / ext4 errors=remount-ro 0 1
EOF
echo byoi-test-os > "$root/etc/hostname"
cat > "$root/etc/network/interfaces" <<'EOF'
# cloud-init writes the interfaces it configures into interfaces.d
auto lo
iface lo inet loopback
source /etc/network/interfaces.d/*
EOF
mkdir -p "$root/etc/network/interfaces.d"
# Root logs in on ttyS0 by itself once cloud-init is done (the user data has run), so that the
# motd it wrote shows. The wait is in the getty's own process, not in unit ordering: cloud-final
# is ordered after multi-user.target, which the getty is part of (After= would be a cycle).
cat > "$root/usr/local/sbin/byoi-console-login" <<'EOF'
#!/bin/sh
# serial getty of the byoi test OS: root logs in automatically once cloud-init has finished.
cloud-init status --wait >/dev/null 2>&1
exec /sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 "$1" "$2"
EOF
chmod 755 "$root/usr/local/sbin/byoi-console-login"
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
cat > "$root/etc/systemd/system/serial-getty@ttyS0.service.d/byoi-autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/usr/local/sbin/byoi-console-login %I $TERM
EOF
chroot "$root" passwd -d root >/dev/null
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old

log "boot loaders: extlinux.conf (BIOS), grub.cfg (UEFI)"
cmdline="root=LABEL=$ROOT_LABEL ro console=ttyS0,115200 net.ifnames=0"
mkdir -p "$root/boot/extlinux"
cat > "$root/boot/extlinux/extlinux.conf" <<EOF
SERIAL 0 115200
DEFAULT debian
PROMPT 0
TIMEOUT 0
LABEL debian
  LINUX /boot/vmlinuz-$kver
  INITRD /boot/initrd.img-$kver
  APPEND $cmdline
EOF
cat > "$work/grub.cfg" <<EOF
set timeout=0
set default=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
search --no-floppy --label --set=root $ROOT_LABEL
menuentry "Debian (byoi test OS)" {
  linux /boot/vmlinuz-$kver $cmdline
  initrd /boot/initrd.img-$kver
}
EOF
grub-mkstandalone -O x86_64-efi -o "$work/BOOTX64.EFI" \
  --modules="part_gpt part_msdos ext2 fat search search_label linux normal serial terminal" \
  --locales= --fonts= --themes= "boot/grub/grub.cfg=$work/grub.cfg"

log "root filesystem: ext4 ($ROOT_MIB MiB, label $ROOT_LABEL) from the tree"
# No 64bit feature: syslinux's ext4 reader is safest without it (the file system stays far below 16 TiB).
mkfs.ext4 -q -F -L "$ROOT_LABEL" -O ^64bit -d "$root" "$work/root.ext4" "${ROOT_MIB}M"
mnt="$work/mnt" && mkdir -p "$mnt"
loop=$(losetup -f --show "$work/root.ext4")
mount "$loop" "$mnt"
extlinux --install "$mnt/boot/extlinux" >/dev/null 2>&1
umount "$mnt"
losetup -d "$loop" && loop=""

# make_esp FILE SECTOR_BYTES: the EFI system partition, FAT, with GRUB as the removable-media loader.
make_esp() {
  rm -f "$1"
  mkfs.vfat -C -n ESP -S "$2" "$1" $((ESP_MIB * 1024)) >/dev/null
  mmd -i "$1" ::/EFI ::/EFI/BOOT
  mcopy -i "$1" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
}

# assemble DISK SECTOR_BYTES ESP: GPT (ESP at 1 MiB, root at 64 MiB), then both partitions copied in.
assemble() {
  local disk=$1 sector=$2 esp=$3 target
  rm -f "$disk" && truncate -s "${IMAGE_MIB}M" "$disk"
  target=$disk
  if [ "$sector" != 512 ]; then loop=$(losetup -f --show -b "$sector" "$disk") && target=$loop; fi
  sgdisk -o \
    -n 1:1M:+"${ESP_MIB}M" -t 1:ef00 -c 1:ESP \
    -n 2:64M:+"${ROOT_MIB}M" -t 2:8300 -c 2:root -A 2:set:2 \
    "$target" >/dev/null
  if [ -n "$loop" ]; then losetup -d "$loop" && loop=""; fi
  dd if="$esp" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$work/root.ext4" of="$disk" bs=1M seek=64 conv=notrunc,sparse status=none
}

log "disk images: 512-byte sectors (BIOS + UEFI) and 4096-byte sectors (UEFI)"
make_esp "$work/esp-512.img" 512
assemble "$work/test-os.raw" 512 "$work/esp-512.img"
# gptmbr.bin: the first 440 bytes of the protective MBR (the partition records stay sgdisk's).
dd if=/usr/lib/syslinux/mbr/gptmbr.bin of="$work/test-os.raw" bs=440 count=1 conv=notrunc status=none
make_esp "$work/esp-4k.img" 4096
assemble "$work/test-os-4k.raw" 4096 "$work/esp-4k.img"
sgdisk -v "$work/test-os.raw" | grep -q 'No problems found'

log "qcow2: plain, zlib-compressed, zstd-compressed"
qemu-img convert -O qcow2 "$work/test-os.raw" "$work/test-os.qcow2"
qemu-img convert -c -O qcow2 "$work/test-os.raw" "$work/test-os-zlib.qcow2"
qemu-img convert -c -O qcow2 -o compression_type=zstd "$work/test-os.raw" "$work/test-os-zstd.qcow2"

for f in "${products[@]}"; do
  mv "$work/$f" "$out/$f"
  sha512sum "$out/$f" | cut -d' ' -f1 > "$out/$f.sha512"
done
echo "$kver" > "$out/kernel-version"
echo "$stamp_value" > "$out/stamp"
rm -rf --one-file-system "$work"
log "done"
ls -ls "$out" | sed 1d
