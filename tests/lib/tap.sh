# shellcheck shell=bash
# Minimal TAP producer for shell tests (read by prove / TAP::Harness).
#
#   source "$(dirname "$0")/../lib/tap.sh"
#   plan 3                         # or call done_testing at the end
#   ok $? "command succeeded"      # STATUS is an exit code: 0 passes
#   is "$got" "expected" "desc"
#   like "$got" '^15' "desc"       # bash =~ regex
#   wait_for 30 "server up" pg_isready -q
#   done_testing                   # prints the plan if none was given; exits 1 on failures
#
# Output goes to stdout; diagnostics go to stderr prefixed "# ".

TAP_COUNT=0
TAP_FAILED=0
TAP_PLANNED=""

plan() {
    TAP_PLANNED="$1"
    echo "1..$1"
}

diag() {
    local line
    # One "# " per line so multi-line messages stay TAP comments.
    while IFS= read -r line; do
        echo "# $line" >&2
    done <<<"$*"
}

note() {
    local line
    while IFS= read -r line; do
        echo "# $line"
    done <<<"$*"
}

# ok STATUS DESC: STATUS 0 passes, anything else fails. Returns STATUS-as-boolean.
ok() {
    local status="$1" desc="${2:-}"
    TAP_COUNT=$((TAP_COUNT + 1))
    if [[ "$status" == 0 ]]; then
        echo "ok $TAP_COUNT - $desc"
        return 0
    fi
    TAP_FAILED=$((TAP_FAILED + 1))
    echo "not ok $TAP_COUNT - $desc"
    diag "Failed test '$desc'"
    return 1
}

is() {
    local got="$1" expected="$2" desc="${3:-}"
    if [[ "$got" == "$expected" ]]; then
        ok 0 "$desc"
        return 0
    fi
    ok 1 "$desc" || true
    diag "     got: '$got'"
    diag "expected: '$expected'"
    return 1
}

isnt() {
    local got="$1" unexpected="$2" desc="${3:-}"
    if [[ "$got" != "$unexpected" ]]; then
        ok 0 "$desc"
        return 0
    fi
    ok 1 "$desc" || true
    diag "     got: '$got'"
    diag "expected: anything else"
    return 1
}

like() {
    local got="$1" regex="$2" desc="${3:-}"
    if [[ "$got" =~ $regex ]]; then
        ok 0 "$desc"
        return 0
    fi
    ok 1 "$desc" || true
    diag "                  '$got'"
    diag "    doesn't match '$regex'"
    return 1
}

unlike() {
    local got="$1" regex="$2" desc="${3:-}"
    if ! [[ "$got" =~ $regex ]]; then
        ok 0 "$desc"
        return 0
    fi
    ok 1 "$desc" || true
    diag "                  '$got'"
    diag "          matches '$regex'"
    return 1
}

skip() {
    local desc="$1" reason="${2:-}"
    TAP_COUNT=$((TAP_COUNT + 1))
    echo "ok $TAP_COUNT - $desc # SKIP $reason"
}

bail_out() {
    echo "Bail out! $*"
    exit 255
}

# wait_for TIMEOUT_SECONDS DESC CMD...: run CMD every 0.2 s until it succeeds
# (return 0) or TIMEOUT_SECONDS pass (diag DESC, return 1). CMD's output is discarded.
wait_for() {
    local timeout="$1" desc="$2"
    shift 2
    # Microsecond clock (bash 5): SECONDS only counts whole seconds.
    local now=${EPOCHREALTIME//[.,]/}
    local deadline=$((now + timeout * 1000000))
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        now=${EPOCHREALTIME//[.,]/}
        if ((now >= deadline)); then
            diag "timed out after ${timeout}s waiting for: $desc"
            return 1
        fi
        sleep 0.2
    done
}

# done_testing: print the plan if none was given, check the count against a
# given plan, and exit non-zero if any test failed.
done_testing() {
    if [[ -z "$TAP_PLANNED" ]]; then
        echo "1..$TAP_COUNT"
    elif [[ "$TAP_PLANNED" != "$TAP_COUNT" ]]; then
        diag "planned $TAP_PLANNED tests but ran $TAP_COUNT"
        exit 255
    fi
    if ((TAP_FAILED > 0)); then
        diag "failed $TAP_FAILED of $TAP_COUNT tests"
        exit 1
    fi
    exit 0
}
