#!/usr/bin/env bash
# Run libiscsi's iscsi-test-cu conformance suites against a target and count
# honestly: CUnit reports a test that printed "[SKIPPED]" as passed; here it
# counts as skipped.
#
#   scripts/conformance.sh URL [URL2] [--suites "Inquiry Read10 ..."|ALL]
#                          [--readonly-url URL] [--expect-file FILE]
#                          [--results DIR] [--initiator IQN] [--timeout SECS]
#
# URL   iscsi://127.0.0.1:PORT/TARGET-IQN/LUN (URL2: a second path to the same
#       LU, e.g. URL again: libiscsi then opens two sessions; MultipathIO
#       needs it, the reservation suites use it as their second I_T nexus).
# --readonly-url  a write-protected LU: the ReadOnly suite runs against it
#       (against URL it can only skip).
# --suites  suite names as listed by `iscsi-test-cu -l`: a bare name means the
#       ALL family (Read10 -> ALL.Read10); a dotted name is used as is
#       (iSCSI.iSCSIcmdsn, SCSI.Read10.Simple). "ALL" expands to every ALL.*
#       suite. Default: ALL (the whole ALL family, see DEFAULT_SUITES below).
# --expect-file  known outcomes, one per line: "Suite.Test fail|skip [# why]"
#       (e.g. "Read10.ReadProtect fail # no protection information"). An
#       expected failure does not make the exit status non-zero; a test listed
#       as "fail" that passes is reported as XPASS (update the file).
# --results  directory for the logs and results.tsv (default:
#       ./conformance-results/YYYYmmdd-HHMMSS).
# --timeout  per-suite time limit (default 300 s); a suite that times out,
#       crashes or prints no CUnit run summary counts as failed.
#
# Each suite runs as `iscsi-test-cu --dataloss --initiator-name IQN
# --initiator-name-2 IQN-2 --test ALL.Suite URL [URL2]` with the full log in
# DIR/Suite.log. Exit status: 0 when nothing failed (beyond expected
# failures), 1 otherwise, 2 on usage errors. The last line is always
#   conformance: N passed, M failed, K skipped
# where M counts every failed test (expected ones included) plus crashed suites.
set -euo pipefail

DEFAULT_SUITES="ALL"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

urls=()
readonly_url=
suites=$DEFAULT_SUITES
expect_file=
results=
initiator=iqn.2026-11.dev.oxcopy:conformance
suite_timeout=300
while [[ $# -gt 0 ]]; do
    case $1 in
        --suites) suites=${2:?--suites needs a value}; shift 2 ;;
        --expect-file) expect_file=${2:?}; shift 2 ;;
        --readonly-url) readonly_url=${2:?}; shift 2 ;;
        --results) results=${2:?}; shift 2 ;;
        --initiator) initiator=${2:?}; shift 2 ;;
        --timeout) suite_timeout=${2:?}; shift 2 ;;
        -h | --help) usage ;;
        iscsi://*) urls+=("$1"); shift ;;
        *) echo "conformance.sh: unexpected argument: $1" >&2; usage ;;
    esac
