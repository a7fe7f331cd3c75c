//! Builds the XDP program (`xdp-ebpf`) for the BPF target with aya-build; the object is
//! embedded into the controller with `include_bytes_aligned!`. The toolchain is the dated
//! nightly pinned in `xdp-ebpf/rust-toolchain.toml` (`cargo xtask setup` installs it).
include!("../xdp-ebpf/build_pinned.rs");

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../xdp-common/src");
    build_pinned("xdp-ebpf", &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../xdp-ebpf"))
}
