/**
 * qcow2 images (QEMU docs/interop/qcow2.rst): checked whole when opened, then written to a disk as
 * `qemu-img convert -O raw` would write them, the first MiB kept back for the caller.
 */
export { isQcow2 } from './header.js'
export { openQcow2, type Qcow2Image } from './open-qcow2.js'
export { writeQcow2, type Qcow2WriteOptions, type Qcow2WriteTarget } from './write-qcow2.js'
export { readQcow2Guest } from './read-guest.js'