done
((${#urls[@]} >= 1 && ${#urls[@]} <= 2)) || usage
command -v iscsi-test-cu >/dev/null || { echo "iscsi-test-cu not installed (apt-get install -y libiscsi-bin)" >&2; exit 2; }
[[ -z $expect_file || -r $expect_file ]] || { echo "cannot read expect file $expect_file" >&2; exit 2; }
[[ -n $results ]] || results=./conformance-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$results"

# Resolve suite names against the tool's own list.
known=$(timeout 30 iscsi-test-cu --list)
resolved=()
for s in $suites; do
    if [[ $s == ALL ]]; then
        mapfile -t -O "${#resolved[@]}" resolved < <(grep -E '^ALL\.[^.]+$' <<<"$known")
        continue
    fi
    [[ $s == *.* ]] || s=ALL.$s
    if ! grep -qxF "$s" <<<"$known"; then
        echo "conformance.sh: unknown suite '$s' (see iscsi-test-cu --list)" >&2
        exit 2
    fi
    resolved+=("$s")
done

# Expected outcomes: "Suite.Test" -> fail|skip.
declare -A expect=()
if [[ -n $expect_file ]]; then
    while read -r name outcome _; do
        [[ -z $name || $name == \#* ]] && continue
        case $outcome in
            fail | skip) expect[$name]=$outcome ;;
            *) echo "conformance.sh: $expect_file: bad outcome '$outcome' for $name" >&2; exit 2 ;;
        esac
    done <"$expect_file"
fi

# Parse one CUnit log into "test<TAB>status<TAB>note" lines (status: passed,
# failed, skipped) plus a final "#summary<TAB>ran<TAB>failed" line when
# CUnit printed its run summary. A test that never reached a status
# (crash, timeout) is reported as failed with note "no result".
parse_log() {
    awk '
    # CUnit prints a test status right after the test body returns: at the
    # start of a line (after the log lines of the test) or straight after
    # "Test: Name ...". Text after the status on that line is teardown output
    # and does not change the outcome.
    function emit(   st, note) {
        if (cur == "") return
        st = status
        if (st == "") { st = "failed"; failnote = "no result (crashed or timed out)" }
        if (st == "passed" && skipped) st = "skipped"
        note = (st == "skipped") ? skipnote : failnote
        printf "%s\t%s\t%s\n", cur, st, note
        cur = ""
    }
    function body(s) {
        if (match(s, /^(passed|FAILED)/)) {
            status = (substr(s, 1, 6) == "passed") ? "passed" : "failed"
            return
        }
        if (s ~ /\[SKIPPED\]/) {
            skipped = 1
            if (skipnote == "") { skipnote = s; sub(/^.*\[SKIPPED\][ \t]*/, "", skipnote) }
        }
        if (s ~ /\[FAILED\]/ && failnote == "") { failnote = s; sub(/^.*\[FAILED\][ \t]*/, "", failnote) }
        # A status glued to the end of a log line written without a newline.
        if (s ~ /(^|[^ \tA-Za-z])passed[ \t]*$/) status = "passed"
        else if (s ~ /(^|[^ \tA-Za-z[])FAILED[ \t]*$/) status = "failed"
    }
    /^  Test: / {
        emit()
        line = $0
        sub(/^  Test: /, "", line)
        i = index(line, " ...")
        cur = (i > 0) ? substr(line, 1, i - 1) : line
        status = ""; skipped = 0; skipnote = ""; failnote = ""
        if (i > 0) body(substr(line, i + 4))
        next
    }
    /^Run Summary:/ { emit(); insum = 1; next }
    insum && $1 == "tests" { ran = $3; tfail = $5; have = 1 }
    cur != "" && status == "" { body($0); next }
    # CUnit lists the failed assertions after FAILED: keep the first one.
    cur != "" && status == "failed" && failnote == "" && /^ +[0-9]+\. / {
        failnote = $0; sub(/^ +/, "", failnote)
    }
    END {
        emit()
        if (have) printf "#summary\t%s\t%s\n", ran, tfail
    }' "$1"
}

tsv=$results/results.tsv
printf 'suite\ttest\tstatus\tnote\n' >"$tsv"
total_pass=0 total_fail=0 total_skip=0 bad=0
declare -a report_lines=()
for s in "${resolved[@]}"; do
    short=${s#ALL.}
    log=$results/$short.log
    echo "=== $s" >&2
    rc=0
    suite_urls=("${urls[@]}")
    [[ $short == ReadOnly && -n $readonly_url ]] && suite_urls=("$readonly_url")
    timeout --kill-after=10 "$suite_timeout" iscsi-test-cu --dataloss \
        --initiator-name "$initiator" --initiator-name-2 "$initiator-2" \
        --test "$s" "${suite_urls[@]}" >"$log" 2>&1 </dev/null || rc=$?
    p=0 f=0 k=0 ran=-1 cufail=0
    failed_names=() skipped_names=()
    while IFS=$'\t' read -r test status note; do
        if [[ $test == '#summary' ]]; then
            ran=$status cufail=$note
            continue
        fi
        name=$short.$test
        exp=${expect[$name]:-}
        case $status in
            passed)
                p=$((p + 1))
                [[ $exp == fail ]] && echo "XPASS: $name passes but is listed as an expected failure" >&2
                ;;
            skipped)
                k=$((k + 1)); skipped_names+=("$test")
                ;;
            failed)
                f=$((f + 1))
                if [[ $exp == fail ]]; then
                    failed_names+=("$test(expected)")
                else
                    failed_names+=("$test")
                    bad=1
                fi
                ;;
        esac
        printf '%s\t%s\t%s\t%s\n' "$short" "$test" "$status" "$note" >>"$tsv"
    done < <(parse_log "$log")
    # Suite-level sanity: a summary must exist, agree with what we parsed,
    # and report at least one test.
    problem=
    sfail=$(awk '/^Run Summary:/{f=1} f && $1=="suites"{print $5; exit}' "$log")
    if ((rc == 124 || rc == 137)); then
        problem="timed out after ${suite_timeout}s"
    elif ((ran < 0)); then
        problem="no CUnit run summary (crashed? exit $rc)"
    elif ((${sfail:-0} > 0)); then
        problem="suite initialisation failed"
    elif ((ran == 0)); then
        problem="ran no tests"
    elif ((cufail != f)); then
        problem="CUnit reports $cufail failed but $f were parsed"
    fi
    if [[ -n $problem ]]; then
        bad=1
        f=$((f + 1))
        failed_names+=("<suite: $problem>")
        printf '%s\t%s\t%s\t%s\n' "$short" "-" "crashed" "$problem" >>"$tsv"
    fi
    total_pass=$((total_pass + p)) total_fail=$((total_fail + f)) total_skip=$((total_skip + k))
    line=$(printf '%-24s passed %3d  failed %3d  skipped %3d' "$short" "$p" "$f" "$k")
    ((${#failed_names[@]})) && line+="  FAILED: ${failed_names[*]}"
    ((${#skipped_names[@]})) && line+="  skipped: ${skipped_names[*]}"
    report_lines+=("$line")
    echo "$line" >&2
done

{
    echo
    echo "per-suite results (logs and results.tsv in $results):"
    printf '%s\n' "${report_lines[@]}"
    echo
    echo "conformance: $total_pass passed, $total_fail failed, $total_skip skipped"
} | tee "$results/summary.txt"
exit "$bad"
