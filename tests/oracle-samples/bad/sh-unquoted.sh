#!/bin/sh
# dash parses this; only shellcheck (SC2086) objects.
dir=$1
rm -rf $dir/tmp
