#!/bin/sh
if [ -e /etc/kiln ]; then
  echo missing fi
