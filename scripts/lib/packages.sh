#!/usr/bin/env bash
# What xvs's scripts need from the machine, in one place, and the steps each script takes
# before its work: become root (through sudo if there is one), check that Rust is there, and
# install the missing Debian packages (one `apt-get update`, one `apt-get install`, saying
# what and why). Sourced by scripts/demo and scripts/test; also a command:
#
#     scripts/lib/packages.sh [build] [demo] [test] [bench]   # what those need (default: all)
#
# XVS_PKG_DRYRUN=1 prints what would be installed and installs nothing (to try the detection:
# run with a PATH that hides a tool).

# What needs what: a probe (a program on the PATH, or an absolute path), the Debian package
# that provides it, and the scripts that need it. A probe is what the scripts and tests look
# for themselves (a test that misses a program skips), so installing follows the same test.
xvs_package_table() {
    cat <<'EOF'
cc                          gcc                          build,demo,test,bench
/usr/include/stdio.h        libc6-dev                    build,demo,test,bench
ip                          iproute2                     demo,test,bench
ss                          iproute2                     test,bench
ping                        iputils-ping                 demo,test,bench
iperf3                      iperf3                       demo,test,bench
ethtool                     ethtool                      demo,test,bench
python3                     python3                      demo,test
pip3                        python3-pip                  test
sysctl                      procps                       demo,test,bench
taskset                     util-linux                   test,bench
setpriv                     util-linux                   test
arping                      arping                       test
tcpdump                     tcpdump                      test
/usr/lib/cni/host-local     containernetworking-plugins  test
iptables                    iptables                     test
nft                         nftables                     test,demo
curl                        curl                         test
ovs-vswitchd                openvswitch-switch           bench
EOF
}
# cc and libc6-dev (build: what cargo needs to build anything, build scripts included): rustc
# links through the C compiler driver and the C library's start files (xvs has no C).
# procps: sysctl, and the kill the tests and the demo's cleanup run (a shell builtin too, so
# not a probe). pip3: the metrics test installs prometheus_client's parser with `python3 -m
# pip` where python3 lacks it. ovs-vswitchd: the end-to-end bench's OVS column only.

# Root's PATH from `su` (without -) or a minimal image may lack the sbin directories, where
# sysctl and ethtool live: then they would look missing although installed.
case ":$PATH:" in
    *:/usr/sbin:*) ;;
    *) PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;;
esac

# Prints the packages that `groups` (build, demo, test, bench) need and that are missing, once
# each, each followed by the probes that found them missing: "package probe[,probe]".
xvs_missing_packages() {
    local groups=" $* " probe package needed_by
    local -A missing=()
    local -a order=()
    while read -r probe package needed_by; do
        local wanted=0 group
        for group in ${needed_by//,/ }; do
            [[ $groups == *" $group "* ]] && wanted=1
        done
        [ "$wanted" = 1 ] || continue
        if [[ $probe == /* ]]; then
            [ -e "$probe" ] && continue
        else
            command -v "$probe" >/dev/null 2>&1 && continue
        fi
        if [ -z "${missing[$package]+set}" ]; then
            order+=("$package")
            missing[$package]=$probe
        else
            missing[$package]+=",$probe"
        fi
    done < <(xvs_package_table)
    for package in "${order[@]}"; do
        echo "$package ${missing[$package]}"
    done
}

# Installs what `groups` need and lack. Runs `apt-get update` at most once per run of a
# script (scripts started by a script inherit XVS_APT_UPDATED). Fails, naming the packages,
# where there is no apt-get or the installation fails.
xvs_install_missing() {
    local -a packages=() probes=()
    local package probe
    while read -r package probe; do
        packages+=("$package")
        probes+=("$probe")
    done < <(xvs_missing_packages "$@")
    if [ "${#packages[@]}" = 0 ]; then
        [ "${XVS_PKG_DRYRUN:-0}" != 1 ] || echo "== nothing to install for $*"
        return 0
    fi
    local what="${packages[*]} (for ${probes[*]})"
    if [ "${XVS_PKG_DRYRUN:-0}" = 1 ]; then
        echo "== would install: $what"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "missing: $what; there is no apt-get here: install them (Debian names) with the" \
            "system's package manager" >&2
        return 1
    fi
    echo "== installing ${packages[*]} (missing: ${probes[*]})"
    export DEBIAN_FRONTEND=noninteractive
    # Another apt may hold the lock for a while (unattended upgrades on a fresh machine).
    local -a apt=(apt-get -qq -o DPkg::Lock::Timeout=300)
    if [ -z "${XVS_APT_UPDATED:-}" ]; then
        "${apt[@]}" update || { echo "apt-get update failed" >&2; return 1; }
        export XVS_APT_UPDATED=1
    fi
    "${apt[@]}" install -y --no-install-recommends "${packages[@]}" >/dev/null ||
        { echo "apt-get install ${packages[*]} failed" >&2; return 1; }
    local still
    still=$(xvs_missing_packages "$@")
    if [ -n "$still" ]; then
        echo "still missing after installing: $still" >&2
        return 1
    fi
}

# Re-runs `script` (a path relative to the current directory) with `args` as root: through
# sudo when not root, keeping PATH (cargo in ~/.cargo/bin) and the rustup toolchains; never
# calls sudo as root. Exits where there is no way to become root.
xvs_become_root() {
    local script=$1
    shift
    [ "$(id -u)" = 0 ] && return 0
    if ! command -v sudo >/dev/null 2>&1; then
        echo "$script needs root (packages, network namespaces, XDP and AF_XDP) and there is" \
            "no sudo here: run it as root" >&2
        exit 1
    fi
    echo "== not root: running $script through sudo"
    local -a keep=("PATH=$PATH")
    local rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
    [ ! -d "$rustup_home" ] || keep+=("RUSTUP_HOME=$rustup_home")
    [ -z "${RUSTUP_TOOLCHAIN:-}" ] || keep+=("RUSTUP_TOOLCHAIN=$RUSTUP_TOOLCHAIN")
    exec sudo env "${keep[@]}" "$PWD/$script" "$@"
}

# Fails, saying what to do, where there is no Rust toolchain.
xvs_require_cargo() {
    command -v cargo >/dev/null 2>&1 && return 0
    local version
    version=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml 2>/dev/null | head -1)
    echo "cargo is not on the PATH: xvs needs Rust ${version:-(see Cargo.toml)} or newer." \
        "Install it with rustup (https://rustup.rs), or a distribution's rustc and cargo if" \
        "new enough, then run this again (with sudo, as root: keep cargo on the PATH)" >&2
    exit 1
}

# The first step of every script, run from the checkout's top directory: `xvs_prepare GROUP
# SCRIPT ARGS...` becomes root (re-running SCRIPT with ARGS), checks for cargo, installs
# what GROUP needs. With XVS_PKG_DRYRUN=1 it only says what it would install, then exits.
xvs_prepare() {
    local group=$1
    shift
    if [ "${XVS_PKG_DRYRUN:-0}" = 1 ]; then
        xvs_install_missing "$group"
        exit 0
    fi
    xvs_become_root "$@"
    xvs_require_cargo
    xvs_install_missing "$group" || exit 1
}

# As a command: install what the named groups need.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    cd "$(dirname "$0")/../.."
    [ "$#" -gt 0 ] || set -- build demo test bench
    if [ "${XVS_PKG_DRYRUN:-0}" != 1 ]; then
        xvs_become_root scripts/lib/packages.sh "$@"
    fi
    xvs_install_missing "$@"
fi
