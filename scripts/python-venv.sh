#!/usr/bin/env bash
# Makes (or refreshes) the Python client's virtual environment, .build/python-venv:
# msgpack and pytest from PyPI, then the client from clients/python (reinstalled
# every time, so that the tests run the tree's code). Prints the venv's python.
#   scripts/python-venv.sh
# PYTHON picks the interpreter (default python3, else /usr/bin/python3: the
# one that scripts/install-deps.sh gives venv and pip through apt).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.build/python-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "" 2>/dev/null; then
    rm -rf "$venv"
    mkdir -p .build
    made=""
    for python in "${PYTHON:-python3}" /usr/bin/python3; do
        if command -v "$python" >/dev/null && "$python" -m venv "$venv" >&2; then
            made=yes
            break
        fi
        rm -rf "$venv"
    done
    [ -n "$made" ] || { echo "python-venv: cannot make a virtual environment (python3-venv missing?)" >&2; exit 1; }
    "$venv/bin/python" -m pip install -q msgpack pytest >&2
fi
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps ./clients/python >&2
echo "$(pwd)/$venv/bin/python"
