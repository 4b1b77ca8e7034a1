//! Nix: reading a spec, building a generation, and nix-env's own generation
//! machinery (set, switch, rollback, delete).
//!
//! A container file may come from someone who is not root, so every Nix
//! command that evaluates or builds what it says is confined, whatever
//! nix.conf says:
//! - restricted evaluation: it reads only the container file's own directory
//!   (or its flake's fetched sources), nixpkgs, this toolkit and the busybox
//!   generations are built with; `builtins.getEnv` gives "" and nothing runs
//!   at evaluation; no experimental feature is on (with flakes on, any code
//!   could call builtins.getFlake or builtins.fetchTree on a host path, which
//!   restricted evaluation does not check): a flake is fetched before, by a
//!   Nix process that evaluates none of its code (flake_inputs.rs);
//! - builds run in Nix's sandbox as Nix's build users (group nixbld), never
//!   as root and never without the sandbox;
//! - the Nix process runs as PID 1 of a PID namespace of its own, so that
//!   nothing of a build outlives it, and with a TMPDIR of this helper's
//!   that is removed afterwards (see `Scratch`);
//! - it runs in this helper's build network (build_network.rs), which
//!   reaches neither the host nor private networks, and builds in its own
//!   process (never through a nix-daemon, whose network that would be);
//! - within the host's limits of memory and time (build_limits.rs).

pub mod build_limits;
pub mod build_network;
pub mod flake_inputs;
pub mod log;
pub mod source_reads;
pub mod store_paths;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::profile::Profile;
use crate::settings::Settings;
use crate::settings::Verbosity;
use crate::spec::{Kind, Params, Source, Spec};
use crate::system::process::{describe_status, Finished, Tool};
use crate::system::scratch::Scratch;
use build_limits::{Limits, Step};
use flake_inputs::{FetchFrom, Fetched, Fetches};
use log::{NixLog, LOG_FORMAT};
use source_reads::Recording;

/// Settings of every Nix command that fetches, evaluates or builds a
/// container's code. They come after the user's -n parameters, which cannot
/// undo them.
const CONFINED: [&str; 15] = [
    "--option",
    "sandbox",
    "true",
    "--option",
    "sandbox-fallback",
    "false",
    "--option",
    "build-users-group",
    "nixbld",
    // Only the search path entries given here: root's NIX_PATH and nix.conf
    // may name files (nixos-config=/etc/nixos/configuration.nix) that
    // restricted evaluation would then allow.
    "--option",
    "nix-path",
    "",
    // Builds in this process, whatever NIX_REMOTE or nix.conf's `store`
    // say: a nix-daemon would build in its own network namespace, the
    // host's, with settings of its own.
    "--option",
    "store",
    "local",
];

/// Settings of every Nix command that evaluates a container's code, after
/// CONFINED.
const RESTRICTED: [&str; 9] = [
    "--option",
    "restrict-eval",
    "true",
    "--option",
    "allow-unsafe-native-code-during-evaluation",
    "false",
    "--option",
    "experimental-features",
    "",
];

/// Settings of the Nix command that fetches a flake's sources, after
/// CONFINED: it evaluates only lib/tenant-flake.nix, and flake.lock as data.
const FETCHING: [&str; 3] = ["--option", "experimental-features", "flakes"];

/// The search path entry of a flake's fetched sources, which its
/// evaluations may read.
const FLAKE_SOURCE_ENTRY: &str = "nixcloud-container-flake-source";

/// The search path entry under which container files find this toolkit
/// (`<nixcloud-container/examples/tiny/system.nix>`).
const TOOLKIT_ENTRY: &str = "nixcloud-container";
/// The search path entry of the busybox that builds generations (a store
/// directory holding `busybox`), for systems built without nixpkgs.
const BUSYBOX_ENTRY: &str = "nixcloud-busybox";

pub struct Nix<'a> {
    pub settings: &'a Settings,
    /// The user's `-n` parameters, given to every Nix command.
    pub extra_args: &'a [String],
    /// Where confined Nix commands run (build_network.rs).
    pub network: &'a crate::nix::build_network::Shared,
    /// The flakes this command fetched (flake_inputs.rs).
    pub flakes: &'a Fetches,
}

