//! Builds the benchmarks' helper XDP programs (`bench/ebpf`: `sipshield_gen`, `sipshield_pass`,
//! `sipshield_drop`) for the BPF target with aya-build; the object is embedded into the
//! benchmarks with `include_bytes_aligned!` and loaded by them, never by the controller. The
//! toolchain is the dated nightly pinned in `bench/ebpf/rust-toolchain.toml`.
fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ebpf");
    let root = root.canonicalize()?;
    let toolchain = pinned_toolchain(&root)?;
    let root = root.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "sipshield-bench-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}

/// `channel` of `DIR/rust-toolchain.toml`.
fn pinned_toolchain(dir: &std::path::Path) -> anyhow::Result<String> {
    let file = dir.join("rust-toolchain.toml");
    println!("cargo:rerun-if-changed={}", file.display());
    let text = std::fs::read_to_string(&file)?;
    text.lines()
        .find_map(|l| Some(l.trim().strip_prefix("channel")?.trim_start().strip_prefix('=')?.trim().trim_matches('"')))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("{}: no `channel = \"...\"` line", file.display()))
}
