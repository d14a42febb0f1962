# cache-gateway: the two commands a new machine needs.
#   make run   starts a gateway on the embedded store, shows it serving, stops it
#   make test  runs every test (starts and stops its own redis-server)
# Both install what is missing first (apt packages, redis-server).

SWIFT_FLAGS := --disable-experimental-prebuilts

.PHONY: run test bench deps build clean

deps:
	@scripts/install-deps.sh

build: deps
	swift build $(SWIFT_FLAGS)

run: deps
	scripts/run.sh

test: deps
	scripts/test.sh

# Release-build benchmarks; see Benchmarks/README.md.
bench: deps
	scripts/bench.sh

clean:
	rm -rf .build