/// A generation built but not yet current: its store path, kept from the
/// garbage collector by an out-link until it is set in the profile.
pub struct Built {
    pub path: PathBuf,
    out_link: PathBuf,
}

impl Drop for Built {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.out_link);
    }
}

impl Nix<'_> {
    fn entry(&self) -> PathBuf {
        self.settings.nix_lib.join("cli.nix")
    }

    fn verbose(&self) -> bool {
        self.settings.verbosity == Verbosity::Verbose
    }

    /// Runs a Nix command that may build, showing its progress as
    /// nix/log.rs does; its stderr becomes Nix's messages as plain text.
    fn run_logged(&self, tool: Tool) -> Result<Finished> {
        let log = NixLog::new(self.settings.verbosity);
        let finished = tool.args(LOG_FORMAT).output_streaming(|line| log.feed(line));
        let messages = log.finish();
        Ok(Finished { stderr: messages, ..finished? })
    }

    /// Runs a Nix command that evaluates `source`. For a container whose
    /// helper process sync started, the files of its source it reads (a
    /// flake's source, a container file's directory) are recorded
    /// (source_reads.rs).
    fn run_evaluation(&self, source: &Source, tool: Tool) -> Result<Finished> {
        match (source, Recording::from_env()) {
            (Source::Flake(_) | Source::File(_), Some(recording)) => {
                recording.around(|| self.run_logged(tool))
            }
            _ => self.run_logged(tool),
        }
    }

    /// The directory of this toolkit's Nix files (lib/ and modules/ in it).
    fn toolkit_root(&self) -> &Path {
        self.settings.nix_lib.parent().unwrap_or(Path::new("/"))
    }

    fn limits(&self) -> Limits {
        Limits::of(&self.settings.host.builds)
    }

    /// A Nix command of `step` on a container's code, confined as the
    /// module's header says (but for restricted evaluation, which
    /// `evaluating` adds), with lib/cli.nix as its file and `source` as its
    /// `--argstr source`.
    fn confined(
        &self,
        program: &str,
        step: Step,
        source: &Source,
        scratch: &Scratch,
    ) -> Result<Tool> {
        let network = self.network.get(self.settings)?;
        let pid_namespace = ["--pid", "--fork", "--kill-child=KILL", "--mount-proc", "--"];
        let tool = Tool::wrapped("unshare", &pid_namespace, program)
            .in_namespace(network)
            .args(self.extra_args)
            .args(CONFINED);
        Ok(self
            .limits()
            .apply(tool, step)
            .arg(self.entry())
            .args(["--argstr", "source"])
            .arg(source.to_json()?)
            .env("TMPDIR", scratch.dir())
            .dies_with_helper())
    }

    /// A Nix command of `step` that evaluates `source`: confined, in
    /// restricted evaluation, reading only what the module's header says.
    fn evaluating(
        &self,
        program: &str,
        step: Step,
        source: &Source,
        busybox: &Path,
        scratch: &Scratch,
    ) -> Result<Tool> {
        let evaluated = source.resolved()?;
        let mut allowed = vec![
            (TOOLKIT_ENTRY, self.toolkit_root().to_path_buf()),
            (BUSYBOX_ENTRY, store_root(busybox)?),
        ];
        let mut fetched = None;
        match &evaluated {
            // The directory it was named in (Source::resolved), and what is
            // below it; a file directly in the store, only itself.
            Source::File(file) => allowed
                .push(("nixcloud-container-file", crate::spec::readable_root(file).to_path_buf())),
            Source::System(path) => allowed.push(("nixcloud-container-system", path.clone())),
            // A flake reads its fetched sources.
            Source::Flake(flake) => {
                let reference =
                    flake.split_once('#').map_or(flake.as_str(), |(reference, _)| reference);
                let sources = self.fetch_flake(reference)?;
                allowed
                    .extend(sources.sources.iter().map(|path| (FLAKE_SOURCE_ENTRY, path.clone())));
                fetched = Some(sources);
            }
        }
        let mut tool = self.confined(program, step, &evaluated, scratch)?.args(RESTRICTED);
        for (prefix, path) in allowed {
            tool = tool.arg("-I").arg(format!("{prefix}={}", path.display()));
        }
        if let Some(fetched) = fetched {
            tool = tool.args(["--argstr", "fetched"]).arg(&fetched.json);
        }
        Ok(tool)
    }

    /// Fetches flake `reference` (without `#`) for its evaluations, once
    /// per command: its source and locked inputs, each checked before it is
    /// fetched (flake_inputs.rs).
    fn fetch_flake(&self, reference: &str) -> Result<std::sync::Arc<Fetched>> {
        self.flakes.get(reference, || {
            let from = FetchFrom::new(reference, &self.settings.host.allowed_flake_input_paths)?;
            let scratch = Scratch::new(&self.settings.state_dir)?;
            let source = Source::Flake(reference.to_string());
            let tool = self
                .confined("nix-instantiate", Step::Build, &source, &scratch)?
                .args(FETCHING)
                .args(["--argstr", "fetchFrom"])
                .arg(serde_json::to_string(&from).expect("a FetchFrom serializes"))
                .args(["--eval", "--strict", "--json", "-A", "flakeSources"]);
            let finished = self.run_logged(tool)?;
            self.check_confined(&finished, Step::Build, || {
                format!("cannot fetch flake {reference}")
            })?;
            Fetched::parse(&finished.stdout)
        })
    }

    /// `check` for a confined command of `step`: where it ran into one of
    /// the host's limits, the error says which.
    fn check_confined(
        &self,
        finished: &Finished,
        step: Step,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        let limits = self.limits();
        if finished.timed_out {
            // What Nix said as it was killed is beside the point.
            let why = limits.blame(step, finished, "").expect("a timeout is a limit");
            return Err(anyhow!("{why}")).context(what());
        }
        let result = check(finished, what);
        let Err(err) = result else { return Ok(()) };
        match limits.blame(step, finished, &format!("{err:#}")) {
            Some(why) => Err(anyhow!("{err:#}; {why}")),
            None => Err(err),
        }
    }

    /// Evaluates the source's spec. Never imports nixpkgs, writes nothing.
    pub fn eval_spec(&self, source: &Source, busybox: &Path) -> Result<Spec> {
        let scratch = Scratch::new(&self.settings.state_dir)?;
        let finished = self
            .evaluating("nix-instantiate", Step::Evaluation, source, busybox, &scratch)?
            .args(["--eval", "--strict", "--json", "-A", "spec"]);
        let finished = self.run_evaluation(source, finished)?;
        self.check_confined(&finished, Step::Evaluation, || format!("cannot evaluate {source}"))?;
        serde_json::from_str(finished.stdout.trim())
            .map_err(|err| anyhow!("{err}"))
            .with_context(|| format!("{source} gave a spec this helper refuses"))
    }

    /// The containers of flake `reference` (without `#`) and the hash of its
    /// source, which locks its inputs (lib/cli.nix's flakeInfo).
    pub fn flake_info(&self, reference: &str, busybox: &Path) -> Result<FlakeInfo> {
        let scratch = Scratch::new(&self.settings.state_dir)?;
        let source = Source::Flake(reference.to_string());
        let finished = self
            .evaluating("nix-instantiate", Step::Evaluation, &source, busybox, &scratch)?
            .args(["--eval", "--strict", "--json", "-A", "flakeInfo"]);
        let finished = self.run_logged(finished)?;
        self.check_confined(&finished, Step::Evaluation, || {
            format!("cannot read flake {reference}")
        })?;
        serde_json::from_str(finished.stdout.trim())
            .map_err(|err| anyhow!("{err}"))
            .with_context(|| format!("flake {reference} gave what this helper cannot read"))
    }

    /// Where `<nixpkgs>` is for root, as Nix finds it (NIX_PATH, nix.conf,
    /// the user's -n "-I nixpkgs=..."), or None.
    pub fn find_nixpkgs(&self) -> Result<Option<String>> {
        let finished = Tool::new("nix-instantiate")
            .args(self.extra_args)
            .args(["--find-file", "nixpkgs"])
            .dies_with_helper()
            .output(false)?;
        let found = finished.stdout.trim();
        Ok((finished.status.success() && !found.is_empty()).then(|| found.to_string()))
    }

    /// What a build of `source` is told of nixpkgs: a NixOS configuration
    /// of a file needs root's nixpkgs; a flake brings its own, a ready
    /// system none.
    fn nixpkgs_args(&self, spec: &Spec, source: &Source) -> Result<Vec<String>> {
        if spec.kind != Kind::Nixos || !matches!(source, Source::File(_)) {
            return Ok(Vec::new());
        }
        Ok(self
            .find_nixpkgs()?
            .map(|nixpkgs| vec!["-I".to_string(), format!("nixpkgs={nixpkgs}")])
            .unwrap_or_default())
    }

    /// Builds the generation for `params`, without making it current.
    pub fn build_generation(&self, spec: &Spec, params: &Params, busybox: &Path) -> Result<Built> {
        self.build(&params.source, spec, params, busybox, &[])
    }

    /// Builds a generation for `params` around `system`, a system built
    /// before (an imported generation's), with `spec`, the spec recorded
    /// with it, which lib/spec.nix's fromSpec checks again; nothing else is
    /// evaluated.
    pub fn build_around_system(
        &self,
        spec: &Spec,
        params: &Params,
        system: &Path,
        busybox: &Path,
    ) -> Result<Built> {
        let spec_json = serde_json::to_string(spec).expect("a spec serializes");
        let recorded = ["--argstr".to_string(), "spec".to_string(), spec_json];
        self.build(&Source::System(system.to_path_buf()), spec, params, busybox, &recorded)
    }

    /// Builds the generation for `params` from `source`, with `extra`
    /// arguments for lib/cli.nix.
    fn build(
        &self,
        source: &Source,
        spec: &Spec,
        params: &Params,
        busybox: &Path,
        extra: &[String],
    ) -> Result<Built> {
        let scratch = Scratch::new(&self.settings.state_dir)?;
        let builds = self.settings.state_dir.join(crate::layout::BUILDS);
        crate::system::host_dirs::root_dir(&builds)?;
        let out_link = builds.join(&params.name);
        let finished = self
            .evaluating("nix-build", Step::Build, source, busybox, &scratch)?
            .args(self.nixpkgs_args(spec, source)?)
            .args(extra)
            .args(["--argstr", "params"])
            .arg(serde_json::to_string(params).expect("params serialize"))
            .args(["--argstr", "busybox"])
            .arg(busybox)
            .args(["-A", "generation", "--out-link"])
            .arg(&out_link);
        let finished = self.run_evaluation(source, finished)?;
        self.check_confined(&finished, Step::Build, || format!("cannot build {source}"))
            .map_err(|err| self.blame_missing_internet(err))?;
        let path = finished.stdout.lines().last().unwrap_or("").trim();
        if !path.starts_with('/') {
            bail!("nix-build printed no store path for {source}");
        }
        Ok(Built { path: PathBuf::from(path), out_link })
    }

    /// The error of a build that failed in a fixed-output derivation (a
    /// download) on a host that keeps such builds off the internet, with the
    /// host option that lets them out; any other error as it is.
    fn blame_missing_internet(&self, err: anyhow::Error) -> anyhow::Error {
        if self.settings.host.builds.allow_internet {
            return err;
        }
        let message = format!("{err:#}");
        match failed_derivation(&message) {
            Some(derivation) if is_fixed_output(Path::new(derivation)) => anyhow!(
                "{message}; it is a fixed-output derivation (a download), and builds of container \
                 files do not reach the internet on this host: root lets them reach the public \
                 internet with the host option builds.allowInternet"
            ),
            _ => err,
        }
    }

    /// The busybox that builds generations, in the store: one in the store
    /// is used where it is (with its closure), another (Debian's static
    /// /usr/bin/busybox) is added to the store once, as `<store
    /// path>/busybox` (lib/busybox.nix: busybox picks its applet from the
    /// name it is run by). Restricted evaluation reads neither from where
    /// it is on the host.
    pub fn busybox_in_store(&self, busybox: &Path) -> Result<PathBuf> {
        if busybox.starts_with("/nix/store") {
            return Ok(busybox.to_path_buf());
        }
        let cache = self.settings.state_dir.join(crate::layout::BUSYBOX_CACHE);
        let meta = std::fs::metadata(busybox)
            .with_context(|| format!("busybox {} is not usable", busybox.display()))?;
        let key = serde_json::json!({
            "source": busybox,
            "size": meta.len(),
            "modified": meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos().to_string()),
        });
        if let Ok(text) = std::fs::read_to_string(&cache) {
            if let Ok(cached) = serde_json::from_str::<serde_json::Value>(&text) {
                if cached["key"] == key {
                    if let Some(path) = cached["storePath"].as_str() {
                        let binary = Path::new(path).join("busybox");
                        if binary.exists() {
                            return Ok(binary);
                        }
                    }
                }
            }
        }
        let scratch = Scratch::new(&self.settings.state_dir)?;
        let dir = scratch.dir().join("busybox-static");
        std::fs::create_dir(&dir)
            .and_then(|()| std::fs::copy(busybox, dir.join("busybox")).map(drop))
            .with_context(|| format!("cannot copy busybox {}", busybox.display()))?;
        let finished = Tool::new("nix-store").arg("--add").arg(&dir).output(self.verbose())?;
        check(&finished, || format!("cannot add busybox {} to the store", busybox.display()))?;
        let store_path = finished.stdout.trim().to_string();
        let record = serde_json::json!({ "key": key, "storePath": store_path });
        crate::system::files::write_atomically(&cache, &record.to_string())?;
        Ok(Path::new(&store_path).join("busybox"))
    }

    /// Makes the built generation the profile's current one (a new
    /// generation, or the last one again when it is the same store path).
    pub fn set_profile(&self, profile: &Profile, built: &Built) -> Result<()> {
        self.profile_op(profile, &["--set".to_string(), built.path.display().to_string()])
    }

    pub fn switch_generation(&self, profile: &Profile, number: u64) -> Result<()> {
        self.profile_op(profile, &["--switch-generation".to_string(), number.to_string()])
    }

    pub fn rollback(&self, profile: &Profile) -> Result<()> {
        self.profile_op(profile, &["--rollback".to_string()])
    }

    /// `specifiers` were checked by `profile::Specifier`.
    pub fn delete_generations(&self, profile: &Profile, specifiers: &[String]) -> Result<()> {
        let mut args = vec!["--delete-generations".to_string()];
        args.extend(specifiers.iter().cloned());
        self.profile_op(profile, &args)
    }

    /// Runs nix-env on `profile`, whose container's lock the caller holds,
    /// after removing what a killed nix-env left there, which it would
    /// misread (Profile::interrupted_links; opening a container removes
    /// them first and says so).
    fn profile_op(&self, profile: &Profile, args: &[String]) -> Result<()> {
        profile.remove_interrupted_links()?;
        let finished = Tool::new("nix-env")
            .arg("--profile")
            .arg(profile.link())
            .args(args)
            .dies_with_helper()
            .output(self.verbose())?;
        check(&finished, || format!("nix-env {}", args.join(" ")))
    }
}

