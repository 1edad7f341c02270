#!/usr/bin/env bash
# Installs what drp and its local lab need on a Debian machine, as root:
# the lab's Debian packages (without starting their system services) and a virtual
# environment in .venv with drp installed. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (the lab creates unix users and starts servers on loopback)" >&2
  exit 1
fi

# chromium and libatomic1 (needed by Playwright's driver): the browser tests drive the Prefect
# UI in Debian's Chromium, since Playwright cannot download its own browser here. cron: the
# lab hosts' users get crontabs (`crontab`) in the drift test; its daemon is not started.
packages=(openssh-server openssh-client rsync postgresql postgresql-client mariadb-server
          mariadb-client knot knot-dnsutils python3-venv procps iproute2 util-linux
          chromium libatomic1 cron)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  # Installing server packages starts their system services (sshd on 22, mariadb on 3306,
  # knot on 53, postgresql on 5432) unless policy-rc.d forbids it; those would collide with
  # the lab's own servers, so forbid it for the duration of the install.
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=yes
  fi
  trap '[ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
if ! .venv/bin/python -c "import flows, runbooks, providers, lab, pytest, ruff, playwright" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.drp-installed ]; then
  echo "setup: installing drp into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch .venv/.drp-installed
fi
echo "setup: ready"
