# Tollgate: the two commands that matter are `make up` and `make test`; each installs what is
# missing (deps) and builds first. See README.md.
.PHONY: deps build up down test bench screenshots clean

deps:
	@scripts/deps.sh

build: deps
	@scripts/build.sh

up: build
	@scripts/up.sh

down:
	@scripts/down.sh

test: build
	@scripts/test.sh

bench: build
	@scripts/bench.sh

# A PNG of every console page in docs/console/ (tests/console_screenshots.mjs); not part of
# `make test`, so the committed images change only when this is run.
screenshots: build
	@node tests/console_screenshots.mjs

clean:
	rm -rf build
