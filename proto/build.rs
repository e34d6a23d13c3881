//! Compiles the .proto files with protox (pure Rust: no system protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "flagd/evaluation/v1/evaluation.proto",
        "flagd/evaluation/v2/evaluation.proto",
        "flagd/sync/v1/sync.proto",
        "rampart/v1/sync.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::SmallCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
