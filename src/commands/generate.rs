//! `crashwatch generate` (hidden): the man pages and shell completions,
//! generated from the clap definitions by the binary they describe, so they
//! cannot drift from it. The package build (`scripts/build-deb`) runs it.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};

use crate::cli::{Cli, EXIT_CODES, GenerateArgs};
use crate::commands::Failure;

pub fn generate(args: &GenerateArgs) -> Result<i32, Failure> {
    let fail = |e: anyhow::Error| Failure::new(1, e);
    if let Some(dir) = &args.man {
        man_pages(dir).with_context(|| format!("failed to write the man pages to {}", dir.display())).map_err(fail)?;
    }
    if let Some(dir) = &args.completions {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display())).map_err(fail)?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            clap_complete::generate_to(shell, &mut visible_command(), "crashwatch", dir)
                .with_context(|| format!("failed to write the {shell} completions to {}", dir.display()))
                .map_err(fail)?;
        }
    }
    Ok(0)
}

/// The command line without its hidden subcommands, which clap_complete
/// would offer (it does not look at `hide`).
fn visible_command() -> clap::Command {
    let full = Cli::command();
    clap::Command::new("crashwatch")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// crashwatch.1 and a page per visible subcommand (crashwatch-run.1, …).
fn man_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut top = Cli::command().disable_help_subcommand(true);
    top.build();
    let source = format!("crashwatch {}", env!("CARGO_PKG_VERSION"));
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        Man::new(sub.clone()).source(&source).generate_to(dir)?;
    }
    // clap_mangen would put the exit codes in an EXTRA section, reflowed
    // into one paragraph: they get their own sections, lines kept.
    let man = Man::new(top.clone().after_long_help(None::<&str>)).source(&source);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    let (status, environment) = EXIT_CODES.split_once("\n\n").unwrap_or((EXIT_CODES, ""));
    verbatim_section(&mut page, "EXIT STATUS", status)?;
    if !environment.is_empty() {
        let mut roff = Roff::default();
        roff.control("SH", ["ENVIRONMENT"])
            .text([roman(environment.trim_start_matches("Environment: ").replace('\n', " "))]);
        roff.to_writer(&mut page)?;
    }
    man.render_version_section(&mut page)?;
    std::fs::File::create(dir.join(man.get_filename()))?.write_all(&page)
}

/// A section whose lines are printed as they are (`.nf`).
fn verbatim_section(page: &mut Vec<u8>, title: &str, text: &str) -> io::Result<()> {
    let mut roff = Roff::default();
    roff.control("SH", [title]).control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []).to_writer(page)
}
