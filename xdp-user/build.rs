//! Builds the XDP program (`xdp-ebpf`) for the BPF target with aya-build; the object is
//! embedded into the controller with `include_bytes_aligned!`.
fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../xdp-ebpf");
    let root = root.canonicalize()?;
    let root = root.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    println!("cargo:rerun-if-changed=../xdp-common/src");
    aya_build::build_ebpf(
        [aya_build::Package { name: "xdp-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::Nightly,
    )
}
