#!/usr/bin/env bash
# Regenerates the Go code for proto/ with Debian's protoc and the plugins pinned in go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null
  else
    echo "protoc is missing: apt-get install protobuf-compiler" >&2; exit 1
  fi
fi
bin=$(mktemp -d); trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc
PATH="$bin:$PATH" protoc -I proto -I /usr/include \
  --go_out=. --go_opt=module=reservation \
  --go-grpc_out=. --go-grpc_opt=module=reservation \
  proto/reservation/v1/*.proto
