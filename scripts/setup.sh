#!/usr/bin/env bash
# Installs the Debian packages crema needs, if any is missing (apt-get update once, then install).
set -euo pipefail
packages=(libopenblas-dev libssl-dev pkg-config dataset-fashion-mnist graphviz fonts-dejavu-core
  bible-kjv bible-kjv-text)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
fi
