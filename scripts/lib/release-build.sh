# shellcheck shell=bash
# Sourced by bench/*.sh and examples/demo.sh: the release binaries, built by one and the same
# cargo command in every script. A different package selection is a different build (features
# unify per selection), so with one command the second script finds everything up to date
# instead of spending minutes on its own release build.
#
# release_binaries NAME...   NAME: sgr, runner, fake-kube, fake-github (what the script runs)
#   Sets SGR, RUNNER, FAKE_KUBE and FAKE_GITHUB to the binaries in the release directory of the
#   target directory (CARGO_TARGET_DIR, else ROOT/target; ROOT is the checkout). SGR_BENCH_BIN
#   (or SGR_BENCH_BINARY, bench/build.sh's older name) names an sgr built beforehand: SGR is
#   then that file, and a script that needs nothing else runs no cargo at all.

# sgr-test-support is in the selection for the test servers release.sh and k8s-logs.sh drive.
RELEASE_BUILD=(cargo build --release --locked -p sgr -p runner -p sgr-test-support)

release_binaries() {
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    case $target in
        /*) ;;
        *) target=$PWD/$target ;; # cargo reads a relative CARGO_TARGET_DIR from the working directory
    esac
    local prebuilt=${SGR_BENCH_BIN:-${SGR_BENCH_BINARY:-}}
    local name build=0
    for name in "$@"; do
        case $name in
            sgr) [ -n "$prebuilt" ] || build=1 ;;
            runner | fake-kube | fake-github) build=1 ;;
            *)
                echo "release_binaries: no binary named '$name' (sgr, runner, fake-kube, fake-github)" >&2
                return 2
                ;;
        esac
    done
    if [ "$build" = 1 ]; then
        "${RELEASE_BUILD[@]}" --manifest-path "$ROOT/Cargo.toml" >&2
    fi
    # shellcheck disable=SC2034 # read by the scripts that source this file
    {
        SGR=${prebuilt:-$target/release/sgr}
        RUNNER=$target/release/runner
        FAKE_KUBE=$target/release/fake-kube
        FAKE_GITHUB=$target/release/fake-github
    }
}
