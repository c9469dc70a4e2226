# Sourced by the scripts: one shared target directory outside the clone, so the RocksDB
# bindings and every dependency are built once per machine and reused by tests and `tessera dev`.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
mkdir -p "$CARGO_TARGET_DIR"
