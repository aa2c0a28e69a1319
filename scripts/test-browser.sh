#!/usr/bin/env bash
# Test set-up for the page tests of `emodistill serve` (tests/test_serve_page.py): they drive Debian's
# headless Chromium through its chromedriver (Selenium, pointed at the system browser; nothing is
# downloaded). As root with apt-get this installs the `chromium` and `chromium-driver` packages when they
# are missing; otherwise it only says that those tests will be skipped. It never fails the set-up of a
# developer machine.
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "test-browser: $(chromium --version 2>/dev/null | head -n 1) with $(command -v chromedriver)"
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-browser: installing Debian's chromium and chromium-driver (headless browser for the page tests)"
    export DEBIAN_FRONTEND=noninteractive
    if { apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 ||
         { apt-get update -qq >/dev/null 2>&1 &&
           apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; }; }; then
        echo "test-browser: installed $(chromium --version 2>/dev/null | head -n 1)"
        exit 0
    fi
    echo "test-browser: apt-get install chromium chromium-driver failed; the page tests will be skipped" \
         "(or fail if EMODISTILL_REQUIRE_BROWSER=1)"
    exit 0
fi
echo "test-browser: no chromium/chromedriver and not root with apt-get; the page tests of" \
     "tests/test_serve_page.py will be skipped (install Debian's 'chromium' and 'chromium-driver' to run them)"
exit 0