/// The closure of a store path, by nix-store.
pub fn requisites(path: &Path) -> Result<String> {
    let finished =
        Tool::new("nix-store").args(["--query", "--requisites"]).arg(path).output(false)?;
    if !finished.status.success() {
        bail!(
            "nix-store --query --requisites {} failed: {}",
            path.display(),
            finished.stderr.trim()
        );
    }
    Ok(finished.stdout)
}

/// What `sync` needs to know of a flake (lib/cli.nix's flakeInfo).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlakeInfo {
    pub containers: Vec<String>,
    pub nar_hash: String,
    /// Its source in the store.
    pub path: PathBuf,
    /// What names this revision of the source (source_reads.rs): the hash
    /// part of its store path, its hash, and where known its revision's
    /// first characters and its modification time.
    pub identifiers: Vec<String>,
}

/// Removes the GC roots Nix keeps for `links` (indirect roots, made for
/// links outside the profiles directory: `gcroots/auto/<name>`, the name
/// being the link's path hashed with SHA-1 in Nix's base32), so that none
/// dangles once the links are gone. Computed, not searched: a host has
/// thousands of them.
pub fn forget_roots(links: &[PathBuf]) {
    let state_dir = std::env::var_os("NIX_STATE_DIR").unwrap_or_else(|| "/nix/var/nix".into());
    let auto = Path::new(&state_dir).join("gcroots/auto");
    for link in links {
        let root = auto.join(auto_root_name(link));
        if std::fs::read_link(&root).is_ok_and(|target| &target == link) {
            let _ = std::fs::remove_file(root);
        }
    }
}

