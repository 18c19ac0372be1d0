#!/usr/bin/env bash
# Runs after `npm install` / `bun install`: makes sure the pinned Zig is present and builds the
# kernel library (zig-out/lib/libllmts.so).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/zig.sh" build
echo "llm.ts: kernel library built at zig-out/lib/libllmts.so" >&2
