//! `sipshield assets DIR` (hidden): man pages (clap_mangen) and shell completions
//! (clap_complete) generated from the CLI itself, for the Debian package (`cargo xtask deb`).
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

pub fn write(dir: &Path) -> Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("{}", d.display()))?;
    }
    let cmd = crate::Args::command();
    // sipshield.8 and one page per verb (sipshield-ban.8, …).
    clap_mangen::generate_to(cmd.clone(), &man).context("man pages")?;
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "sipshield", &completions)
            .with_context(|| format!("{shell} completion"))?;
    }
    println!("man pages in {}, completions in {}", man.display(), completions.display());
    Ok(())
}
