# cache-gateway: the two commands a new machine needs.
#   make run   builds the gateway and runs the main job
#   make test  runs every test (starts and stops its own redis-server)
# Both install what is missing first (apt packages, redis-server).

SWIFT_FLAGS := --disable-experimental-prebuilts

.PHONY: run test bench deps build clean

deps:
	@scripts/install-deps.sh

build: deps
	swift build $(SWIFT_FLAGS)

run: build
	swift run $(SWIFT_FLAGS) --skip-build cache-gateway --help

test: deps
	scripts/test.sh

# Release-build benchmarks; see Benchmarks/README.md.
bench: deps
	scripts/bench.sh

clean:
	rm -rf .build
