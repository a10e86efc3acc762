#!/bin/sh
# Writes models/char_lstm/kjv.txt, the King James Bible as plain text, for net.yaml's TextData.
# Installs nothing: it needs the `bible` program (Debian packages bible-kjv bible-kjv-text).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/kjv.txt"
if ! command -v bible >/dev/null 2>&1; then
  echo "make_text.sh: the \`bible\` program is missing; install it first:" >&2
  echo "  apt-get install -y bible-kjv bible-kjv-text" >&2
  exit 1
fi
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
bible Gen1:1-Rev22:21 > "$tmp"
bytes=$(wc -c < "$tmp")
if [ "$bytes" -lt 1000000 ]; then
  echo "make_text.sh: \`bible\` wrote only $bytes bytes (expected about 4.3 MB)" >&2
  exit 1
fi
mv "$tmp" "$out"
echo "wrote $out ($bytes bytes)" >&2
