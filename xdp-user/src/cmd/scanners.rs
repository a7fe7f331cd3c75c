//! `sipshield scanners list|add|del`.
use anyhow::Result;
use clap::Subcommand;
use sipshield::control::Request;
use sipshield::state::Runtime;

#[derive(Subcommand)]
pub enum ScannersCmd {
    /// Live signatures, and configured ones excluded with `scanners del`.
    List,
    /// Add a signature (case-insensitive prefix of the header's value).
    Add {
        #[arg(long, default_value = "user-agent")]
        header: String,
        text: String,
    },
    /// Remove a signature added with `scanners add`, or exclude one of the configuration.
    Del {
        #[arg(long, default_value = "user-agent")]
        header: String,
        text: String,
    },
}

pub fn run(cmd: ScannersCmd, json: bool) -> Result<()> {
    match cmd {
        ScannersCmd::Add { header, text } => super::edit(Request::ScannerAdd { header, text }, json),
        ScannersCmd::Del { header, text } => super::edit(Request::ScannerDel { header, text }, json),
        ScannersCmd::List => {
            let sigs = sipshield::sig::read(&super::inspect::open()?)?;
            let excluded = Runtime::load()?.scanners_del;
            if json {
                println!("{}", serde_json::json!({"signatures": sigs, "excluded": excluded}));
            } else {
                for (i, s) in sigs.iter().enumerate() {
                    println!("{i:>4}  {:<11} {}", s.header_name(), s.text);
                }
                for (h, t) in excluded {
                    println!("   -  {h:<11} {t}  (configured, excluded by `scanners del`)");
                }
            }
            Ok(())
        }
    }
}
