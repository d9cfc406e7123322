#!/usr/bin/env bash
# The project's checks, in the order a failure is cheapest to see. CI runs this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done
uname -r
cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || true

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --all-targets -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

step "tests (the README's test command)"
cargo test

step "main job (the README's run command, smaller)"
cargo run --release --example stream -- --messages 1000000

step "soak (1 minute)"
cargo run --release --example soak -- --seconds 60

step "decoder fuzz driver (60 s) and random bytes on a live listener (30 s)"
BUFFSTREAMS_FUZZ_SECS=60 BUFFSTREAMS_RANDOM_SECS=30 \
  cargo test --test fuzz_decoder --test random_bytes -- --nocapture

if [ -f benches/throughput/main.rs ] && grep -q -- "--quick" benches/throughput/*.rs; then
  step "benchmark smoke test"
  timeout 300 cargo bench --bench throughput -- --quick
fi
