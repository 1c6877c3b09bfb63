#!/usr/bin/env bash
# Prints the path of a promtool: the one on PATH, or else Debian's, taken from the prometheus
# package with `apt-get download` and unpacked under .local/ (kept for the next run). Only
# promtool is unpacked: installing the package would also start a Prometheus server. When apt
# has no package lists yet (a fresh machine), root runs `apt-get update` first.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v promtool >/dev/null; then
  command -v promtool
  exit 0
fi
dest="$PWD/.local/bin/promtool"
if [ -x "$dest" ]; then
  echo "$dest"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
download() { (cd "$tmp" && apt-get download -qq prometheus) >"$tmp/log" 2>&1; }
if ! download; then
  if [ "$(id -u)" != 0 ]; then
    echo "promtool.sh: apt-get download prometheus failed (run apt-get update as root, or apt-get install prometheus):" >&2
    cat "$tmp/log" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  download || { cat "$tmp/log" >&2; exit 1; }
fi
dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
mkdir -p "$(dirname "$dest")"
# A copy, then a rename: a concurrent run never sees half a file.
cp "$tmp/root/usr/bin/promtool" "$dest.$$"
mv "$dest.$$" "$dest"
echo "$dest"
