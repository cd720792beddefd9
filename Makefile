# byoi-agent: the two commands are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Debian packages: referees for the tests (qemu-img, sgdisk, blkid…) and the benchmarks' baselines (curl, GNU time).
DEB_PACKAGES := qemu-utils gdisk util-linux fdisk dosfstools mtools xorriso genisoimage cloud-init curl coreutils e2fsprogs time

NPM_STAMP := node_modules/.installed

.PHONY: docs-messages help deps deps-deb deps-npm build test lint typecheck tap bench demo clean

help:
	@echo "make demo   - install an image onto a virtual disk, shown live (installs its dependencies)"
	@echo "make test   - lint, typecheck and the tap suite (installs its dependencies)"
	@echo "make deps   - Debian and npm packages (idempotent, as root)"
	@echo "make build  - compile to dist/ (the byoi-agent binary)"
	@echo "make bench  - the benchmarks in bench/, figures into docs/benchmarks.md"

deps: deps-deb deps-npm

deps-deb:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

deps-npm: $(NPM_STAMP)

$(NPM_STAMP): package.json package-lock.json
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
	node dist/bench/run-all.js

demo: deps build
	bash scripts/demo.sh

clean:
	rm -rf dist build .tap

docs-messages: build
	node dist/scripts/update-messages-doc.js
