//! A real CrowdSec Local API (Debian's `crowdsec`) for the tests: self-contained (SQLite in a
//! scratch directory, no hub, no central API), listening inside a network namespace the test
//! made; `cscli` runs against it there. Killed on drop. (The recipe of `../shared/RECIPES.md`,
//! in Rust so CI needs nothing outside the repository.)
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::Netns;

pub struct Lapi {
    pub dir: PathBuf,
    pub port: u16,
    pub bouncer_key: String,
    ns_name: String,
    ns: std::fs::File,
    child: Option<Child>,
}

/// A free TCP port inside `ns` (the namespace is the test's own; asked of the kernel anyway).
fn free_port(ns: &Netns) -> u16 {
    ns.enter(|| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()))
        .expect("a free port in the namespace")
}

fn config_yaml(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "common:
  daemonize: false
  log_media: file
  log_level: info
  log_dir: {d}/
  working_dir: .
config_paths:
  config_dir: /etc/crowdsec/
  data_dir: {d}/data/
  simulation_path: /etc/crowdsec/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: /etc/crowdsec/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: /etc/crowdsec/acquis.yaml
cscli:
  output: human
db_config:
  type: sqlite
  db_path: {d}/data/crowdsec.db
  use_wal: false
api:
  client:
    credentials_path: {d}/local_api_credentials.yaml
  server:
    listen_uri: 0.0.0.0:{port}
    profiles_path: /etc/crowdsec/profiles.yaml
    trusted_ips: [127.0.0.1, \"::1\"]
prometheus:
  enabled: false
"
    )
}

impl Lapi {
    /// Start a LAPI in `ns`, listening on every address of the namespace on a free port; a
    /// machine for `cscli` and a bouncer (its key in `bouncer_key`) are registered.
    pub fn start(ns: &Netns, dir: &Path) -> Result<Lapi> {
        std::fs::create_dir_all(dir.join("data"))?;
        let port = free_port(ns);
        std::fs::write(dir.join("config.yaml"), config_yaml(dir, port))?;
        let mut l = Lapi {
            dir: dir.to_path_buf(),
            port,
            bouncer_key: String::new(),
            ns_name: ns.name.clone(),
            ns: std::fs::File::open(ns.path())?,
            child: None,
        };
        let creds = dir.join("local_api_credentials.yaml");
        l.cscli(&["machines", "add", "checker", "--auto", "-f", &creds.display().to_string()])?;
        l.resume()?;
        l.bouncer_key = l.cscli(&["bouncers", "add", "sipshield-test", "-o", "raw"])?.trim().to_string();
        if l.bouncer_key.is_empty() {
            bail!("cscli bouncers add printed no key");
        }
        Ok(l)
    }

    /// `cscli -c CONFIG ARGS` inside the namespace; its stdout.
    pub fn cscli(&self, args: &[&str]) -> Result<String> {
        let cfg = self.dir.join("config.yaml");
        let out = self
            .command("cscli")
            .arg("-c")
            .arg(&cfg)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running cscli")?;
        if !out.status.success() {
            bail!("cscli {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `cscli … -o json` parsed (`null` when the list is empty).
    pub fn cscli_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let text = self.cscli(&a)?;
        serde_json::from_str(&text).with_context(|| format!("cscli {}: not JSON: {text}", args.join(" ")))
    }

    /// Register another bouncer (each sipshield needs its own key: the LAPI keeps the stream's
    /// position per key); returns its key.
    pub fn add_bouncer(&self, name: &str) -> Result<String> {
        let key = self.cscli(&["bouncers", "add", name, "-o", "raw"])?.trim().to_string();
        if key.is_empty() {
            bail!("cscli bouncers add {name} printed no key");
        }
        Ok(key)
    }

    /// Register a watcher machine; returns the credentials file cscli wrote (mode 0600).
    pub fn add_machine(&self, name: &str, password: &str) -> Result<PathBuf> {
        let f = self.dir.join(format!("{name}.yaml"));
        self.cscli(&["machines", "add", name, "--password", password, "-f", &f.display().to_string()])?;
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok(f)
    }

    fn command(&self, program: &str) -> std::process::Command {
        let ns = self.ns.try_clone().expect("dup of the namespace fd");
        let mut c = std::process::Command::new(program);
        // SAFETY: only setns(2) runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            });
        }
        c
    }

    /// Stop the API (an outage); [`Self::resume`] starts it again on the same database.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the API process and wait (≤ 10 s) until it accepts connections.
    pub fn resume(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("lapi.out"))?;
        let child = self
            .command("crowdsec")
            .arg("-c")
            .arg(self.dir.join("config.yaml"))
            .arg("-no-cs")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting crowdsec (is Debian's crowdsec package installed? `cargo xtask setup`)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = self.port;
        let ns = crate::netns::path(&self.ns_name);
        loop {
            let f = std::fs::File::open(&ns)?;
            let up = std::thread::scope(|s| {
                s.spawn(|| {
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).is_ok()
                        && TcpStream::connect(("127.0.0.1", port)).is_ok()
                })
                .join()
                .unwrap_or(false)
            });
            if up {
                return Ok(());
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                bail!("crowdsec exited ({st}): {}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!("the LAPI did not listen on port {port} within 10s: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("lapi.out")).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.join("crowdsec_api.log")).unwrap_or_default()
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.stop();
    }
}
