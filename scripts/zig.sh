#!/usr/bin/env bash
# Runs the pinned Zig. Uses `zig` on PATH when its version matches the pin, else the official
# `ziglang` wheel from PyPI, installed once into the git-ignored .tools/ folder of this checkout.
set -euo pipefail
ZIG_VERSION="0.17.1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="$ROOT/.tools/ziglang-$ZIG_VERSION"
LOCAL_ZIG="$TOOLS_DIR/ziglang/zig"

find_zig() {
  if command -v zig >/dev/null 2>&1 && [ "$(zig version 2>/dev/null)" = "$ZIG_VERSION" ]; then
    command -v zig
  elif [ -x "$LOCAL_ZIG" ] && [ "$("$LOCAL_ZIG" version)" = "$ZIG_VERSION" ]; then
    echo "$LOCAL_ZIG"
  else
    return 1
  fi
}

install_zig() {
  echo "llm.ts: installing Zig $ZIG_VERSION (PyPI wheel 'ziglang') into $TOOLS_DIR" >&2
  local python=""
  for candidate in python3 /usr/bin/python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -m pip --version >/dev/null 2>&1; then
      python="$candidate"; break
    fi
  done
  if [ -z "$python" ]; then
    echo "llm.ts: no python with pip found; install Zig $ZIG_VERSION yourself and put it on PATH" >&2
    exit 1
  fi
  rm -rf "$TOOLS_DIR.partial"
  "$python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$TOOLS_DIR.partial" "ziglang==$ZIG_VERSION" >&2
  rm -rf "$TOOLS_DIR"
  mv "$TOOLS_DIR.partial" "$TOOLS_DIR"
}

ZIG="$(find_zig || true)"
if [ -z "$ZIG" ]; then
  install_zig
  ZIG="$(find_zig)"
fi
if [ "${1:-}" = "--path" ]; then echo "$ZIG"; exit 0; fi
cd "$ROOT"
if [ "${1:-}" = "build" ] && [ "${2:-}" != "test" ]; then
  # Zig's cache skips the install step when the sources' contents are unchanged, leaving the
  # library's mtime older than a touched kernel file; src/ffi.ts compares mtimes, so mark the
  # library as built now.
  "$ZIG" "$@"
  if [ -f zig-out/lib/libllmts.so ]; then touch zig-out/lib/libllmts.so; fi
  exit 0
fi
exec "$ZIG" "$@"
