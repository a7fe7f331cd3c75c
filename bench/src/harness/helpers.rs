//! The XDP programs the benchmarks run: sipshield's own (the filter's), and the helpers of the
//! benchmarks' object (`bench/ebpf`, built by `bench/build.rs`, never loaded by the
//! controller): `sipshield_gen` (the live-frames generator), `sipshield_pass` (the empty
//! program) and `sipshield_drop` (the harness floor's receiver).
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use sipshield::filter::Filter;

use super::testbed::{Testbed, RX_IF};

/// An XDP program a benchmark runs or attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prog {
    /// sipshield's program, from the [`Filter`].
    Sipshield,
    /// A program of the benchmarks' helper object, by name.
    Helper(&'static str),
}

/// `bpf_redirect` of every frame to the ifindex in its map `GEN_IFINDEX` (see [`set_gen_ifindex`]).
pub const GEN: Prog = Prog::Helper("sipshield_gen");
/// `return XDP_PASS`: the per-packet cost baseline, and the program that gives a veth NAPI for
/// redirected frames while a peer (nftables, iptables) is measured.
pub const EMPTY: Prog = Prog::Helper("sipshield_pass");
/// `return XDP_DROP` (2 instructions): the receiver of the harness floor.
pub const DROP: Prog = Prog::Helper("sipshield_drop");

impl Prog {
    pub fn name(self) -> &'static str {
        match self {
            Prog::Sipshield => sipshield::filter::PROGRAM_NAME,
            Prog::Helper(n) => n,
        }
    }
}

/// What holds the programs: a [`Filter`] (sipshield and the helpers) or [`HelpersOnly`].
pub trait XdpHost {
    /// Run `f` on `prog`, loaded.
    fn with_xdp<R>(&mut self, prog: Prog, f: impl FnOnce(&mut Xdp) -> Result<R>) -> Result<R>;
}

impl XdpHost for Filter {
    fn with_xdp<R>(&mut self, prog: Prog, f: impl FnOnce(&mut Xdp) -> Result<R>) -> Result<R> {
        match prog {
            Prog::Sipshield => f(self.program()?),
            Prog::Helper(name) => with_helper(name, f),
        }
    }
}

/// The helper programs alone, when no sipshield filter is involved.
pub struct HelpersOnly;

impl XdpHost for HelpersOnly {
    fn with_xdp<R>(&mut self, prog: Prog, f: impl FnOnce(&mut Xdp) -> Result<R>) -> Result<R> {
        match prog {
            Prog::Sipshield => bail!("no sipshield filter here"),
            Prog::Helper(name) => with_helper(name, f),
        }
    }
}

/// Attach `prog` natively (driver mode) on the receiver veth, run `f`, detach (also when `f`
/// fails).
pub fn with_attached<H: XdpHost + Send, R>(
    tb: &Testbed,
    host: &mut H,
    prog: Prog,
    f: impl FnOnce(&mut H) -> Result<R>,
) -> Result<R> {
    let ifindex = tb.rx_if.ifindex;
    let link = tb.rx.enter(|| {
        host.with_xdp(prog, |p| {
            p.attach_to_if_index(ifindex, XdpMode::Driver)
                .map_err(|e| anyhow!("attaching {} natively to {RX_IF}: {e:#}", prog.name()))
        })
    })?;
    let r = f(host);
    let d = host.with_xdp(prog, |p| p.detach(link).map_err(|e| anyhow!("detach: {e:#}")));
    let r = r?;
    d?;
    Ok(r)
}

/// The benchmarks' helper object.
static HELPER_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipshield-bench-xdp"));

/// The helper object, loaded on first use and kept for the whole run.
static HELPERS: Mutex<Option<Ebpf>> = Mutex::new(None);

/// Run `f` on the helper object, loading it on first use.
fn with_helpers<R>(f: impl FnOnce(&mut Ebpf) -> Result<R>) -> Result<R> {
    let mut helpers = HELPERS.lock().map_err(|_| anyhow!("helper object lock poisoned"))?;
    if helpers.is_none() {
        *helpers = Some(Ebpf::load(HELPER_OBJECT).context("loading the benchmark helper object")?);
    }
    f(helpers.as_mut().expect("loaded above"))
}

/// Run `f` on the helper program `name`, loading it on first use.
fn with_helper<R>(name: &str, f: impl FnOnce(&mut Xdp) -> Result<R>) -> Result<R> {
    with_helpers(|ebpf| {
        let prog: &mut Xdp =
            ebpf.program_mut(name).ok_or_else(|| anyhow!("the helper object has no program {name}"))?.try_into()?;
        if prog.fd().is_err() {
            prog.load().with_context(|| format!("loading the helper program {name}"))?;
        }
        f(prog)
    })
}

/// Point [`GEN`] at `ifindex` (its map `GEN_IFINDEX`).
pub fn set_gen_ifindex(ifindex: u32) -> Result<()> {
    with_helpers(|ebpf| {
        let map = ebpf.map_mut("GEN_IFINDEX").ok_or_else(|| anyhow!("the helper object has no map GEN_IFINDEX"))?;
        let mut a: aya::maps::Array<_, u32> = aya::maps::Array::try_from(map)?;
        a.set(0, ifindex, 0)?;
        Ok(())
    })
}

/// Make [`GEN`] cycle through `sources` (IPv4, host order) as the frames' source addresses
/// (header checksums updated); an empty slice turns it off. At most 2^20 sources.
pub fn set_gen_sources(sources: &[u32]) -> Result<()> {
    with_helpers(|ebpf| {
        let mut pool: aya::maps::Array<_, u32> =
            aya::maps::Array::try_from(ebpf.map_mut("GEN_SRC").ok_or_else(|| anyhow!("no map GEN_SRC"))?)?;
        if sources.len() > pool.len() as usize {
            anyhow::bail!("{} sources, the generator holds at most {}", sources.len(), pool.len());
        }
        for (i, a) in sources.iter().enumerate() {
            // The program copies the value's bytes into the frame: they must be the address in
            // network order.
            pool.set(i as u32, u32::from_ne_bytes(a.to_be_bytes()), 0)?;
        }
        let mut n: aya::maps::Array<_, u32> =
            aya::maps::Array::try_from(ebpf.map_mut("GEN_SRC_N").ok_or_else(|| anyhow!("no map GEN_SRC_N"))?)?;
        n.set(0, sources.len() as u32, 0)?;
        Ok(())
    })
}
