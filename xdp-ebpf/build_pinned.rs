// Shared by the build scripts that compile an eBPF crate (xdp-user/build.rs for xdp-ebpf,
// bench/build.rs for bench/ebpf) with `include!`: two build scripts of separate crates cannot
// share a module otherwise.

/// Build the eBPF package `name` at `root` with aya-build and the dated nightly pinned in
/// `root/rust-toolchain.toml` (`cargo xtask setup` installs it).
fn build_pinned(name: &str, root: &std::path::Path) -> anyhow::Result<()> {
    let root = root.canonicalize()?;
    let toolchain = pinned_toolchain(&root)?;
    let root = root.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package { name, root_dir: root, ..Default::default() }],
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
