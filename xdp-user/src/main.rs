//! `sipshield`: XDP firewall for SIP servers — controller and CLI.
mod cmd;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "sipshield",
    version,
    about = "XDP firewall for SIP servers: blacklists, GeoIP, scanner signatures and REGISTER flood limits, enforced before the kernel stack"
)]
struct Args {
    /// Machine-readable output (JSON).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: cmd::Cmd,
}

fn main() {
    // The controller's signals are blocked from the first instruction until its handlers are
    // installed (then unblocked): a SIGHUP or SIGTERM during the start is handled, never fatal.
    let _ = sipshield::daemon::block_signals();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let args = Args::parse();
    if !matches!(args.cmd, cmd::Cmd::Run(_)) {
        let _ = sipshield::daemon::unblock_signals();
        // `sipshield status | head`: a closed pipe ends the CLI quietly instead of a panic.
        // SAFETY: restoring the default disposition of SIGPIPE has no preconditions.
        let _ = unsafe {
            nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl)
        };
    }
    if let Err(e) = cmd::dispatch(args.cmd, args.json) {
        eprintln!("sipshield: error: {e:#}");
        std::process::exit(1);
    }
}