/// The name Nix gives the indirect root of `link`.
fn auto_root_name(link: &Path) -> String {
    use sha1::{Digest, Sha1};
    use std::os::unix::ffi::OsStrExt;
    nix_base32(&Sha1::digest(link.as_os_str().as_bytes()))
}

/// Nix's base32: its own alphabet, the last bits first.
fn nix_base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let length = (bytes.len() * 8).div_ceil(5);
    (0..length)
        .rev()
        .map(|index| {
            let bit = index * 5;
            let (byte, shift) = (bit / 8, bit % 8);
            let high = bytes.get(byte + 1).map_or(0, |next| u16::from(*next) << (8 - shift));
            let value = (u16::from(bytes[byte]) >> shift) | high;
            ALPHABET[usize::from(value & 31)] as char
        })
        .collect()
}

/// The store path that `path` lies in: /nix/store/<hash>-<name>.
fn store_root(path: &Path) -> Result<PathBuf> {
    let inside = path
        .strip_prefix("/nix/store")
        .ok()
        .and_then(|rest| rest.components().next())
        .with_context(|| format!("{} is not in /nix/store", path.display()))?;
    Ok(Path::new("/nix/store").join(inside))
}

/// The derivation whose builder failed, as Nix names it in `message`.
fn failed_derivation(message: &str) -> Option<&str> {
    let start = message.find("builder for '")? + "builder for '".len();
    let length = message[start..].find("' failed")?;
    Some(&message[start..start + length]).filter(|path| path.ends_with(".drv"))
}

