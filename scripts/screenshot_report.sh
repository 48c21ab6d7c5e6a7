#!/usr/bin/env bash
# Render a report.html in headless Chromium and save a full-page PNG, to check that every image displays.
#   scripts/screenshot_report.sh RUN_DIR/report.html OUT.png [HEIGHT]
# Needs Debian's chromium package (apt-get install chromium).
set -euo pipefail
report=$(realpath "$1"); out=$(realpath -m "$2"); height=${3:-9000}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size=1100,"$height" --screenshot="$out" "file://$report" 2>/dev/null
echo "screenshot: $out"
