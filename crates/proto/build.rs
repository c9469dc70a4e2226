//! Compiles proto/ with protox (pure Rust, so no `protoc` is needed) and tonic.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): the compiled build script is reused from a shared
    // target directory by other checkouts, which must compile their own proto files.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "tessera/data/v1/data.proto",
        "tessera/meta/v1/meta.proto",
        "tessera/raft/v1/raft.proto",
    ];
    let descriptors = protox::compile(files, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".tessera.data.v1")
        .compile_fds(descriptors)?;
    for file in files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    Ok(())
}
