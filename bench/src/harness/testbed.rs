//! Where the benchmarks run: throwaway network namespaces (the test kit's [`Netns`]), the
//! live benchmarks' two-namespace veth testbed, and commands run under a time limit.
//!
//! Nothing here touches the root namespace: the veth pair is created directly inside the two
//! namespaces, with documentation addresses, and dropping a namespace removes everything in it.
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
pub use sipshield_tests::netns::{self, Netns};

/// Generator side address and receiver address (TEST-NET-2); the receiver address is local to
/// the receiving namespace so frames addressed to it reach PREROUTING.
pub const GEN_ADDR: &str = "198.51.100.1";
pub const RX_ADDR: &str = "198.51.100.2";
pub const GEN_IF: &str = "ssb-gen";
pub const RX_IF: &str = "ssb-rx";

/// An interface as `ip -j link` reports it.
#[derive(Clone, Debug)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

fn iface(ns: &Netns, name: &str) -> Result<Iface> {
    let out = ns.run("ip", &["-j", "link", "show", "dev", name])?;
    let v: Value = serde_json::from_str(&out).context("parsing ip -j link")?;
    let l = v.get(0).ok_or_else(|| anyhow!("no interface {name} in {}", ns.name))?;
    let ifindex = l["ifindex"].as_u64().ok_or_else(|| anyhow!("{name}: no ifindex"))? as u32;
    let addr = l["address"].as_str().ok_or_else(|| anyhow!("{name}: no address"))?;
    let mut mac = [0u8; 6];
    for (i, p) in addr.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(p, 16).with_context(|| format!("MAC {addr}"))?;
    }
    Ok(Iface { name: name.to_string(), ifindex, mac })
}

/// Generator namespace (`gen`, veth end [`GEN_IF`] with [`GEN_ADDR`]) and receiver namespace
/// (`rx`, veth end [`RX_IF`] with [`RX_ADDR`]), `ssbench-<tag>-<pid>-{gen,rx}`. Dropping it
/// deletes both namespaces, which destroys the veth pair and everything attached to it.
pub struct Testbed {
    pub gen: Netns,
    pub rx: Netns,
    pub gen_if: Iface,
    pub rx_if: Iface,
}

impl Testbed {
    pub fn create(tag: &str) -> Result<Testbed> {
        netns::remove_leftovers(&format!("ssbench-{tag}-"));
        let pid = std::process::id();
        let gen = Netns::create(&format!("ssbench-{tag}-{pid}-gen"))?;
        let rx = Netns::create(&format!("ssbench-{tag}-{pid}-rx"))?;
        netns::veth(&gen, GEN_IF, &rx, RX_IF)?;
        gen.add_addr(GEN_IF, &format!("{GEN_ADDR}/24"))?;
        rx.add_addr(RX_IF, &format!("{RX_ADDR}/24"))?;
        let gen_if = iface(&gen, GEN_IF)?;
        let rx_if = iface(&rx, RX_IF)?;
        Ok(Testbed { gen, rx, gen_if, rx_if })
    }

    /// Packets received by the receiving veth (`ip -s -j link`: rx packets; frames an XDP
    /// program dropped are counted too).
    pub fn rx_packets(&self) -> Result<u64> {
        let out = self.rx.run("ip", &["-s", "-j", "link", "show", "dev", RX_IF])?;
        let v: Value = serde_json::from_str(&out)?;
        Ok(v[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0))
    }

    /// (generator MAC, receiver MAC): the Ethernet addresses of frames sent over the pair.
    pub fn macs(&self) -> ([u8; 6], [u8; 6]) {
        (self.gen_if.mac, self.rx_if.mac)
    }
}

/// What a time-limited command reads on stdin.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Null,
    File(&'a Path),
    Bytes(&'a [u8]),
}

/// Run `cmd` (e.g. [`Netns::cmd`]) with `input` on stdin, killing it after `timeout`; returns
/// (seconds until it exited, stdout). stdout and stderr are drained by threads, so a chatty
/// command cannot block on a full pipe. `tag` names the command in errors.
pub fn run_limited(mut cmd: Command, input: Input<'_>, tag: &str, timeout: Duration) -> Result<(f64, String)> {
    cmd.stdin(match input {
        Input::Null => Stdio::null(),
        Input::File(p) => Stdio::from(std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?),
        Input::Bytes(_) => Stdio::piped(),
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {tag}"))?;
    let writer = match (input, child.stdin.take()) {
        (Input::Bytes(b), Some(mut stdin)) => {
            let data = b.to_vec();
            Some(std::thread::spawn(move || drop(stdin.write_all(&data))))
        }
        _ => None,
    };
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_limited(&mut child, timeout, tag);
    let secs = t.elapsed().as_secs_f64();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let (stdout, stderr) = (joined(out), joined(err));
    let status = status?;
    if !status.success() {
        let err: String = stderr.lines().take(10).collect::<Vec<_>>().join("\n");
        bail!("{tag} failed ({status}): {err}");
    }
    Ok((secs, stdout))
}

fn wait_limited(child: &mut Child, timeout: Duration, tag: &str) -> Result<ExitStatus> {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if t.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{tag}: no result after {} s (killed)", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<String>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

fn joined(h: Option<JoinHandle<String>>) -> String {
    h.and_then(|h| h.join().ok()).unwrap_or_default()
}