/// Whether the derivation at `path` is fixed-output: its one output, `out`,
/// has a hash algorithm (`Derive([("out","<path>","sha256","<hash>")],...`;
/// `r:sha256` where the hash is of the NAR).
fn is_fixed_output(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    let Some(outputs) = text.strip_prefix("Derive([(\"") else { return false };
    let Some((first, _)) = outputs.split_once(')') else { return false };
    let fields: Vec<&str> = first.split("\",\"").collect();
    fields.len() == 4 && fields[0] == "out" && !fields[2].is_empty()
}

/// Turns a failed Nix command into one error line carrying Nix's message.
fn check(finished: &Finished, what: impl FnOnce() -> String) -> Result<()> {
    if finished.status.success() {
        return Ok(());
    }
    let message = condense(&finished.stderr)
        .unwrap_or_else(|| format!("Nix failed with {}", describe_status(finished.status)));
    Err(anyhow!("{message}{}", hint(&message))).context(what())
}

/// What to do about the host-side failures the confinement can cause.
fn hint(message: &str) -> &'static str {
    if message.contains("'nixbld'") || message.contains("sandbox") {
        " (container builds run in Nix's sandbox as the build users of group nixbld: \
         on NixOS keep nix.settings.sandbox = true; elsewhere create the nixbld group and users, \
         e.g. Debian's nix-setup-systemd, and let Nix sandbox: scripts/setup-debian)"
    } else if message.contains("experimental Nix feature") || message.contains("'getFlake' missing")
    {
        " (container files and flakes are evaluated without Nix's experimental features: \
         builtins.getFlake and builtins.fetchTree are not there; a flake's inputs are what its \
         flake.lock locks)"
    } else if message.contains("forbidden in restricted mode") {
        " (a container file reads only files below its own directory, nixpkgs, its flake's \
         inputs and this toolkit: copy what it needs beside it)"
    } else {
        ""
    }
}

