#!/usr/bin/env bash
# make demo: one real install, shown. Builds a small GPT disk image (an EFI system partition and
# an ext4 root), serves it on 127.0.0.1 behind Basic auth, and installs it onto a 2 GiB virtual disk
# with byoi-agent, from the same install/start payload the service receives.
set -euo pipefail
cd "$(dirname "$0")/.."
work=build/demo
mkdir -p "$work"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Building a demo image: GPT, EFI system partition (FAT) and ext4 root"
rm -rf "$work/root" && mkdir -p "$work/root/etc"
echo "Hi, sounds that BYOI is a success! (installed by byoi-agent on $(date -u +%FT%TZ))" > "$work/root/etc/motd"
echo "byoi-demo" > "$work/root/etc/hostname"
image="$work/demo.raw"
rm -f "$image" "$work/esp.img" "$work/root.ext4"
truncate -s 256M "$image"
sgdisk -o -n 1:1M:+32M -t 1:ef00 -c 1:esp -n 2:0:0 -t 2:8300 -c 2:root "$image" >/dev/null
mkfs.vfat -C -n ESP "$work/esp.img" $((32 * 1024)) >/dev/null
mkdir -p "$work/efi" && echo "demo" > "$work/efi/BOOTX64.EFI"
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT && mcopy -i "$work/esp.img" "$work/efi/BOOTX64.EFI" ::/EFI/BOOT/
root_start=$(sgdisk -i 2 "$image" | awk '/First sector/ {print $3}')
root_end=$(sgdisk -i 2 "$image" | awk '/Last sector/ {print $3}')
mkfs.ext4 -q -F -L root -d "$work/root" "$work/root.ext4" $(( (root_end - root_start + 1) / 2 ))k
dd if="$work/esp.img" of="$image" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$image" bs=512 seek="$root_start" conv=notrunc,sparse status=none
sum=$(sha512sum "$image" | cut -d' ' -f1)
sgdisk -p "$image" | sed -n '/^Number/,$p'

say "Serving it on 127.0.0.1 (Basic auth required)"
node dist/scripts/serve-files.js "$work" --auth demo:s3cret > "$work/server.out" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^listening //p' "$work/server.out")
echo "image at $base/demo.raw, sha512 ${sum:0:16}…"

cat > "$work/payload.json" <<JSON
{
  "details": { "customHostname": "byoi-demo" },
  "templateName": "byoi_64",
  "userMetadata": [
    { "key": "imageURL", "value": "$base/demo.raw" },
    { "key": "imageType", "value": "raw" },
    { "key": "httpHeaders0Key", "value": "Authorization" },
    { "key": "httpHeaders0Value", "value": "Basic $(printf demo:s3cret | base64)" },
    { "key": "imageCheckSum", "value": "$sum" },
    { "key": "imageCheckSumType", "value": "sha512" },
    { "key": "configDriveUserData", "value": "#!/bin/bash\\necho \\"Hi, sounds that BYOI is a success!\\" > /etc/motd\\n" },
    { "key": "configDriveMetadata", "value": "{\\"role\\": \\"demo\\"}" }
  ]
}
JSON

say "Target: a 2 GiB virtual disk that held other data"
disk="$work/disk.img"
rm -f "$disk" && truncate -s 2G "$disk"
head -c 4M /dev/urandom | dd of="$disk" conv=notrunc status=none
echo "$disk: $(stat -c %s "$disk") bytes"

say "byoi-agent install --payload $work/payload.json --disk $disk"
set +e
node dist/agent/main.js install --payload "$work/payload.json" --disk "$disk" --log-level info 2> >(grep -v '^{' >&2)
status=$?
set -e
echo "exit status: $status"
[ "$status" -eq 0 ] || exit "$status"

say "Checking the disk with independent tools"
size=$(stat -c %s "$image")
root_bytes=$(( (root_end - root_start + 1) * 512 ))
cmp -n "$root_bytes" -i "$((root_start * 512)):$((root_start * 512))" "$image" "$disk" && echo "cmp: the root partition's $root_bytes bytes equal the image's"
sgdisk -v "$disk" | grep -E "^No problems found|^Problem|^Warning" | sed "s/^/sgdisk -v: /"
sgdisk -p "$disk" 2>&1 | sed -n '/^Disk build/p;/^Number/,$p'
blkid -p -O $((root_start * 512)) "$disk" | sed 's/^/blkid root: /'
cd_start=$(sgdisk -i 3 "$disk" | awk '/First sector/ {print $3}')
blkid -p -O $((cd_start * 512)) "$disk" | sed 's/^/blkid config-2: /'
dd if="$disk" of="$work/configdrive.iso" bs=512 skip="$cd_start" count=$((64 * 2048)) status=none
rm -rf "$work/configdrive" && xorriso -osirrox on -indev "$work/configdrive.iso" -extract / "$work/configdrive" 2>/dev/null
echo "ConfigDrive files (Rock Ridge names):"; (cd "$work/configdrive" && find . -type f | sort | sed 's/^/  /')
echo "cloud-init's own reader (DataSourceConfigDrive.read_config_drive) says:"
/usr/bin/python3 - "$work/configdrive" <<'PY'
import json, sys
from cloudinit.sources.DataSourceConfigDrive import read_config_drive
r = read_config_drive(sys.argv[1])
md = r["metadata"]
print("  instance-id:", md.get("instance-id"), "| hostname:", md.get("hostname"), "| meta:", json.dumps(md.get("meta")))
ud = r["userdata"]
print("  user data:", (ud.decode() if isinstance(ud, bytes) else ud).strip().replace("\n", " / "))
PY
dd if="$disk" of="$work/root-check.ext4" bs=512 skip="$root_start" count=$((root_end - root_start + 1)) status=none
echo "motd on the installed root: $(debugfs -R 'cat /etc/motd' "$work/root-check.ext4" 2>/dev/null)"
echo
echo "(Booting the installed disk under QEMU, where cloud-init runs the user data, comes with the rescue image and harness, issue 7.)"
