#!/usr/bin/env bash
# The systemd units of the tree (every *.service, *.socket, *.timer):
#   systemd-analyze verify accepts each, on a copy whose ExecStart runs the
#   tree's built binary (verify refuses a binary that is not there), and on
#   what "make install-units" installs; an unknown directive or a bad value
#   is only a warning to verify, so any line it prints about the unit fails
#   the test.  Broken copies (an unknown directive, a bad value, a missing
#   binary) must be refused, so the check cannot pass vacuously.
#   ExecStart's options are the binary's own; every unit has the same
#   hardening and does not restart on exit 2 or 3, which is what its binary
#   returns for a bad option and a bad configuration; make install installs every binary a
#   unit runs, and every unit.
#
# Needs no server and no root: systemd-analyze (Debian package systemd)
# reads the files; nothing is enabled or started.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../lib/tap.sh
source "$ROOT/tests/lib/tap.sh"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-systemd-units.XXXXXX")"
trap 'rm -rf "$dir"' EXIT

if ! command -v systemd-analyze >/dev/null 2>&1; then
    ok 1 "systemd-analyze is installed"
    diag "install the Debian package systemd (scripts/install-deps does not list it)"
    done_testing
fi

# What every unit must say (the hardening both daemons share).
REQUIRED=(
    "Restart=on-failure"
    "RestartPreventExitStatus=2 3"
    "UMask=0077"
    "NoNewPrivileges=yes"
    "CapabilityBoundingSet="
    "ProtectSystem=strict"
    "ProtectHome=yes"
    "PrivateTmp=yes"
    "PrivateDevices=yes"
    "ProtectKernelTunables=yes"
    "ProtectKernelModules=yes"
    "ProtectControlGroups=yes"
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"
    "RestrictNamespaces=yes"
    "LockPersonality=yes"
    "MemoryDenyWriteExecute=yes"
    "SystemCallArchitectures=native"
)

# tree_binary NAME: the tree's built NAME (cli/bk, shipper/bk-shipper, ...).
tree_binary() {
    local candidate
    for candidate in "$ROOT"/*/"$1"; do
        if [[ -f "$candidate" && -x "$candidate" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# with_tree_binaries UNIT DEST: copy UNIT to DEST with every /usr/local/bin/
# NAME it runs replaced by the tree's built NAME; false if one is not built.
with_tree_binaries() {
    local unit="$1" dest="$2" name binary
    local -a edits=()
    while read -r name; do
        [[ -n "$name" ]] || continue
        if ! binary="$(tree_binary "$name")"; then
            diag "$name, which $(basename "$unit") runs, is not built (make)"
            return 1
        fi
        edits+=(-e "s|/usr/local/bin/$name\\b|$binary|g")
    done < <(grep -o '/usr/local/bin/[A-Za-z0-9._-]*' "$unit" | sed 's|.*/||' | sort -u)
    sed "${edits[@]}" "$unit" >"$dest"
}

# verify UNIT: systemd-analyze verify UNIT; true only if it exits 0 and
# prints nothing about UNIT (lines about the host's own units are shown as
# diagnostics only).  The output is left in $verified.
verified=""
verify() {
    local unit="$1" base status line about=0 mention
    base="$(basename "$unit")"
    # A template is checked as an instance (foo@.service as foo@i.service).
    if [[ "$base" == *@.* ]]; then
        mention="${base%%@*}@"
    else
        mention="$base"
    fi
    verified="$(SYSTEMD_LOG_LEVEL=info SYSTEMD_COLORS=0 \
        systemd-analyze verify --man=no --recursive-errors=no "$unit" 2>&1)"
    status=$?
    while IFS= read -r line; do
        [[ -n "$line" ]] || continue
        if [[ "$line" == *"$mention"* || "$line" == *"$(dirname "$unit")/"* ]]; then
            about=1
        else
            diag "systemd-analyze (not about $base): $line"
        fi
    done <<<"$verified"
    if ((status != 0 || about)); then
        [[ -n "$verified" ]] && diag "systemd-analyze verify $base (exit $status):" "$verified"
        return 1
    fi
    return 0
}

mapfile -t units < <(cd "$ROOT" && find . -path ./.git -prune -o -type f \
    \( -name '*.service' -o -name '*.socket' -o -name '*.timer' \) -print |
    sed 's|^\./||' | sort)
for expected in shipper/bk-shipper@.service mysql_agent/bk-mysql-agent.service; do
    [[ " ${units[*]} " == *" $expected "* ]]
    ok $? "$expected is among the tree's units"
done

