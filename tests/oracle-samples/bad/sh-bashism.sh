#!/bin/sh
set -eu
if [[ -n "${1:-}" ]]; then
  arr=(a b c)
  echo "${arr[0]}"
fi
