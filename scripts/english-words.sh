#!/usr/bin/env bash
# Rebuilds core/data/english-words.txt.gz: the lower-case words of SCOWL's American English
# list as Debian ships it (wamerican 2020.12.07-2), which a typo correction never replaces.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download wamerican=2020.12.07-2 >/dev/null)
echo "c8f8e2b2ad0d37bfdd41f0e40f1e4c8e5f907467d768a1d3698b164e9617f0b4  $work/wamerican_2020.12.07-2_all.deb" | sha256sum -c -
dpkg-deb -x "$work"/wamerican_*.deb "$work/x"
grep -E '^[a-z]+$' "$work/x/usr/share/dict/american-english" | gzip -9 -n > core/data/english-words.txt.gz
cp "$work/x/usr/share/doc/wamerican/copyright" core/data/english-words.COPYRIGHT
echo "core/data/english-words.txt.gz: $(zcat core/data/english-words.txt.gz | wc -l) words"
