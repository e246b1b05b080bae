#!/bin/sh
set -eu
umask 022
marker=/var/lib/kiln/provisioned
if [ -e "$marker" ]; then
  exit 0
fi
mkdir -p "$(dirname "$marker")"
for pkg in caddy ufw; do
  printf 'installing %s\n' "$pkg"
done
printf '%s\n' "done" >"$marker"
