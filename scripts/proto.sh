#!/usr/bin/env bash
# Regenerates the Go code, the HTTP gateway and the OpenAPI document for proto/ with Debian's
# protoc and the plugins pinned in go.mod. google/api/annotations.proto comes from a pinned
# module (grpc-gateway v1.16.0 ships it under third_party/googleapis), fetched through the Go
# module proxy like any dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null
  else
    echo "protoc is missing: apt-get install protobuf-compiler" >&2; exit 1
  fi
fi
googleapis=$(go mod download -json github.com/grpc-ecosystem/grpc-gateway@v1.16.0 |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/third_party/googleapis
[ -f "$googleapis/google/api/annotations.proto" ] || { echo "google/api protos not found in $googleapis" >&2; exit 1; }
bin=$(mktemp -d); trap 'rm -rf "$bin"' EXIT
for plugin in google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc \
  github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway \
  github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2; do
  go build -o "$bin/" "$plugin"
done
PATH="$bin:$PATH" protoc -I proto -I "$googleapis" -I /usr/include \
  --go_out=. --go_opt=module=reservation \
  --go-grpc_out=. --go-grpc_opt=module=reservation \
  --grpc-gateway_out=. --grpc-gateway_opt=module=reservation \
  --openapiv2_out=gateway --openapiv2_opt=allow_merge=true,merge_file_name=reservation \
  proto/reservation/v1/*.proto
