//! LXC: the container's directory and config, and the lxc-* tools.
//!
//! Every lxc-* call gets `-P <lxc path>` and the user's `-l` parameters.
//! Note that LXC's command socket is per network namespace: lxc-info,
//! lxc-attach and lxc-stop reach a container only from the namespace that
//! started it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use anyhow::{anyhow, bail, Context, Result};

use crate::process::{describe_status, Finished, Tool};

/// The PATH commands get inside a container: NixOS's, then the usual places.
pub const GUEST_PATH: &str =
    "/run/wrappers/bin:/run/current-system/sw/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

pub struct Lxc<'a> {
    pub path: &'a Path,
    pub verbose: bool,
}

impl Lxc<'_> {
    /// `<lxc path>/<name>`.
    pub fn container_dir(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn rootfs(&self, name: &str) -> PathBuf {
        self.container_dir(name).join("rootfs")
    }

    /// Whether LXC knows a container of this name (its config exists).
    pub fn is_defined(&self, name: &str) -> bool {
        self.container_dir(name).join("config").exists()
    }

    fn tool(&self, program: &str, name: Option<&str>, extra: &[String]) -> Tool {
        let tool = Tool::new(program).arg("-P").arg(self.path);
        let tool = match name {
            Some(name) => tool.args(["-n", name]),
            None => tool,
        };
        tool.args(extra)
    }

    /// Runs an lxc-* tool, turning failure into an error with its last words.
    fn run(&self, program: &str, name: &str, extra: &[String]) -> Result<String> {
        let finished = self.tool(program, Some(name), extra).output(self.verbose)?;
        if !finished.status.success() {
            bail!(
                "{program} failed with {}: {}",
                describe_status(finished.status),
                finished.last_error_line()
            );
        }
        Ok(finished.stdout)
    }

    /// Registers the container with LXC (`lxc-create -t none`) from the
    /// config at `config`; the rootfs directory must exist. LXC writes
    /// `<lxc path>/<name>/config` and hands the directories to the uid range.
    pub fn create(&self, name: &str, config: &Path, extra: &[String]) -> Result<()> {
        let mut args = vec!["-t".to_string(), "none".to_string(), "-f".to_string()];
        args.push(config.display().to_string());
        args.extend(extra.iter().cloned());
        self.run("lxc-create", name, &args).map(drop)
    }

    /// Makes the directories the container's mounts land on (the store,
    /// /init, and LXC's proc, sys and dev), owned by its root (`host_id`).
    pub fn make_mount_points(&self, name: &str, host_id: u32) -> Result<()> {
        let rootfs = self.rootfs(name);
        for mount_point in ["nix/store", "init", "proc", "sys", "dev"] {
            let mut dir = rootfs.clone();
            for component in Path::new(mount_point) {
                dir.push(component);
                if !dir.exists() {
                    std::fs::create_dir(&dir)
                        .and_then(|()| {
                            std::os::unix::fs::lchown(&dir, Some(host_id), Some(host_id))
                        })
                        .with_context(|| format!("cannot make {}", dir.display()))?;
                }
            }
        }
        Ok(())
    }

    pub fn destroy(&self, name: &str, extra: &[String]) -> Result<()> {
        self.run("lxc-destroy", name, extra).map(drop)
    }

    pub fn start(&self, name: &str, extra: &[String]) -> Result<()> {
        self.run("lxc-start", name, extra).map(drop)
    }

    /// `lxc-start -F`: the container's console on our terminal until it stops.
    pub fn start_foreground(&self, name: &str, extra: &[String]) -> Result<ExitStatus> {
        self.tool("lxc-start", Some(name), extra).interactive()
    }

    pub fn stop(&self, name: &str, extra: &[String]) -> Result<()> {
        self.run("lxc-stop", name, extra).map(drop)
    }

    pub fn kill(&self, name: &str, extra: &[String]) -> Result<()> {
        let mut args = vec!["--kill".to_string()];
        args.extend(extra.iter().cloned());
        self.run("lxc-stop", name, &args).map(drop)
    }

    /// The container's state as LXC names it (RUNNING, STOPPED, FROZEN, ...).
    pub fn state(&self, name: &str) -> Result<String> {
        let out =
            self.run("lxc-info", name, &["--state".to_string(), "--no-humanize".to_string()])?;
        Ok(out.trim().to_string())
    }

    pub fn is_running(&self, name: &str) -> Result<bool> {
        Ok(self.state(name)? == "RUNNING")
    }

    /// The containers of the LXC path that are not stopped (FROZEN, or else
    /// RUNNING, which here includes the moments of starting and stopping);
    /// all others are stopped. Two lxc-ls calls, made side by side, that only
    /// look at running containers: `lxc-ls --fancy` would say it in one, but
    /// it enters every running container to read its addresses whether they
    /// are asked for or not (five times slower with 100 running), and
    /// `--running` loads every stopped container's config too (three times
    /// slower with none running; docs/performance.md).
    pub fn active_states(&self, extra: &[String]) -> Result<BTreeMap<String, &'static str>> {
        let names = |filter: &str| -> Result<Vec<String>> {
            let mut args = vec![filter.to_string(), "-1".to_string()];
            args.extend(extra.iter().cloned());
            let finished = self.tool("lxc-ls", None, &args).output(self.verbose)?;
            if !finished.status.success() {
                return Err(anyhow!("{}", finished.last_error_line()))
                    .context(format!("lxc-ls failed with {}", describe_status(finished.status)));
            }
            Ok(finished.stdout.split_whitespace().map(str::to_string).collect())
        };
        let (active, frozen) = std::thread::scope(|scope| {
            let frozen = scope.spawn(|| names("--frozen"));
            (names("--active"), frozen.join().expect("lxc-ls --frozen does not panic"))
        });
        let mut states = BTreeMap::new();
        for name in active? {
            states.insert(name, "RUNNING");
        }
        for name in frozen? {
            states.insert(name, "FROZEN");
        }
        Ok(states)
    }

    /// A command inside the container, with a clean environment and the
    /// guest's PATH, attached to our terminal.
    pub fn attach(&self, name: &str, extra: &[String], command: &[String]) -> Result<ExitStatus> {
        self.attach_tool(name, extra).arg("--").args(command).interactive()
    }

    /// Like `attach`, but with the output captured for the caller to report.
    pub fn attach_captured(
        &self,
        name: &str,
        extra: &[String],
        command: &[&OsStr],
    ) -> Result<Finished> {
        self.attach_tool(name, extra).arg("--").args(command).output(false)
    }

    /// A shell inside the container: lxc-attach without a command runs root's
    /// login shell as the container's /etc/passwd names it (/bin/sh without one).
    pub fn login(&self, name: &str, extra: &[String]) -> Result<ExitStatus> {
        self.attach_tool(name, extra).interactive()
    }

    fn attach_tool(&self, name: &str, extra: &[String]) -> Tool {
        let term = std::env::var("TERM").unwrap_or_else(|_| "dumb".to_string());
        self.tool("lxc-attach", Some(name), extra)
            .arg("--clear-env")
            .args(["--set-var", &format!("PATH={GUEST_PATH}")])
            .args(["--set-var", &format!("TERM={term}")])
            .args(["--set-var", "HOME=/root"])
    }
}

