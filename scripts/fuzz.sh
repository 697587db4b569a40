#!/usr/bin/env bash
# Fuzzes hostile input for a bounded time (issue 7): the signed webhook body and the audio
# decoder, with cargo-fuzz (libFuzzer) on stable Rust.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      # default: 60 s, every target
#
# Targets live in fuzz/ (a workspace of its own); their checks in fuzz/checks. Each
# target starts from its committed seeds (fuzz/seeds/<target>) plus the corpus earlier runs
# grew (fuzz/corpus/<target>, not committed). A crash, timeout (> 10 s for one input),
# out-of-memory (> 2 GB RSS, or one allocation > 512 MB) or leak stops the run: the input is
# copied to fuzz/regressions/<target>/, which the normal test suite replays
# (tests/tests/fuzz_regressions.rs), and the script exits non-zero.
#
# Stable Rust: cargo-fuzz needs unstable compiler flags (-Zsanitizer), allowed here with
# RUSTC_BOOTSTRAP=1. AddressSanitizer is used when its runtime works with this toolchain
# (checked first), otherwise the targets are built without a sanitizer and the script says
# so. Builds go to their own target dir (the sanitizer flags differ from normal builds):
# $REMEDIOS_FUZZ_TARGET_DIR, default ~/.cache/remedios/fuzz-target.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(webhook_body audio_decode)
fi
case "$SECONDS_PER_TARGET" in
    '' | *[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, not '$SECONDS_PER_TARGET'" >&2; exit 2 ;;
esac

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${REMEDIOS_FUZZ_TARGET_DIR:-$HOME/.cache/remedios/fuzz-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
NICE=(nice -n "${REMEDIOS_FUZZ_NICE:-10}")

step() { printf '\n==> %s\n' "$*" >&2; }

# Longest input per target, and the bounds every input is held to.
max_len() {
    case "$1" in
        webhook_body) echo 16384 ;;  # Meta's notifications are a few KB
        audio_decode) echo 65536 ;;  # the audio seeds are < 50 KB
        *) echo 16384 ;;
    esac
}
LIBFUZZER_FLAGS=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    step "installing cargo-fuzz"
    "${NICE[@]}" cargo install cargo-fuzz --locked
fi

# Does AddressSanitizer work with this (stable) toolchain? Build a tiny program that reads
# past the end of a heap buffer, and check that ASan catches it.
SANITIZER="${REMEDIOS_FUZZ_SANITIZER:-}"
if [ -z "$SANITIZER" ]; then
    probe="$(mktemp -d)"
    cat >"$probe/asan.rs" <<'RUST'
fn main() {
    let v = vec![1u8; 8];
    let i = std::env::args().count() + 8;
    println!("{}", unsafe { *v.as_ptr().add(i) });
}
RUST
    host="$(rustc -vV | sed -n 's/^host: //p')"
    if rustc -Zsanitizer=address --target "$host" -o "$probe/asan" "$probe/asan.rs" >"$probe/log" 2>&1 &&
        { "$probe/asan" >>"$probe/log" 2>&1; grep -q 'AddressSanitizer: heap-buffer-overflow' "$probe/log"; }; then
        SANITIZER=address
    else
        SANITIZER=none
        echo "fuzz.sh: AddressSanitizer does not work with $(rustc --version); fuzzing WITHOUT a sanitizer" >&2
        sed 's/^/    /' "$probe/log" >&2
    fi
    rm -rf "$probe"
fi
FUZZ_OPTS=(--fuzz-dir fuzz --sanitizer "$SANITIZER")

step "building ${TARGETS[*]} ($(rustc --version), sanitizer: $SANITIZER, target dir: $CARGO_TARGET_DIR)"
build_started=$SECONDS
for target in "${TARGETS[@]}"; do
    "${NICE[@]}" cargo fuzz build "${FUZZ_OPTS[@]}" "$target"
done
echo "fuzz.sh: built in $((SECONDS - build_started)) s" >&2

failed=()
summary=()
for target in "${TARGETS[@]}"; do
    corpus="fuzz/corpus/$target"
    seeds="fuzz/seeds/$target"
    artifacts="fuzz/artifacts/$target"
    mkdir -p "$corpus" "$seeds" "$artifacts" "fuzz/regressions/$target"
    log="$(mktemp -t "fuzz-$target.XXXXXX.log")"
    step "fuzzing $target for $SECONDS_PER_TARGET s (log: $log)"
    before="$(find "$artifacts" -type f | sort)"
    set +e
    "${NICE[@]}" cargo fuzz run "${FUZZ_OPTS[@]}" "$target" "$corpus" "$seeds" -- \
        "${LIBFUZZER_FLAGS[@]}" -max_len="$(max_len "$target")" \
        -max_total_time="$SECONDS_PER_TARGET" \
        2>&1 | tee "$log" |
        { grep --line-buffered -E 'INITED|pulse|DONE|ERROR|SUMMARY|panicked|deadly|Test unit written|Failing input|tolerated panic #1 ' || true; }
    status=${PIPESTATUS[0]}
    set -e
    stats="$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -E 's/^#([0-9]+)[[:space:]]+[A-Z]+[[:space:]]+/execs: \1 /' || true)"
    summary+=("$target: exit $status; $stats")
    new="$(comm -13 <(echo "$before") <(find "$artifacts" -type f | sort) | grep -v '/slow-unit-' || true)"
    if [ "$status" -ne 0 ] || [ -n "$new" ]; then
        failed+=("$target")
        for input in $new; do
            cp "$input" "fuzz/regressions/$target/"
            echo "fuzz.sh: $target: kept $(basename "$input") as fuzz/regressions/$target/$(basename "$input")" >&2
        done
        echo "fuzz.sh: $target FAILED (exit $status); reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz $target <input>" >&2
    fi
done

step "summary ($SECONDS_PER_TARGET s per target)"
printf '  %s\n' "${summary[@]}" >&2
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz.sh: failures in: ${failed[*]}; the inputs are in fuzz/regressions/ (add them to git)" >&2
    exit 1
fi
echo "fuzz.sh: no crash" >&2
