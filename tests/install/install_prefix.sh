#!/usr/bin/env bash
# The fixture of the install tests: a fresh `cmake --install` of the build into PREFIX, every
# component (the debug information too), as README "Installing" says.
# usage: install_prefix.sh BUILD_DIR SOURCE_DIR PREFIX LIBDIR
set -euo pipefail
build=$1 prefix=$3
rm -rf "$prefix"
mkdir -p "$(dirname "$prefix")"
cmake --install "$build" --prefix "$prefix"
