//! Builds the benchmarks' helper XDP programs (`bench/ebpf`: `sipshield_gen`, `sipshield_pass`,
//! `sipshield_drop`) for the BPF target with aya-build; the object is embedded into the
//! benchmarks with `include_bytes_aligned!` and loaded by them, never by the controller.
fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ebpf");
    let root = root.canonicalize()?;
    let root = root.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "sipshield-bench-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::Nightly,
    )
}
