#!/usr/bin/env bash
# Guards the wire contract of proto/ with buf (configuration: buf.yaml).
#
#   scripts/buf.sh lint       buf lint (STANDARD, with the exceptions buf.yaml explains)
#   scripts/buf.sh breaking   buf breaking against the proto/ of the base commit (below)
#   scripts/buf.sh path       print the path of the buf binary
#
# buf is built from the Go module proxy at a pinned version with `go install` and kept under
# .local/bin (rebuilt only when the version changes). google/api/annotations.proto, which
# reservation.proto imports, comes from the module scripts/proto.sh pins (grpc-gateway v1.16.0,
# third_party/googleapis), so lint and breaking see the same imports as the code generator.
#
# The base of `breaking` is BUF_AGAINST if set (a git ref), else the merge-base of HEAD with
# main (origin/main in a clone where main is only a remote branch), else HEAD~1. On main itself
# the merge-base is HEAD, so there HEAD~1 is used: the previous commit on main. The base's
# proto/ is taken with `git archive` into a temporary directory, which works in any clone that
# has the base commit (a shallow clone of depth 1 has none: then it says so and fails).
set -euo pipefail
cd "$(dirname "$0")/.."

version=v1.75.0
bin="$PWD/.local/bin"
buf="$bin/buf-$version"
if [ ! -x "$buf" ]; then
  mkdir -p "$bin"
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install "github.com/bufbuild/buf/cmd/buf@$version"
  mv "$tmp/buf" "$buf"
  rm -rf "$tmp"
fi

googleapis() {
  local dir
  dir=$(go mod download -json github.com/grpc-ecosystem/grpc-gateway@v1.16.0 |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/third_party/googleapis
  [ -f "$dir/google/api/annotations.proto" ] || { echo "buf.sh: google/api protos not found in $dir" >&2; exit 1; }
  echo "$dir"
}

# workspace DIR PROTO: lays out DIR as a buf module of PROTO (a copy of a proto/ tree) with
# google/api beside it, so that buf resolves the import without the network (no buf.lock).
workspace() {
  local dir=$1 proto=$2 gapi
  gapi=$(googleapis)
  mkdir -p "$dir/third_party/google/api"
  cp "$gapi/google/api/annotations.proto" "$gapi/google/api/http.proto" "$dir/third_party/google/api/"
  cp -r "$proto" "$dir/proto"
  # buf.yaml's module proto/ gets google/api as a second module beside it, which lint and
  # breaking ignore: it is not ours.
  grep -q '^  - path: proto$' buf.yaml || { echo "buf.sh: buf.yaml has no '  - path: proto' module line" >&2; exit 1; }
  sed 's|^  - path: proto$|  - path: proto\n  - path: third_party\n    lint: {ignore: [third_party]}\n    breaking: {ignore: [third_party]}|' \
    buf.yaml >"$dir/buf.yaml"
}

base() {
  if [ -n "${BUF_AGAINST:-}" ]; then echo "$BUF_AGAINST"; return; fi
  local main mb head
  for main in main origin/main; do
    if git rev-parse -q --verify "$main^{commit}" >/dev/null; then
      mb=$(git merge-base HEAD "$main")
      head=$(git rev-parse HEAD)
      if [ "$mb" = "$head" ]; then echo HEAD~1; else echo "$mb"; fi
      return
    fi
  done
  echo HEAD~1
}

case "${1:-lint}" in
path)
  echo "$buf"
  ;;
lint)
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  workspace "$tmp/head" proto
  (cd "$tmp/head" && "$buf" lint)
  ;;
breaking)
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  ref=$(base)
  if ! git rev-parse -q --verify "$ref^{commit}" >/dev/null &&
    [ "$(git rev-parse --is-shallow-repository)" = true ]; then
    # A shallow clone: deepen it from its remote when it has one, so that the base is there.
    git fetch -q --deepen=50 origin 2>/dev/null || true
  fi
  if ! git rev-parse -q --verify "$ref^{commit}" >/dev/null; then
    echo "buf.sh breaking: base $ref is not in this clone (a shallow clone? fetch with --depth 2 or more)" >&2
    exit 1
  fi
  mkdir -p "$tmp/base-src"
  git archive "$ref" proto | tar -x -C "$tmp/base-src"
  workspace "$tmp/head" proto
  workspace "$tmp/base" "$tmp/base-src/proto"
  echo "buf breaking: proto/ against $ref ($(git rev-parse --short "$ref"))" >&2
  (cd "$tmp/head" && "$buf" breaking --against ../base)
  ;;
*)
  echo "usage: scripts/buf.sh lint|breaking|path" >&2; exit 2
  ;;
esac
