# Tollgate: the two commands that matter are `make up` and `make test`; each installs what is
# missing (deps) and builds first. See README.md.
.PHONY: deps deps-test deps-cluster build up down test bench screenshots clean cluster-up cluster-down

deps:
	@scripts/deps.sh

# Tools only the tests and benchmarks use (clang, wrk, nginx, PyTorch, chromium, promtool,
# systemd-analyze, HAProxy), installed before the build.
deps-test:
	@scripts/deps.sh test

deps-cluster:
	@scripts/deps.sh cluster

build: deps
	@scripts/build.sh

up: build
	@scripts/up.sh

down:
	@scripts/down.sh

test: deps-test build
	@scripts/test.sh

bench: deps-test build
	@scripts/bench.sh

# A PNG of every console page in docs/console/ (tests/console_screenshots.mjs); not part of
# `make test`, so the committed images change only when this is run.
screenshots: deps-test build
	@node tests/console_screenshots.mjs

clean:
	rm -rf build

# Three gateways behind HAProxy, a Redis Cluster with replicas, PostgreSQL and the engine on one
# machine (deploy/README.md); `scripts/cluster.sh rolling-restart` restarts the gateways.
cluster-up: deps-cluster build
	@scripts/cluster.sh up

cluster-down:
	@scripts/cluster.sh down
