#!/usr/bin/env bash
# The Debian packages the tests start for real: mosquitto (MQTT), OpenStack Swift with
# memcached (S3), Chromium (the page tests). Installs only what is missing; as root, or
# through sudo, saying so first. Exits 0 when everything is there.
set -euo pipefail
need=()
command -v mosquitto >/dev/null && command -v mosquitto_passwd >/dev/null ||
  need+=(mosquitto mosquitto-clients openssl)
command -v swift-proxy-server >/dev/null && command -v swift-ring-builder >/dev/null ||
  need+=(swift swift-proxy swift-account swift-container swift-object python3-swift)
command -v memcached >/dev/null || need+=(memcached)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null; then
  SUDO="sudo"
else
  echo "the tests need these Debian packages: ${need[*]}" >&2
  echo "install them as root: apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "installing the Debian packages the tests need${SUDO:+ (through sudo)}: ${need[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
