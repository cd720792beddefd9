# byoi-agent: the two commands are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Debian packages: referees for the tests (qemu-img, sgdisk, blkid…) and the benchmarks' baselines (curl, aria2c, GNU time);
# the rescue image (kernel fetched by apt-get download, kmod, busybox-static, cpio, zstd, binutils' strip), the test OS
# image (debootstrap, grub-efi-amd64-bin for grub-mkstandalone, syslinux-common + extlinux) and the VMs (QEMU, OVMF);
# node-gyp's toolchain (g++, make, python3: `npm ci` compiles zstd-napi's addon); zstd and xz-utils, whose CLIs make the
# tests' compressed images; the uploads' servers: nginx-light (WebDAV PUT), and S3 (scripts/s3-server.sh: Ceph's radosgw
# on a one-node cluster, ceph-mon + ceph-osd, uuid-runtime) with the S3 client that checks it (python3-boto3, scripts/s3-check.py);
# the Ironic the agent-protocol tests drive (ironic-api + ironic-conductor, run as one process by test/helpers/ironic-server.ts;
# python3-ironicclient's `baremetal` CLI to look at its nodes by hand).
DEB_PACKAGES := qemu-utils gdisk util-linux fdisk dosfstools mtools xorriso genisoimage cloud-init curl aria2 coreutils e2fsprogs time \
  qemu-system-x86 ovmf debootstrap busybox-static cpio zstd xz-utils kmod binutils grub-efi-amd64-bin syslinux-common extlinux \
  g++ make python3 nginx-light radosgw ceph-mon ceph-osd uuid-runtime python3-boto3 \
  ironic-api ironic-conductor python3-ironicclient

NPM_STAMP := node_modules/.installed

.PHONY: docs-messages validators help deps deps-deb deps-npm build test lint typecheck tap bench demo clean rescue-image test-os-image e2e e2e-ci e2e-lifecycle e2e-ironic

help:
	@echo "make demo   - install an image onto a virtual disk, shown live (installs its dependencies)"
	@echo "make test   - lint, typecheck and the tap suite (installs its dependencies)"
	@echo "make deps   - Debian and npm packages (idempotent, as root)"
	@echo "make build  - compile to dist/ (the byoi-agent binary)"
	@echo "make bench  - the benchmarks in bench/, figures into docs/benchmarks.md (BASELINE=DIR: an A/B against that built checkout)"
	@echo "make fuzz   - the hostile-input suite (FUZZ_SECONDS=420, SEED=, CASE= to replay), summary into docs/fuzz.md"
	@echo "make e2e    - the QEMU matrix: rescue image, installs onto virtual disks, installed systems booted (docs/e2e.md)"
	@echo "make e2e-ci - one full install-and-boot case (run by .ci/run)"
	@echo "make e2e-lifecycle - install, bake, capture, install the capture elsewhere with scrub, boot it (docs/e2e.md)"
	@echo "make e2e-ironic - Debian's Ironic deploys through the rescue image: a failed deploy, then active, then the disk boots (docs/e2e.md)"
	@echo "make rescue-image / make test-os-image - build/rescue/{vmlinuz,initramfs.img}, build/test-os/*"

deps: deps-deb deps-npm

deps-deb:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

deps-npm: $(NPM_STAMP)

# After the Debian packages (order-only): npm ci compiles zstd-napi with g++ (package.json's allowScripts lets it run).
$(NPM_STAMP): package.json package-lock.json | deps-deb
	npm ci --no-audit --no-fund
	@touch $@

build: deps-npm
	npx tsc -p tsconfig.json

lint: deps-npm
	npx eslint .

typecheck: deps-npm
	npx tsc -p tsconfig.json --noEmit

tap: deps
	npx tap

test: deps lint typecheck tap

bench: deps build
	node dist/bench/run-all.js $(if $(BASELINE),--baseline $(BASELINE))

demo: deps build rescue-image test-os-image
	bash scripts/demo.sh

# The rescue RAM image (docs/rescue-image.md): rebuilt when the agent, its image files or the host's node change.
RESCUE_INPUTS := $(shell find agent rescue-image schemas -type f 2>/dev/null) package-lock.json $(realpath $(shell command -v node))
build/rescue/initramfs.img: $(RESCUE_INPUTS) | deps
	bash rescue-image/build.sh

rescue-image: build/rescue/initramfs.img

# The test OS image the harness installs (cached in build/test-os/, rebuilt when its script changes).
test-os-image: deps
	bash scripts/build-test-os-image.sh

# The QEMU harness (docs/e2e.md): the whole matrix, the lifecycle and the Ironic deploy, or the one case CI runs.
e2e: deps build rescue-image test-os-image
	node dist/test/e2e/run-e2e.js

e2e-ci: deps build rescue-image test-os-image
	node dist/test/e2e/run-e2e.js --ci

# The image lifecycle alone (make e2e runs it after the matrix): install, bake, capture, install elsewhere, boot.
e2e-lifecycle: deps build rescue-image test-os-image
	node dist/test/e2e/run-e2e.js --case lifecycle

# Ironic's deploy through the rescue image alone (make e2e runs it last): Debian's Ironic on 127.0.0.1 drives byoi-agent ironic.
e2e-ironic: deps build rescue-image test-os-image
	node dist/test/e2e/run-e2e.js --case ironic

clean:
	rm -rf dist build .tap

docs-messages: build
	node dist/scripts/update-messages-doc.js

# The payload validators generated from schemas/ (Ajv standalone code; a test keeps them current).
validators: build
	node dist/scripts/update-schema-validators.js

.PHONY: bench-api
# The API under load: install throughput with and without 50 status pollers; figures into docs/api.md.
bench-api: deps build
	node dist/bench/api-load.js --rounds 7

.PHONY: fuzz
# The hostile-input suite (docs/fuzz.md), not part of `make test` (a seeded slice of it is): FUZZ_SECONDS (default 420),
# CASES (a case budget), SEED (the same cases again), CASE (a replay: one id, or several separated by commas), FAMILY.
fuzz: deps build
	node dist/fuzz/run-fuzz.js --seconds $(or $(FUZZ_SECONDS),420) $(if $(CASES),--cases $(CASES)) $(if $(SEED),--seed $(SEED)) $(if $(CASE),--case $(CASE)) $(if $(FAMILY),--family $(FAMILY))
