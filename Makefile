# Tollgate: the two commands that matter are `make up` and `make test`; each installs what is
# missing (deps) and builds first. See README.md.
.PHONY: deps build up down test bench clean

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

clean:
	rm -rf build
