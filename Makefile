# cache-gateway: the two commands a new machine needs.
#   make run   starts a gateway on the embedded store, shows it serving, stops it
#   make test  runs every test (starts and stops its own redis-server)
# Both install what is missing first (apt packages, redis-server).

SWIFT_FLAGS := --disable-experimental-prebuilts

.PHONY: run test bench deps build clean install

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

# Puts the gateway and its systemd units in place (run as root):
#   /usr/local/bin/cache-gateway, /etc/systemd/system/cache-gateway.service,
#   /etc/systemd/system/cache-gateway.socket (optional socket activation),
#   /etc/cache-gateway/cache-gateway.env (kept if it exists).
# Then: systemctl daemon-reload && systemctl enable --now cache-gateway
# (or, for socket activation: systemctl enable --now cache-gateway.socket)
install: deps
	swift build $(SWIFT_FLAGS) -c release --product cache-gateway
	# A static group, so that workers' users can be added to it (a DynamicUser's
	# own group cannot have members); the unit's Group= then uses it.
	getent group cache-gateway >/dev/null || groupadd --system cache-gateway
	install -D -m 755 "$$(swift build $(SWIFT_FLAGS) -c release --show-bin-path)/cache-gateway" $(DESTDIR)/usr/local/bin/cache-gateway
	install -D -m 644 systemd/cache-gateway.service $(DESTDIR)/etc/systemd/system/cache-gateway.service
	install -D -m 644 systemd/cache-gateway.socket $(DESTDIR)/etc/systemd/system/cache-gateway.socket
	test -e $(DESTDIR)/etc/cache-gateway/cache-gateway.env || install -D -m 644 systemd/cache-gateway.env $(DESTDIR)/etc/cache-gateway/cache-gateway.env
