#!/usr/bin/env bash
# Installs what cache-gateway needs on Debian/Ubuntu, skipping what is already there:
# the three C libraries (-dev packages), pkg-config, redis-server (tests and the
# Redis backend), systemd (systemd-analyze, which a test runs on the unit) and
# python3-venv with python3-pip (the Python client's tests make a virtual
# environment: scripts/python-venv.sh), and openssl (scripts/redis-tls.sh makes
# the TLS tests' CA and certificates with it).
# Swift itself is expected to be installed.
set -euo pipefail

packages=(libmsgpack-dev libhiredis-dev libssl-dev pkg-config redis-server systemd python3-venv python3-pip openssl)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts redis-server as a system service on install; the tests never use
# it (they start their own on a private socket), so leave it as the system wants.
