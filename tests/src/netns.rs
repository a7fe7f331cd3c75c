//! Network namespaces for the tests, the benchmarks and the demo: the one fixture.
//!
//! * [`Netns`]: a namespace made with `ip netns add`, deleted on drop (so also when a test
//!   panics); commands and threads enter it with `setns(2)`, the way `nsenter --net=` does. The
//!   mount namespace stays the host's, so the pinned BPF objects under `/sys/fs/bpf` remain
//!   visible (`ip netns exec` remounts `/sys` and would hide them).
//! * [`veth`]: two namespaces joined by a veth pair created directly inside them; the root
//!   namespace never holds an end, an address or a route.
//! * [`NetnsPair`]: the tests' client/server pair with documentation addresses and send
//!   helpers.
//! * [`remove_leftovers`]: namespaces named `<prefix><pid>-…` whose process was killed.
use std::ffi::OsStr;
use std::fs::File;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::{setns, CloneFlags};

/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// `/run/netns/<name>`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn ip_cmd(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().context("running ip")?;
    if !out.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn delete(name: &str) -> bool {
    Command::new("ip")
        .args(["netns", "del", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A command whose child joins the namespace file `ns` before exec.
fn command_in(ns: std::io::Result<File>, label: String, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    // SAFETY: only setns(2) runs between fork and exec; the namespace file stays open in the
    // child until exec (it is close-on-exec).
    unsafe {
        c.pre_exec(move || match &ns {
            Ok(f) => setns(f, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from),
            Err(e) => Err(std::io::Error::new(e.kind(), format!("opening {label}: {e}"))),
        });
    }
    c
}

/// Run `f` on a thread that joined the namespace file `ns`; a panic in `f` is resumed here.
fn enter_file<R: Send>(ns: &File, label: &str, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            setns(ns, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns into {label}: {e}"));
            f()
        });
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// A network namespace this process created; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// The name under `/run/netns`.
    pub name: String,
    file: File,
}

impl Netns {
    /// `ip netns add <name>`, after removing a leftover namespace of the same name.
    pub fn create(name: &str) -> Result<Netns> {
        if name.is_empty() || name.contains('/') {
            bail!("bad namespace name {name:?}");
        }
        delete(name);
        ip_cmd(&["netns", "add", name])?;
        match File::open(path(name)) {
            Ok(file) => Ok(Netns { name: name.to_string(), file }),
            Err(e) => {
                delete(name);
                Err(anyhow!("opening {}: {e}", path(name).display()))
            }
        }
    }

    pub fn path(&self) -> PathBuf {
        path(&self.name)
    }

    /// `program` run inside the namespace (set up with [`Command`]'s builder calls).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        command_in(self.file.try_clone(), self.name.clone(), program)
    }

    /// `program args…` run inside the namespace.
    pub fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut c = self.command(program);
        c.args(args);
        c
    }

    /// Run `program args…` inside; its stdout, or an error with its stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self
            .cmd(program, args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program} in {}", self.name))?;
        if !out.status.success() {
            bail!(
                "{program} {} (netns {}) failed: {}",
                args.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Add an address to an interface of the namespace (IPv6 without duplicate detection, so
    /// it is usable at once).
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        let mut args = vec!["addr", "add", cidr, "dev", ifname];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.run("ip", &args).map(|_| ())
    }

    /// Run `f` on a thread inside the namespace and return its result (`f` may borrow).
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        enter_file(&self.file, &self.name, f)
    }

    /// Start `f` on a thread inside the namespace (listeners, senders running alongside).
    pub fn spawn<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> std::thread::JoinHandle<R> {
        let file = self.file.try_clone().expect("dup of the namespace fd");
        let name = self.name.clone();
        std::thread::spawn(move || enter_file(&file, &name, f))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete(&self.name);
    }
}

/// Join `a` and `b` with a veth pair created inside them (`a_if` in `a`, `b_if` in `b`) and bring
/// both ends and both loopbacks up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    ip_cmd(&["link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns", &b.name])?;
    for (ns, ifn) in [(a, a_if), (b, b_if)] {
        ns.run("ip", &["link", "set", "lo", "up"])?;
        ns.run("ip", &["link", "set", ifn, "up"])?;
    }
    Ok(())
}

/// Delete the namespaces `<prefix><pid>-…` whose process no longer exists (left by a run that
/// was killed). Touches nothing else.
pub fn remove_leftovers(prefix: &str) {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else { return };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        let Some((pid, _)) = rest.split_once('-') else { continue };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        eprintln!("removing leftover namespace {name} (its process {pid} is gone)");
        delete(&name);
    }
}

/// Two namespaces joined by a veth pair: `client` (198.51.100.1/24 and 2001:db8::1/64, plus
/// what [`Self::add_client_addr`] adds, on `vcli`) and `server` (198.51.100.2/24 and
/// 2001:db8::2/64 on `vsrv`). Both are deleted on drop.
pub struct NetnsPair {
    /// Namespace names (what `Controller::start`, [`Self::in_ns`] and [`Self::command`] take).
    pub client: String,
    pub server: String,
    pub client_if: String,
    pub server_if: String,
    client_ns: Netns,
    server_ns: Netns,
}