/// Fails unless root inside the container (host uid `host_id`) can reach
/// `path`: LXC mounts the rootfs and the profile directory as that uid, and
/// a directory on the way that only its owner may enter makes lxc-start fail
/// with an error that does not say so.
pub fn check_reachable(path: &Path, host_id: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for dir in path.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let others_may_enter = meta.mode() & 0o001 != 0;
        if !others_may_enter && meta.uid() != host_id {
            bail!(
                "{} has mode {:o}: the container's root (uid {host_id}) cannot reach {}; \
                 allow it with `chmod o+x {}`",
                dir.display(),
                meta.mode() & 0o7777,
                path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// The container's own config, given once to lxc-create: the distribution's
/// defaults for unprivileged containers, then the current generation's
/// settings through the profile link, so that switching a generation
/// switches them too.
pub fn config_text(lxc_config_dir: &Path, profile_link: &Path) -> String {
    format!(
        "# Written by nixcloud-container. The container's settings are in its\n\
         # generations: change the container file and run `nixcloud-container update`.\n\
         lxc.include = {common}\n\
         lxc.include = {userns}\n\
         lxc.include = {fragment}\n",
        common = lxc_config_dir.join("common.conf").display(),
        userns = lxc_config_dir.join("userns.conf").display(),
        fragment = profile_link.join("lxc.conf").display(),
    )
}