# ---- each unit of the tree, with the tree's binaries
mkdir -p "$dir/bin"
for unit in "${units[@]}"; do
    base="$(basename "$unit")"
    mkdir -p "$dir/tree/${unit%/*}"
    copy="$dir/tree/$unit"
    if ! with_tree_binaries "$ROOT/$unit" "$copy"; then
        ok 1 "$unit: the binaries it runs are built"
        continue
    fi
    verify "$copy"
    ok $? "$unit: systemd-analyze verify accepts it, saying nothing about it"

    missing=()
    for setting in "${REQUIRED[@]}"; do
        grep -qxF -- "$setting" "$ROOT/$unit" || missing+=("$setting")
    done
    is "${missing[*]}" "" "$unit: has the shared hardening and restart policy"

    # ExecStart with its options, %i as an instance name, and --help: the
    # binary's getopt refuses an option it does not know (exit 2).
    exec_line="$(sed -n 's/^ExecStart=//p' "$copy")"
    read -r -a command <<<"${exec_line//%i/example}"
    if ((${#command[@]} == 0)); then
        ok 1 "$unit: has an ExecStart"
        continue
    fi
    help="$("${command[@]}" --help 2>&1)"
    status=$?
    is "$status" 0 "$unit: its binary accepts ExecStart's options (${command[0]##*/} ${command[*]:1} --help)"
    like "$help" '^Usage: ' "$unit: and prints its usage"

    # A drop-in's ExecStart= with an option the binary does not take: exit 2,
    # which the unit must not restart either (it would fail the same way
    # until systemd's start limit).
    "${command[0]}" --no-such-option >/dev/null 2>"$dir/stderr"
    is $? 2 "$unit: an unknown option makes ${command[0]##*/} exit 2, which the unit does not restart"
    [[ " $(sed -n 's/^RestartPreventExitStatus=//p' "$ROOT/$unit") " == *" 2 "* ]]
    ok $? "$unit: RestartPreventExitStatus= names 2"

    "${command[0]}" --config "$dir/missing.conf" >/dev/null 2>"$dir/stderr"
    is $? 3 "$unit: a missing configuration makes ${command[0]##*/} exit 3, which the unit does not restart"
    like "$(cat "$dir/stderr")" 'could not open' "$unit: and the reason goes to stderr, the journal"

    while read -r name; do
        grep -qF "\$(DESTDIR)\$(BINDIR)/$name" "$ROOT/Makefile"
        ok $? "$unit: make install installs $name into \$(BINDIR)"
        binary="$(tree_binary "$name")" && ln -sf "$binary" "$dir/bin/$name"
    done < <(grep -o '/usr/local/bin/[A-Za-z0-9._-]*' "$ROOT/$unit" | sed 's|.*/||' | sort -u)
done

# ---- what make install-units installs, with BINDIR a directory of links
# to the tree's binaries (made above)
mkdir -p "$dir/root"
make -s -C "$ROOT" install-units DESTDIR="$dir/root" BINDIR="$dir/bin" >"$dir/make.log" 2>&1
ok $? "make install-units (DESTDIR, BINDIR) succeeds" || diag "$(cat "$dir/make.log")"
unit_dir="$dir/root/lib/systemd/system"
mapfile -t installed < <(find "$unit_dir" -type f -printf '%f\n' 2>/dev/null | sort)
tree_names=()
for unit in "${units[@]}"; do
    tree_names+=("$(basename "$unit")")
done
is "${installed[*]}" "$(printf '%s\n' "${tree_names[@]}" | sort | tr '\n' ' ' | sed 's/ $//')" \
    "it installs every unit of the tree into \$(SYSTEMD_UNIT_DIR), and nothing else"
for name in "${installed[@]}"; do
    is "$(stat -c %a "$unit_dir/$name")" 644 "installed $name has mode 0644"
    like "$(grep '^ExecStart=' "$unit_dir/$name")" "^ExecStart=$dir/bin/" \
        "installed $name runs \$(BINDIR)'s binary"
    verify "$unit_dir/$name"
    ok $? "installed $name: systemd-analyze verify accepts it, saying nothing about it"
done

# ---- broken copies are refused (so the checks above mean something)
shipper_unit="$dir/tree/shipper/bk-shipper@.service"
agent_unit="$dir/tree/mysql_agent/bk-mysql-agent.service"

mkdir -p "$dir/typo"
sed 's/^RestartPreventExitStatus=/RestartPreventExitStatuss=/' "$shipper_unit" \
    >"$dir/typo/bk-shipper@.service"
verify "$dir/typo/bk-shipper@.service"
isnt $? 0 "a copy of bk-shipper@.service with an unknown directive is refused"
like "$verified" "bk-shipper@\\.service:[0-9]+: Unknown key 'RestartPreventExitStatuss'" \
    "and verify names the file, line and directive"

mkdir -p "$dir/value"
sed 's/^Restart=on-failure/Restart=on-failures/' "$agent_unit" >"$dir/value/bk-mysql-agent.service"
verify "$dir/value/bk-mysql-agent.service"
isnt $? 0 "a copy of bk-mysql-agent.service with a bad Restart= value is refused"
like "$verified" "bk-mysql-agent\\.service:[0-9]+: .*on-failures" "and verify names the value"

mkdir -p "$dir/nobinary"
sed "s|^ExecStart=[^ ]*|ExecStart=$dir/no/such/bk-shipper|" "$shipper_unit" \
    >"$dir/nobinary/bk-shipper@.service"
verify "$dir/nobinary/bk-shipper@.service"
isnt $? 0 "a copy of bk-shipper@.service whose binary does not exist is refused"
like "$verified" "bk-shipper@.*: Command $dir/no/such/bk-shipper is not executable" \
    "and verify names the command"

done_testing
