#!/usr/bin/env bash
# Prints the path of a grpcurl for the docs' replayed sessions (TestDocSessions): the one on
# PATH, or else one built from the Go module proxy with `go install`, pinned, into .local/bin
# (kept for the next run; the first build downloads its modules, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=v1.9.4
if command -v grpcurl >/dev/null; then
  command -v grpcurl
  exit 0
fi
dest="$PWD/.local/bin/grpcurl"
if [ -x "$dest" ]; then
  echo "$dest"
  exit 0
fi
mkdir -p "$(dirname "$dest")"
echo "grpcurl.sh: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$VERSION into .local/bin" >&2
# GOFLAGS=-mod=mod: install the module on its own, whatever this module's go.mod says.
GOBIN="$PWD/.local/bin" GOFLAGS=-mod=mod go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$VERSION" >&2
echo "$dest"