/// Nix's error, shortened to what a single line can say: the `error:`
/// message, where it happened (`at file:line:col`), and for a failed build
/// the last line of the builder's log.
fn condense(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let start = lines.iter().position(|line| line.starts_with("error:"))?;
    let mut message = lines[start].trim_start_matches("error:").trim().to_string();
    let rest = &lines[start + 1..];
    // A message that goes on over several lines ends at the first blank one,
    // or where another error begins.
    for line in rest.iter().take_while(|line| !line.is_empty() && !line.starts_with("error:")) {
        let noise = ["last ", "For full logs", "(use '--show-trace'"];
        if !line.starts_with('>') && !noise.iter().any(|prefix| line.starts_with(prefix)) {
            message.push(' ');
            message.push_str(line);
        }
    }
    if let Some(at) = rest.iter().find(|line| line.starts_with("at ") && line.ends_with(':')) {
        message.push_str(&format!(" ({})", at.trim_end_matches(':')));
    }
    let mut message = message.trim_end_matches(';').to_string();
    // A failed build's last words: newer Nix quotes the log after the error
    // ("> ..." lines), Nix 2.8 without a terminal prints it before.
    let quoted = rest.iter().rev().find(|line| line.starts_with('>') && line.len() > 1);
    let printed = || {
        let progress = ["building '", "these ", "this derivation", "/nix/store/", "warning:"];
        lines[..start]
            .iter()
            .rev()
            .find(|line| !line.is_empty() && !progress.iter().any(|p| line.starts_with(p)))
    };
    let log = match quoted {
        Some(line) => Some(line.trim_start_matches('>').trim()),
        None if message.starts_with("builder for") => printed().copied(),
        None => None,
    };
    if let Some(log) = log {
        message.push_str(&format!("; the build said: {log}"));
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::condense;

    #[test]
    fn keeps_message_and_location_of_a_syntax_error() {
        let stderr = "error: syntax error, unexpected '}', expecting ';'\n\n       at /c/web.nix:3:1:\n\n            2| { autostart = true\n            3| }\n             | ^\n";
        assert_eq!(
            condense(stderr).unwrap(),
            "syntax error, unexpected '}', expecting ';' (at /c/web.nix:3:1)"
        );
    }

    #[test]
    fn keeps_a_thrown_message() {
        let stderr = "error: container file /c/web.nix: network: ip must be an IPv4 address, got int\n(use '--show-trace' to show detailed location information)\n";
        assert_eq!(
            condense(stderr).unwrap(),
            "container file /c/web.nix: network: ip must be an IPv4 address, got int"
        );
    }

    #[test]
    fn keeps_the_last_log_line_of_a_failed_build() {
        let stderr = "this derivation will be built:\n  /nix/store/x.drv\nbuilding '/nix/store/x.drv'...\nerror: builder for '/nix/store/x.drv' failed with exit code 1;\n       last 2 log lines:\n       > checking\n       > the system /nix/store/y has no executable init\n       For full logs, run 'nix log /nix/store/x.drv'.\n";
        assert_eq!(
            condense(stderr).unwrap(),
            "builder for '/nix/store/x.drv' failed with exit code 1; the build said: the system /nix/store/y has no executable init"
        );
    }

    #[test]
    fn keeps_the_log_line_that_nix_2_8_prints_before_the_error() {
        let stderr = "this derivation will be built:\n  /nix/store/x.drv\nbuilding '/nix/store/x.drv'...\nthe system /nix/store/y has no executable init\nerror: builder for '/nix/store/x.drv' failed with exit code 1\n";
        assert_eq!(
            condense(stderr).unwrap(),
            "builder for '/nix/store/x.drv' failed with exit code 1; the build said: the system /nix/store/y has no executable init"
        );
    }

    #[test]
    fn a_fixed_output_derivation_is_told_by_its_output_hash() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = dir.path().join("f.drv");
        std::fs::write(
            &fetcher,
            "Derive([(\"out\",\"/nix/store/a-f\",\"sha256\",\"9f86\")],[],[],\"x\",\"b\",[],[])",
        )
        .unwrap();
        let plain = dir.path().join("p.drv");
        std::fs::write(
            &plain,
            "Derive([(\"out\",\"/nix/store/a-p\",\"\",\"\")],[],[],\"x\",\"b\",[],[])",
        )
        .unwrap();
        assert!(super::is_fixed_output(&fetcher));
        assert!(!super::is_fixed_output(&plain));
        assert!(!super::is_fixed_output(&dir.path().join("missing.drv")));
        let message = "cannot build container file /c/web.nix: builder for '/nix/store/x-f.drv' failed with exit code 1; the build said: bad address";
        assert_eq!(super::failed_derivation(message), Some("/nix/store/x-f.drv"));
        assert_eq!(super::failed_derivation("hash mismatch in fixed-output derivation"), None);
    }

    #[test]
    fn nothing_without_an_error_line() {
        assert_eq!(condense("warning: something\n"), None);
    }

    #[test]
    fn indirect_roots_are_named_as_nix_names_them() {
        // What Nix 2.8 made for a build link here (gcroots/auto).
        let link = std::path::Path::new("/tmp/exp/state/builds/t");
        assert_eq!(super::auto_root_name(link), "xllrk2gffbgqxbsck9q1k95z1j2jd3ky");
    }
}
