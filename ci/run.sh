#!/usr/bin/env bash
# The project's checks, in the order a failure is cheapest to see. CI runs this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s (%s s)\n' "$*" "$SECONDS"; }

step "toolchain"
cargo --version
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done
uname -r
cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || true

step "python protobuf for the interop tests (a virtual environment under target/)"
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" 2>/dev/null; then
  (apt-get update -qq && apt-get install -y -qq python3 python3-venv) >/dev/null
fi
VENV=target/ci-venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "protobuf>=5.28"
export BUFFSTREAMS_PYTHON="$PWD/$VENV/bin/python"
export BUFFSTREAMS_REQUIRE_INTEROP=1
# Tests that skip without io_uring, root or 2 CPUs must run in CI.
export BUFFSTREAMS_REQUIRE_IO_URING=1

step "format"
cargo fmt --all -- --check

step "no import cycle between files of src/ and frame/src/"
python3 ci/check_imports.py src
python3 ci/check_imports.py frame/src

step "lint (the workspace; the frame crate also without its default mmap feature)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo clippy -p buffstreams-frame --all-targets --no-default-features -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet

step "packages: what each ships, and a dry-run publish of the workspace"
cargo package --workspace --list --allow-dirty >/dev/null
main_files=$(cargo package --list --allow-dirty -p buffstreams)
frame_files=$(cargo package --list --allow-dirty -p buffstreams-frame)
echo "buffstreams: $(wc -l <<<"$main_files") files"
echo "buffstreams-frame: $(wc -l <<<"$frame_files") files"
# buffstreams leaves out the frame crate (published on its own), benchmark logs and CI tooling;
# buffstreams-frame ships its sources, README and manifest only.
if grep -E '^(frame|ci|\.ci|fuzz)/|^docs/bench-|\.log$' <<<"$main_files"; then
  echo "the buffstreams package ships the files above" >&2
  exit 1
fi
if grep -vE '^(src/.*\.rs|README\.md|Cargo\.(toml|toml\.orig|lock)|\.cargo_vcs_info\.json)$' <<<"$frame_files"; then
  echo "the buffstreams-frame package ships the files above" >&2
  exit 1
fi
cargo publish --workspace --dry-run --allow-dirty

step "tests (the README's test command), and the frame crate without its default mmap feature"
cargo test --workspace --all-features
cargo test -p buffstreams-frame --no-default-features

step "loom models of the core hand-off (src/engine/doorbell.rs) and the send hand-off (src/engine/send/queue/owner.rs)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --manifest-path ci/loom/Cargo.toml

step "main job (the README's run command, smaller) and the other examples"
cargo run --release --example stream -- --messages 1000000
cargo run --release --features prost --example protobuf -- 100000
cargo run --release --example tokio_app -- 100000

step "soak (40 s plain, 40 s acknowledged)"
cargo run --release --example soak -- --seconds 40
cargo run --release --example soak -- --seconds 40 --acked

step "decoder fuzz driver (45 s) and random bytes on a live listener (30 s)"
BUFFSTREAMS_FUZZ_SECS=45 BUFFSTREAMS_RANDOM_SECS=30 \
  cargo test --all-features --test fuzz_decoder --test random_bytes -- --nocapture

if [ -f benches/throughput/main.rs ] && grep -q -- "--quick" benches/throughput/*.rs; then
  step "benchmark smoke test"
  timeout 300 cargo bench --features tokio-uring,monoio,tls --bench throughput -- --quick
  step "unix socket benchmark smoke test"
  timeout 120 cargo bench --bench unix -- --quick --rounds 2
  step "TLS handshake flood smoke test"
  timeout 120 cargo bench --features tokio-uring,monoio,tls --bench tls_flood -- --quick
  step "kernel feature smoke test"
  timeout 120 cargo bench --bench kernel_features -- --quick
fi
step "done"