impl NetnsPair {
    /// The tests' pair, named `sst-<pid>-<tag>-{cli,srv}`; panics if it cannot be made.
    pub fn new(tag: &str) -> NetnsPair {
        let make = || -> Result<NetnsPair> {
            remove_leftovers("sst-");
            let id = format!("sst-{}-{tag}", std::process::id());
            let p = NetnsPair::create(&format!("{id}-cli"), &format!("{id}-srv"), "vcli", "vsrv")?;
            for a in ["198.51.100.1/24", "2001:db8::1/64"] {
                p.client_ns.add_addr(&p.client_if, a)?;
            }
            for a in ["198.51.100.2/24", "2001:db8::2/64"] {
                p.server_ns.add_addr(&p.server_if, a)?;
            }
            Ok(p)
        };
        make().unwrap_or_else(|e| panic!("network namespaces for {tag}: {e:#}"))
    }

    /// Namespaces `client` and `server` joined by a veth pair `client_if` - `server_if`, links
    /// up, no addresses.
    pub fn create(client: &str, server: &str, client_if: &str, server_if: &str) -> Result<NetnsPair> {
        let client_ns = Netns::create(client)?;
        let server_ns = Netns::create(server)?;
        veth(&client_ns, client_if, &server_ns, server_if)?;
        Ok(NetnsPair {
            client: client.into(),
            server: server.into(),
            client_if: client_if.into(),
            server_if: server_if.into(),
            client_ns,
            server_ns,
        })
    }

    pub fn client_ns(&self) -> &Netns {
        &self.client_ns
    }

    pub fn server_ns(&self) -> &Netns {
        &self.server_ns
    }

    /// Add another source address to the client side.
    pub fn add_client_addr(&self, cidr: &str) {
        self.client_ns.add_addr(&self.client_if, cidr).unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Send UDP datagrams from `src` (an address of the client namespace) to `dst:port`.
    pub fn send_udp(&self, src: IpAddr, dst: IpAddr, port: u16, payloads: Vec<Vec<u8>>) {
        self.client_ns.enter(move || {
            let sock = std::net::UdpSocket::bind((src, 0)).unwrap_or_else(|e| panic!("bind {src}: {e}"));
            for p in payloads {
                sock.send_to(&p, (dst, port)).expect("send");
            }
        })
    }

    pub fn ns_path(ns: &str) -> String {
        path(ns).display().to_string()
    }

    /// Run `f` on a thread that has entered namespace `ns` (by name).
    pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        let file = File::open(path(ns)).unwrap_or_else(|e| panic!("{}: {e}", path(ns).display()));
        enter_file(&file, ns, f)
    }

    /// `program` run inside namespace `ns` (by name).
    pub fn command(ns: &str, program: &Path) -> Command {
        command_in(File::open(path(ns)), path(ns).display().to_string(), program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        crate::require_root("netns fixture")
    }

    #[test]
    fn pair_lives_until_dropped_even_after_a_panic() {
        if !root() {
            return;
        }
        let names = std::sync::Mutex::new(vec![]);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let p = NetnsPair::new("kit");
            names.lock().unwrap().extend([p.client.clone(), p.server.clone()]);
            // Both ends are up with their addresses; the client reaches the server.
            let got = NetnsPair::in_ns(&p.server, || {
                let s = std::net::UdpSocket::bind("198.51.100.2:5999").unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
                p.send_udp("198.51.100.1".parse().unwrap(), "198.51.100.2".parse().unwrap(), 5999, vec![b"x".to_vec()]);
                let mut b = [0u8; 8];
                s.recv_from(&mut b).map(|(n, a)| (n, a.ip())).unwrap()
            });
            assert_eq!(got, (1, "198.51.100.1".parse::<IpAddr>().unwrap()));
            // Commands see the host's bpffs (setns, not `ip netns exec`).
            let mounts = NetnsPair::command(&p.server, Path::new("cat")).arg("/proc/self/mounts").output().unwrap();
            assert!(String::from_utf8_lossy(&mounts.stdout).contains(" /sys/fs/bpf bpf "));
            panic!("a failing test");
        }));
        assert!(r.is_err());
        for n in names.lock().unwrap().iter() {
            assert!(!path(n).exists(), "{n} survived the panic");
        }
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed() {
        if !root() {
            return;
        }
        // A pid that cannot be running (above pid_max).
        let stale = Netns::create("sskit-4999999-x").unwrap();
        let own = Netns::create(&format!("sskit-{}-y", std::process::id())).unwrap();
        std::mem::forget(stale);
        remove_leftovers("sskit-");
        assert!(!path("sskit-4999999-x").exists());
        assert!(own.path().exists(), "a live process's namespace stays");
    }
}
