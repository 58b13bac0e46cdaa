#!/usr/bin/env bash
# One entry point that prepares a fresh Debian machine (as root) and then runs
# the demo or the tests. Safe to run again: every step checks before it acts.
#
#   bash scripts/run.sh demo [DEMO OPTIONS]   # emulated censored network, end to end
#   bash scripts/run.sh test [PYTEST OPTIONS] # lint and the whole test suite (options: one pass)
#   bash scripts/run.sh setup                 # only prepare the machine
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CENSORWATCH_VENV:-$ROOT/.venv}"
# OONI's own loader (oonidata), in a virtual environment of its own: its pinned dependencies
# (cryptography 38, click 8.0) cannot share censorwatch's. The tests load our measurements with it.
OONIDATA_VENV="${CENSORWATCH_OONIDATA_VENV:-$ROOT/.venv-oonidata}"
OONIDATA_VERSION="0.3.0"
APT_PACKAGES=(iproute2 iptables nftables dnsmasq-base libnetfilter-queue-dev libnfnetlink-dev
              gcc python3-dev chromium
              # The evidence report's PDF (WeasyPrint renders with Pango) and its tests (pdftotext).
              libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core poppler-utils
              # The ClickHouse store's tests run Debian's server (18.16) on their own ports.
              clickhouse-server
              # deploy/'s unit is checked with systemd-analyze (verify, security --offline).
              systemd)

log() { printf '\033[1m[censorwatch]\033[0m %s\n' "$*" >&2; }

install_apt() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        if [[ $EUID -ne 0 ]]; then
            log "missing system packages: ${missing[*]} (run as root to install them)"
            return 0
        fi
        log "installing system packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

install_python() {
    local stamp="$VENV/.censorwatch-installed"
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating virtual environment in $VENV"
        python3 -m venv "$VENV"
    fi
    if [[ ! -f "$stamp" || "$ROOT/pyproject.toml" -nt "$stamp" ]]; then
        log "installing censorwatch and its dependencies"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e "$ROOT[testbed,test,cluster]"
        touch "$stamp"
    fi
}

install_oonidata() {
    local stamp="$OONIDATA_VENV/.oonidata-$OONIDATA_VERSION"
    [[ -f "$stamp" ]] && return 0
    log "installing OONI's loader (oonidata $OONIDATA_VERSION) in $OONIDATA_VENV"
    [[ -x "$OONIDATA_VENV/bin/python" ]] || python3 -m venv "$OONIDATA_VENV"
    "$OONIDATA_VENV/bin/python" -m pip install -q "oonidata==$OONIDATA_VERSION"
    touch "$stamp"
}

setup() {
    install_apt
    install_python
}

cmd="${1:-test}"
shift || true
case "$cmd" in
    setup) setup ;;
    demo)
        setup
        exec "$VENV/bin/censorwatch" demo "$@"
        ;;
    test)
        setup
        install_oonidata
        cd "$ROOT"
        "$VENV/bin/ruff" check src tests bench
        "$VENV/bin/ruff" format --check src tests bench
        "$VENV/bin/lint-imports"
        # The slowest tests are named at the end, to keep the suite's time in view.
        if (($#)); then
            exec "$VENV/bin/python" -m pytest --durations=25 "$@"
        fi
        # The whole suite in two passes: what needs no namespace on every core (pytest-xdist),
        # then the emulated-network tests one at a time, whose timeouts assume the machine is
        # theirs. Both passes run; either failing fails the command.
        status=0
        "$VENV/bin/python" -m pytest -m "not netns" -n "${CENSORWATCH_TEST_WORKERS:-2}" \
            --durations=25 || status=$?
        "$VENV/bin/python" -m pytest -m netns --durations=25 || status=$?
        exit "$status"
        ;;
    *)
        echo "usage: $0 demo|test|setup [options]" >&2
        exit 2
        ;;
esac
