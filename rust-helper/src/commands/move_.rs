//! move: a container to another host, over SSH, as an export streamed into
//! the `import` of the helper there.
//!
//! First the other side reads the export's header alone (`import --plan`):
//! it checks the name and what the generations ask of it, and answers with
//! the store paths it lacks, so that only those travel. Then a running
//! container is stopped cleanly, the export (with just those paths) goes
//! into `import -` there, and only when that says it has the container is
//! it started there (if it ran here) and destroyed here. Whatever fails
//! before leaves it here as it was (started again if it ran).

use anyhow::{bail, Context as _, Result};
use std::io::Read;
use std::process::{Command, Stdio};

use super::destroy::destroy_opened;
use super::export;
use crate::context::Context;
use crate::engine::opening::{self, Opened};
use crate::nix::store_paths::StorePath;
use crate::transfer::archive::{Header, Writer};

/// What `move` was asked.
pub struct Request {
    pub name: String,
    /// Where to, as ssh takes it (`root@host2`).
    pub destination: String,
    /// The ssh command and its options, as words.
    pub ssh: Vec<String>,
    /// The helper on the other side, as words.
    pub remote: Vec<String>,
}

impl Request {
    /// The ssh command that runs the helper there with `args`: ssh hands
    /// the other side one command line, which its shell splits, so every
    /// word is quoted.
    fn remote(&self, args: &[&str]) -> Command {
        let words: Vec<&str> =
            self.remote.iter().map(String::as_str).chain(args.iter().copied()).collect();
        let mut command = Command::new(&self.ssh[0]);
        command.args(&self.ssh[1..]).arg("--").arg(&self.destination).arg(shell_words::join(words));
        command
    }
}

/// `move`: container `name` to the other host of `request`.
pub fn move_container(ctx: &Context, request: &Request) -> Result<()> {
    let name = request.name.as_str();
    let (lock, entry) = opening::lock_existing(ctx, name)?;
    let lxc = ctx.lxc();
    let was_running = lxc.is_defined(name) && lxc.is_running(name)?;

    let planned = export::header(ctx, name, &entry, true, None)?;
    let lacking = lacking_there(request, &planned)?;

    if was_running {
        eprintln!("stopping container '{name}' to move it");
        lxc.stop(name, &[]).with_context(|| format!("cannot stop container '{name}'"))?;
        super::stopped(ctx, name)?;
    }
    let sent = send(ctx, request, &entry, &lacking);
    if let Err(err) = sent {
        drop(lock);
        if was_running {
            if let Err(restart) = super::start::start(ctx, name, None) {
                eprintln!("warning: cannot start '{name}' here again: {restart:#}");
            }
        }
        return Err(err.context(format!(
            "cannot move container '{name}' to {}: it stays here",
            request.destination
        )));
    }
    if was_running {
        let started = request.remote(&["start", name]).stdin(Stdio::null()).status();
        if !started.is_ok_and(|status| status.success()) {
            bail!(
                "container '{name}' is on {} now, but did not start there: it stays here too, \
                 stopped; start it there, then destroy it here",
                request.destination
            );
        }
    }
    let opened = Opened { lock, locked: ctx.store.lock()?, repaired: None };
    destroy_opened(ctx, name, opened, false, false)
        .with_context(|| format!("container '{name}' is on {} now, but", request.destination))?;
    println!(
        "moved container '{name}' to {}{}: {} store paths sent",
        request.destination,
        if was_running { " (started there)" } else { "" },
        lacking.len()
    );
    Ok(())
}

/// Sends the header of `planned` to `import --plan` there; returns the
/// store paths it says that host lacks.
fn lacking_there(request: &Request, planned: &Header) -> Result<Vec<StorePath>> {
    let mut child = request
        .remote(&["import", "--plan", "-", &request.name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", request.ssh[0]))?;
    {
        let mut writer = Writer::new(child.stdin.take().expect("stdin is piped"))?;
        serde_json::to_writer(&mut writer, planned).context("cannot write the header")?;
        // An export of the header alone: the other side reads no more.
        writer.finish()?;
    }
    let output = child.wait_with_output().context("cannot run ssh")?;
    if !output.status.success() {
        bail!(
            "{} refuses it: {}",
            request.destination,
            remote_error(&String::from_utf8_lossy(&output.stderr))
        );
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| StorePath::try_from(line.to_string()).map_err(|err| anyhow::anyhow!(err)))
        .collect::<Result<_>>()
        .with_context(|| format!("{} answered what this helper does not read", request.destination))
}

/// Streams the export of the (stopped) container, with the store paths
/// `lacking`, into `import -` there, and waits for it to say it has it.
fn send(
    ctx: &Context,
    request: &Request,
    entry: &crate::state::ContainerRecord,
    lacking: &[StorePath],
) -> Result<()> {
    let name = request.name.as_str();
    let header = export::header(ctx, name, entry, false, Some(lacking))?;
    let mut child = request
        .remote(&["import", "-", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", request.ssh[0]))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).ok();
        text
    });
    let written = export::write(ctx, name, &header, &mut stdin);
    drop(stdin);
    let output = child.wait_with_output().context("cannot run ssh")?;
    let errors = errors.join().unwrap_or_default();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let confirmed = format!("imported container '{name}' ");
    if !output.status.success() || !stdout.lines().any(|line| line.starts_with(&confirmed)) {
        bail!("{} did not take it: {}", request.destination, remote_error(&errors));
    }
    written?;
    for line in stdout.lines() {
        println!("{}: {line}", request.destination);
    }
    Ok(())
}

/// The other side's error line, or what it said last.
fn remote_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines
        .iter()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
        .or(lines.last().copied())
        .unwrap_or("it said nothing")
        .to_string()
}
