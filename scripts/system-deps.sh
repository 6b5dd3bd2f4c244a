#!/usr/bin/env bash
# System packages some tests drive for real: Debian's Chromium (browser tests, through the
# Python playwright package; `playwright install` cannot download here), OpenSSH's server
# and client (SSH provisioning tests) and npm (JupyterHub's proxy for tests/hub). Installs
# what is missing, as root, through apt. Without root it only reports, and the tests that
# need the missing parts skip locally (with CI=true they fail instead of skipping).
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
# npm installs JupyterHub's configurable-http-proxy for tests/hub (`make hub-proxy`, into
# .venv/node); Debian's nodejs comes without it
command -v npm >/dev/null 2>&1 || need+=(npm)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing ${need[*]} (not root: install them with apt to run every test)" >&2
    exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
