#!/usr/bin/env bash
# make demo: one real install, shown. `make demo` has already done the set-up (Debian and npm
# packages, the build, the rescue image in build/rescue/, the test OS image in build/test-os/);
# this boots the rescue image in a QEMU VM, installs the test OS image through the agent's API
# with live progress, checks the disk from the host, and boots the installed system, which greets
# with the motd its user data wrote. Everything runs under TCG (no KVM needed): a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
for f in build/rescue/vmlinuz build/rescue/initramfs.img build/test-os/test-os.raw dist/scripts/demo-vm.js; do
  [ -e "$f" ] || { echo "missing $f: run make demo (it does the set-up)" >&2; exit 2; }
done
echo "rescue image: vmlinuz $(du -h build/rescue/vmlinuz | cut -f1), initramfs $(du -h build/rescue/initramfs.img | cut -f1);" \
  "test OS image: $(du -h --apparent-size build/test-os/test-os.raw | cut -f1) raw (Debian 12, kernel $(cat build/test-os/kernel-version))"
exec node dist/scripts/demo-vm.js
