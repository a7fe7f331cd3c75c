//! Builds the benchmarks' helper XDP programs (`bench/ebpf`: `sipshield_gen`, `sipshield_pass`,
//! `sipshield_drop`) for the BPF target with aya-build; the object is embedded into the
//! benchmarks with `include_bytes_aligned!` and loaded by them, never by the controller. The
//! toolchain is the dated nightly pinned in `bench/ebpf/rust-toolchain.toml`.
include!("../xdp-ebpf/build_pinned.rs");

fn main() -> anyhow::Result<()> {
    build_pinned("sipshield-bench-ebpf", &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ebpf"))
}
