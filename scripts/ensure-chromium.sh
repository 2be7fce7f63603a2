#!/bin/sh
# The browser tests (test/e2e/console.test.ts) drive Debian's Chromium through playwright-core,
# which downloads no browser of its own. `npm test` runs this first: it installs Debian's package
# when it is missing and the user may (root with apt-get), and otherwise says what to install.
set -eu
CHROMIUM="${EXPORTD_CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests (once)..." >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2
  exit 0
fi
echo "The browser tests need Chromium at $CHROMIUM: install Debian's package (sudo apt-get install chromium) or set EXPORTD_CHROMIUM to a Chromium binary." >&2
exit 1
