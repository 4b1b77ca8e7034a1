//! The host's state: which containers exist and which addresses they hold.
//!
//! One JSON file, `<state dir>/state.json`, changed only under an exclusive
//! lock (`state.lock`) and replaced atomically (write, fsync, rename), so a
//! reader never sees half a file and a crash never leaves one. Each container
//! also has a lock of its own (`locks/<name>.lock`), held for the whole of a
//! command that changes it; a lock dies with its process, which is how a
//! crashed command is told from a running one (see `engine::recovery`).
//! Lock order: a container's lock before the state lock, never the reverse.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use crate::capabilities::forward_ports::types::ForwardPort;
use crate::formats::InterfaceName;
use crate::ids::{HostIds, IdMap};
use crate::layout;
use crate::spec::{NixosRelease, Source};

const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Being created; a crash here is undone by the next command.
    Creating,
    /// Complete.
    Ready,
    /// The profile is being switched away from generation `switched_from`
    /// (update, rollback, switch-generation); `addresses` may hold the claim
    /// of a generation being built.
    Updating,
    /// Being destroyed; a crash here is finished by the next command.
    Destroying,
}

/// An address on a bridge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Address {
    pub bridge: InterfaceName,
    pub ip: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerRecord {
    pub phase: Phase,
    /// What `update` without a container file builds from.
    pub source: Source,
    /// The address allocated on the hostonly bridge, kept for the container's life.
    pub automatic_ip: Option<Ipv4Addr>,
    /// The address of its internet interface (DHCP hands it out, pinned to
    /// the interface's MAC address), allocated when it first has one and
    /// kept for its life; it is among `addresses` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_ip: Option<Ipv4Addr>,
    /// Every address one of its generations uses: none of them is given to
    /// another container while that generation exists.
    pub addresses: BTreeSet<Address>,
    /// While Updating: the generation that was current before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_from: Option<u64>,
    /// What a helper before `Store::record_started` recorded of its last
    /// start here; read (`Store::started_with`) until its next start,
    /// never written.
    #[serde(default, rename = "startedWith", skip_serializing)]
    pub started_with_before: Option<StartedWith>,
    /// The nixpkgs release a NixOS container was created with: its
    /// system.stateVersion, unless its configuration sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_version: Option<NixosRelease>,
    /// The host uids and gids its ids are, kept for its life. Missing in
    /// entries made before each container had a range of its own, until
    /// the next command that changes the container records the range its
    /// generation has (`opening::open`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<IdMap>,
    /// The host ports one of its generations has forwarded to it: no other
    /// container gets them while that generation exists.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub forwards: BTreeSet<ForwardPort>,
    /// The file of root's own LXC settings for it (--lxc-config), read again
    /// at each update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_settings: Option<PathBuf>,
    /// The SHA-1 of each text of root's settings a generation of it holds:
    /// what `start` includes (nothing else can have put them there).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub root_settings_digests: BTreeSet<String>,
    /// Whether `sync` made or updated it, and from what (a flake's hash and
    /// what else its generation depends on), where it can tell: an entry
    /// whose list names it with the same gets neither evaluated nor built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<Synced>,
    /// The source of `sync` that created it, or that took it over
    /// (`sync --adopt`): a list file, a flake, or a source named with
    /// `--source` (commands/sync/list.rs `SyncSource`). Only that source's
    /// `--prune` destroys it; None (made by hand, or by a sync before
    /// sources were recorded) is never pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_source: Option<String>,
    /// Whether it starts with the host, where root decided that rather than
    /// the container file (--autostart yes/no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart: Option<bool>,
    /// While Destroying: its data directory stays (destroy --keep-data).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_data: bool,
}

/// See `ContainerRecord::synced`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Synced {
    /// What its generation was built from besides its source (the
    /// toolkit, busybox, the host file, root's decisions, and for a
    /// container file `<nixpkgs>`; commands/sync/list.rs `fingerprints`).
    pub fingerprint: Option<String>,
    /// The hash of the flake's source it was last evaluated from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_hash: Option<String>,
    /// What of its source (a flake's, or a container file's directory) its
    /// evaluation read, where that is known and its generation does not
    /// depend on all of it (source_reads.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<SourceReads>,
}

/// The files of its source (a flake's, or the directory of a container
/// file) that a container's evaluation read, and their digest with the
/// source's shape (`source_reads::digest`), for `generation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceReads {
    pub files: std::collections::BTreeSet<String>,
    pub digest: String,
    /// The generation that evaluation made: for a flake's container the one
    /// found not to depend on all of the source (empty in records made
    /// before it was kept: the generation is looked at again); a container
    /// file's is evaluated again where it has another (commands/sync/files.rs).
    #[serde(default)]
    pub generation: std::path::PathBuf,
}

/// The generation whose LXC settings a container got when this helper last
/// started it, and its address: what runs until its next start
/// (`Store::record_started`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartedWith {
    pub generation: u64,
    pub address: Ipv4Addr,
}

impl ContainerRecord {
    /// A container in `phase` built from `source`, with nothing else known yet.
    pub fn new(phase: Phase, source: Source) -> ContainerRecord {
        ContainerRecord {
            phase,
            source,
            automatic_ip: None,
            internet_ip: None,
            addresses: BTreeSet::new(),
            switched_from: None,
            started_with_before: None,
            state_version: None,
            ids: None,
            forwards: BTreeSet::new(),
            root_settings: None,
            root_settings_digests: BTreeSet::new(),
            autostart: None,
            synced: None,
            sync_source: None,
            keep_data: false,
        }
    }

    /// Records that the profile is switching away from generation `from`
    /// (Updating), or that no switch is under way (`None`: Ready). The phase
    /// and `switched_from` change only together, here.
    pub fn mark_switching(&mut self, from: Option<u64>) {
        self.phase = if from.is_some() { Phase::Updating } else { Phase::Ready };
        self.switched_from = from;
    }

    /// Whether the container counts as existing: neither half-made nor
    /// half-destroyed.
    pub fn exists(&self) -> bool {
        matches!(self.phase, Phase::Ready | Phase::Updating)
    }

    /// Its id range; for an entry that has not recorded one, the host's
    /// first (every container's before ranges were per container).
    pub fn ids(&self, host: &HostIds) -> IdMap {
        self.ids.unwrap_or_else(|| host.first())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    pub containers: BTreeMap<String, ContainerRecord>,
}

impl Default for State {
    fn default() -> State {
        State { version: STATE_VERSION, containers: BTreeMap::new() }
    }
}

impl State {
    /// Gives container `name` (whose entry must exist) the first id range
    /// that no other container's overlaps, or the shared one where the host
    /// does not isolate ranges, and returns it.
    pub fn allocate_ids(&mut self, host: &HostIds, name: &str) -> Result<IdMap> {
        let taken: Vec<IdMap> = self
            .containers
            .iter()
            .filter(|(other, _)| other.as_str() != name)
            .map(|(_, entry)| entry.ids(host))
            .collect();
        let Some(ids) =
            host.ranges().find(|range| !host.isolated || !taken.iter().any(|t| t.overlaps(range)))
        else {
            bail!(
                "every id range is taken: the host gives containers {} ids from {} ({} each); \
                 destroy a container, or delegate more ids to root (idmap.count in the host file, \
                 NixOS: nixcloud.containers.idmap.count)",
                host.count,
                host.host_id,
                host.per_container
            );
        };
        self.containers.get_mut(name).expect("the entry exists").ids = Some(ids);
        Ok(ids)
    }
}

/// Where the state and the locks live.
pub struct Store {
    dir: PathBuf,
}

/// The state, read under the state lock; `save` writes it back.
pub struct LockedState {
    _lock: File,
    file: PathBuf,
    pub state: State,
}

/// A container's lock, held until dropped.
pub struct ContainerLock {
    _file: File,
    path: PathBuf,
}

impl ContainerLock {
    /// Removes the lock file, for a name no container has (it never had,
    /// or its creation failed), so that no lock file stays for it. A
    /// command that was waiting for it finds the file gone and takes a new
    /// one.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn open_lock(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open lock {}", path.display()))
}

/// Whether `file` is still the one at `path`: a lock taken on a file that
/// `ContainerLock::remove` unlinked meanwhile locks nothing.
fn still_linked(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(held), Ok(linked)) => held.ino() == linked.ino() && held.dev() == linked.dev(),
        _ => false,
    }
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store { dir: dir.to_path_buf() }
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join(layout::STATE_JSON)
    }

    fn container_lock_file(&self, name: &str) -> PathBuf {
        layout::container_lock(&self.dir, name)
    }

    /// Reads the state without locking: writes are atomic renames, so this
    /// sees one complete version. For commands that only look.
    pub fn read(&self) -> Result<State> {
        read_state(&self.state_file())
    }

    /// Container `name`'s entry, where the state asks nothing of a command
    /// that opens a container (`engine::opening`): no entry is unfinished
    /// (another command's crash to repair: `recovery::repair_all`) and each
    /// has its id range (`recovery::record_missing_ids`); those two look at
    /// the same fields. Read without the state lock (writes are atomic
    /// renames), in one pass that parses no other entry whole: the state of
    /// every other container is only glanced at (`settled`). None where it
    /// asks something, has no entry for `name`, or does not read: the whole
    /// opening then deals with it.
    pub fn settled_entry(&self, name: &str) -> Option<ContainerRecord> {
        let bytes = std::fs::read(self.state_file()).ok()?;
        let mut reader = serde_json::Deserializer::from_slice(&bytes);
        let entry = serde::Deserializer::deserialize_map(&mut reader, settled::StateFile(name));
        reader.end().ok()?;
        entry.ok()?
    }

    /// Takes the state lock (and makes the state directory if need be).
    fn state_lock(&self) -> Result<File> {
        crate::system::host_dirs::root_dir(&self.dir)?;
        let lock = open_lock(&self.dir.join(layout::STATE_LOCK))?;
        flock(&lock, FlockOperation::LockExclusive).context("cannot lock the state file")?;
        Ok(lock)
    }

    /// Takes the state lock and reads the state.
    pub fn lock(&self) -> Result<LockedState> {
        let lock = self.state_lock()?;
        let file = self.state_file();
        let state = read_state(&file)?;
        Ok(LockedState { _lock: lock, file, state })
    }

    /// Takes the state lock for rebuilding the state from scratch: the
    /// current file, damaged or not, is moved aside (its new name returned)
    /// and an empty state is handed out to be filled and saved.
    pub fn lock_for_rebuild(&self) -> Result<(LockedState, Option<PathBuf>)> {
        let lock = self.state_lock()?;
        let file = self.state_file();
        let kept = if file.exists() {
            let seconds = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = self.dir.join(format!("{}.{seconds}", layout::STATE_JSON_BEFORE_REPAIR));
            std::fs::rename(&file, &aside)
                .with_context(|| format!("cannot move {} aside", file.display()))?;
            Some(aside)
        } else {
            None
        };
        Ok((LockedState { _lock: lock, file, state: State::default() }, kept))
    }

    /// Takes the lock that lets one `sync` run at a time, waiting (and
    /// saying so) while another holds it: a second sync of a list plans
    /// from what the first made, rather than creating what the first is
    /// creating.
    pub fn lock_sync(&self) -> Result<File> {
        crate::system::host_dirs::root_dir(&self.dir)?;
        let lock = open_lock(&self.dir.join(layout::SYNC_LOCK))?;
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(lock),
            Err(rustix::io::Errno::WOULDBLOCK) => {
                eprintln!("sync: waiting for another sync to finish...")
            }
            Err(err) => return Err(err).context("cannot lock sync"),
        }
        flock(&lock, FlockOperation::LockExclusive).context("cannot lock sync")?;
        Ok(lock)
    }

    /// Takes the lock that lets one live activation run at a time (sync
    /// builds many containers at once, and switches them one by one).
    pub fn lock_activation(&self) -> Result<File> {
        let lock = open_lock(&self.dir.join(layout::ACTIVATION_LOCK))?;
        flock(&lock, FlockOperation::LockExclusive).context("cannot lock the activations")?;
        Ok(lock)
    }

    /// Removes container `name`'s lock file and the record of its last
    /// start, for a container that goes; the caller holds the lock (see
    /// `ContainerLock::remove`).
    pub fn forget_container_lock(&self, name: &str) {
        let _ = std::fs::remove_file(self.started_file(name));
        let _ = std::fs::remove_file(self.container_lock_file(name));
    }

    fn started_file(&self, name: &str) -> PathBuf {
        layout::started_record(&self.dir, name)
    }

    /// Records what container `name` was started with, in a file of its own
    /// rather than the state: a start neither takes the state lock nor
    /// writes the state of every container (which grows with their number).
    /// Replaced atomically but not synced: the record says what runs, and
    /// after a crash of the host nothing does.
    pub fn record_started(&self, name: &str, started: StartedWith) -> Result<()> {
        write_started(&self.started_file(name), started)
    }

    /// Removes the record of what container `name` was started with, once it
    /// has stopped: it says what runs. A container that stopped by itself
    /// keeps its record until its next start; no reader reads it while it
    /// is stopped.
    pub fn forget_started(&self, name: &str) -> Result<()> {
        remove_started(&self.started_file(name))
    }

    /// What container `name` (with state entry `entry`) was last started
    /// with by this helper; None where that is not known (never started, or
    /// its record unreadable: it is only a record of what runs).
    pub fn started_with(&self, name: &str, entry: &ContainerRecord) -> Option<StartedWith> {
        match std::fs::read(self.started_file(name)) {
            Ok(bytes) => serde_json::from_slice(&bytes).ok(),
            Err(_) => entry.started_with_before,
        }
    }

    /// Takes container `name`'s lock, waiting (and saying so) while another
    /// command holds it.
    pub fn lock_container(&self, name: &str) -> Result<ContainerLock> {
        let mut said = false;
        loop {
            if let Some(lock) = self.try_lock_container(name)? {
                return Ok(lock);
            }
            if !said {
                eprintln!(
                    "waiting for another nixcloud-container command on '{name}' to finish..."
                );
                said = true;
            }
            let path = self.container_lock_file(name);
            let file = open_lock(&path)?;
            flock(&file, FlockOperation::LockExclusive)
                .with_context(|| format!("cannot lock container '{name}'"))?;
            if still_linked(&file, &path) {
                return Ok(ContainerLock { _file: file, path });
            }
        }
    }

    /// Takes container `name`'s lock if no other command holds it.
    pub fn try_lock_container(&self, name: &str) -> Result<Option<ContainerLock>> {
        let path = self.container_lock_file(name);
        crate::system::host_dirs::root_dir(path.parent().expect("lock files are in locks/"))?;
        loop {
            let file = open_lock(&path)?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) if still_linked(&file, &path) => {
                    return Ok(Some(ContainerLock { _file: file, path }))
                }
                // Removed by its holder just before we locked it: try the new one.
                Ok(()) => continue,
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot lock container '{name}'"))
                }
            }
        }
    }
}

fn write_started(file: &Path, started: StartedWith) -> Result<()> {
    crate::system::host_dirs::root_dir(file.parent().expect("start records are in started/"))?;
    let text = serde_json::to_string(&started).expect("a start record serializes");
    // An earlier record (of a container that stopped by itself, or was
    // stopped by lxc-stop) is removed rather than replaced: ext4 writes a
    // file to disk before a rename replaces another with it (its
    // auto_da_alloc), a wait this unsynced record has no use for. A reader
    // in between finds no record, as it does before a start writes one.
    remove_started(file)?;
    crate::system::files::replace_unsynced(file, &text)
}

fn remove_started(file: &Path) -> Result<()> {
    match std::fs::remove_file(file) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("cannot remove {}", file.display()))
        }
        _ => Ok(()),
    }
}

/// The one pass over the state file of `Store::settled_entry`: each entry
/// but the one asked for is only glanced at (its phase, whether it has ids),
/// its other fields skipped unparsed, and the pass stops at the first that
/// is not settled.
mod settled {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use serde::Deserialize;

    use super::{ContainerRecord, Phase, STATE_VERSION};

    /// Of each other entry, what the opening looks at.
    #[derive(Deserialize)]
    struct Glance {
        phase: Phase,
        #[serde(default)]
        ids: Option<IgnoredAny>,
    }

    /// The whole state: the entry of the container named, None where there
    /// is none; an error where the state is of another version, or an
    /// entry is not settled.
    pub struct StateFile<'a>(pub &'a str);

    /// The `containers` object of the state.
    struct Containers<'a>(&'a str);

    const UNSETTLED: &str = "an entry is not settled";

    impl<'de> Visitor<'de> for StateFile<'_> {
        type Value = Option<ContainerRecord>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("the state")
        }

        fn visit_map<M: MapAccess<'de>>(self, mut fields: M) -> Result<Self::Value, M::Error> {
            let (mut version, mut entry) = (None, None);
            while let Some(field) = fields.next_key::<std::borrow::Cow<'de, str>>()? {
                match field.as_ref() {
                    "version" => version = Some(fields.next_value::<u32>()?),
                    "containers" => entry = Some(fields.next_value_seed(Containers(self.0))?),
                    _ => {
                        fields.next_value::<IgnoredAny>()?;
                    }
                }
            }
            if version != Some(STATE_VERSION) {
                return Err(de::Error::custom("a state of another version"));
            }
            Ok(entry.flatten())
        }
    }

    impl<'de> DeserializeSeed<'de> for Containers<'_> {
        type Value = Option<ContainerRecord>;

        fn deserialize<D: de::Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
            reader.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Containers<'_> {
        type Value = Option<ContainerRecord>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("the containers' entries")
        }

        fn visit_map<M: MapAccess<'de>>(self, mut entries: M) -> Result<Self::Value, M::Error> {
            let mut wanted = None;
            while let Some(name) = entries.next_key::<std::borrow::Cow<'de, str>>()? {
                let (phase, has_ids) = if name == self.0 {
                    let entry: ContainerRecord = entries.next_value()?;
                    let seen = (entry.phase, entry.ids.is_some());
                    wanted = Some(entry);
                    seen
                } else {
                    let glance: Glance = entries.next_value()?;
                    (glance.phase, glance.ids.is_some())
                };
                if phase != Phase::Ready || !has_ids {
                    return Err(de::Error::custom(UNSETTLED));
                }
            }
            Ok(wanted)
        }
    }
}

fn read_state(file: &Path) -> Result<State> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", file.display())),
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|err| {
        anyhow::anyhow!(
            "state file {} is damaged ({err}); it was left as it is: run \
             `nixcloud-container repair-state` to rebuild it from the containers' generations",
            file.display()
        )
    })?;
    if state.version != STATE_VERSION {
        bail!(
            "state file {} has version {}, this helper reads version {STATE_VERSION}",
            file.display(),
            state.version
        );
    }
    Ok(state)
}

impl LockedState {
    /// Writes the state atomically.
    pub fn save(&mut self) -> Result<()> {
        self.keep_earlier_start_records()?;
        let mut text = serde_json::to_string_pretty(&self.state).expect("the state serializes");
        text.push('\n');
        crate::system::files::write_atomically(&self.file, &text)
    }

    /// Gives the start records an earlier helper kept in the state a file
    /// of their own before the state is written without them.
    fn keep_earlier_start_records(&self) -> Result<()> {
        let dir = self.file.parent().expect("the state is in the state directory");
        for (name, entry) in &self.state.containers {
            let Some(started) = entry.started_with_before else { continue };
            let file = layout::started_record(dir, name);
            if !file.exists() {
                write_started(&file, started)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> crate::settings::HostConfig {
        crate::settings::HostConfig::load(Path::new("/nonexistent")).unwrap()
    }

    fn add(state: &mut State, name: &str) {
        state.containers.insert(
            name.to_string(),
            ContainerRecord::new(Phase::Creating, Source::File("/x.nix".into())),
        );
    }

    #[test]
    fn id_ranges_are_distinct_and_given_out_again() {
        let mut host = host().idmap;
        host.count = 3 * host.per_container;
        let mut state = State::default();
        let allocate = |state: &mut State, name: &str| {
            add(state, name);
            state.allocate_ids(&host, name)
        };
        let a = allocate(&mut state, "a").unwrap();
        let b = allocate(&mut state, "b").unwrap();
        let c = allocate(&mut state, "c").unwrap();
        assert_eq!([a.host_id, b.host_id, c.host_id], [100000, 165536, 231072]);
        let err = allocate(&mut state, "d").unwrap_err();
        assert!(err.to_string().contains("every id range is taken"), "{err}");
        state.containers.remove("b");
        assert_eq!(state.allocate_ids(&host, "d").unwrap(), b, "b's range is free again");
        // An entry without a range (made before ranges) holds the first one.
        state.containers.get_mut("a").unwrap().ids = None;
        state.containers.remove("c");
        assert_eq!(allocate(&mut state, "e").unwrap(), c);
        // A host that does not isolate ranges gives every container the first.
        host.isolated = false;
        add(&mut state, "f");
        assert_eq!(state.allocate_ids(&host, "f").unwrap(), a);
    }

    #[test]
    fn damaged_state_is_reported_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(crate::layout::STATE_JSON), "{\"version\": 1, \"contai")
            .unwrap();
        let store = Store::new(dir.path());
        let err = store.lock().err().unwrap();
        assert!(err.to_string().contains("repair-state"), "{err}");
        let kept = std::fs::read_to_string(dir.path().join(crate::layout::STATE_JSON)).unwrap();
        assert_eq!(kept, "{\"version\": 1, \"contai");
    }

    #[test]
    fn a_state_file_that_is_not_utf8_is_damaged_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(crate::layout::STATE_JSON), b"{\"version\": 1, \xff\xfe}")
            .unwrap();
        let err = Store::new(dir.path()).read().unwrap_err();
        assert!(
            err.to_string().contains("is damaged") && err.to_string().contains("repair-state"),
            "{err}"
        );
    }

    #[test]
    fn a_removed_lock_is_not_held_by_a_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let first = store.lock_container("web").unwrap();
        assert!(store.try_lock_container("web").unwrap().is_none());
        let waiter = std::thread::spawn({
            let dir = dir.path().to_path_buf();
            move || {
                let lock = Store::new(&dir).lock_container("web").unwrap();
                still_linked(&lock._file, &lock.path)
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        first.remove();
        assert!(waiter.join().unwrap(), "the waiter holds the lock file that is there");
    }

    #[test]
    fn saved_state_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut locked = store.lock().unwrap();
        add(&mut locked.state, "a");
        locked.save().unwrap();
        drop(locked);
        assert!(store.read().unwrap().containers.contains_key("a"));
    }

    #[test]
    fn a_start_is_recorded_beside_the_state_and_goes_with_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut locked = store.lock().unwrap();
        add(&mut locked.state, "a");
        locked.save().unwrap();
        let state_before = std::fs::read(dir.path().join(layout::STATE_JSON)).unwrap();
        let started = StartedWith { generation: 3, address: "10.101.0.7".parse().unwrap() };
        store.record_started("a", started).unwrap();
        let entry = &store.read().unwrap().containers["a"];
        assert_eq!(store.started_with("a", entry), Some(started));
        // The state itself is not written by a start.
        assert_eq!(std::fs::read(dir.path().join(layout::STATE_JSON)).unwrap(), state_before);
        // An unreadable record is no record.
        std::fs::write(layout::started_record(dir.path(), "a"), "{").unwrap();
        assert_eq!(store.started_with("a", entry), None);
        store.forget_container_lock("a");
        assert!(!layout::started_record(dir.path(), "a").exists());
    }

    #[test]
    fn an_earlier_helpers_record_of_a_start_in_the_state_is_kept_in_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let earlier = r#"{"version": 1, "containers": {"a": {"phase": "ready",
            "source": {"file": "/x.nix"}, "automaticIp": null, "addresses": [],
            "startedWith": {"generation": 2, "address": "10.101.0.9"}}}}"#;
        std::fs::write(dir.path().join(layout::STATE_JSON), earlier).unwrap();
        let store = Store::new(dir.path());
        let started = StartedWith { generation: 2, address: "10.101.0.9".parse().unwrap() };
        let entry = store.read().unwrap().containers["a"].clone();
        assert_eq!(store.started_with("a", &entry), Some(started));
        // Any command that writes the state leaves the record in its file.
        store.lock().unwrap().save().unwrap();
        let text = std::fs::read_to_string(dir.path().join(layout::STATE_JSON)).unwrap();
        assert!(!text.contains("startedWith"), "{text}");
        let entry = &store.read().unwrap().containers["a"];
        assert_eq!(entry.started_with_before, None);
        assert_eq!(store.started_with("a", entry), Some(started));
    }

    #[test]
    fn a_settled_state_gives_the_entry_and_an_unsettled_one_the_whole_opening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.settled_entry("a").is_none(), "no state yet");
        let host = host().idmap;
        let mut locked = store.lock().unwrap();
        for name in ["a", "b"] {
            add(&mut locked.state, name);
            locked.state.containers.get_mut(name).unwrap().mark_switching(None);
            locked.state.allocate_ids(&host, name).unwrap();
        }
        locked.save().unwrap();
        let entry = store.settled_entry("a").expect("all ready, all with ids");
        assert_eq!(entry.ids, locked.state.containers["a"].ids);
        assert!(store.settled_entry("ghost").is_none());
        // Another container half-made, or without its ids: the opening's work.
        locked.state.containers.get_mut("b").unwrap().phase = Phase::Creating;
        locked.save().unwrap();
        assert!(store.settled_entry("a").is_none());
        let b = locked.state.containers.get_mut("b").unwrap();
        b.phase = Phase::Ready;
        b.ids = None;
        locked.save().unwrap();
        assert!(store.settled_entry("a").is_none());
        // Its own entry unfinished.
        locked.state.allocate_ids(&host, "b").unwrap();
        locked.state.containers.get_mut("a").unwrap().phase = Phase::Updating;
        locked.save().unwrap();
        assert!(store.settled_entry("a").is_none());
        locked.state.containers.get_mut("a").unwrap().phase = Phase::Ready;
        locked.save().unwrap();
        assert!(store.settled_entry("a").is_some(), "settled again");
        // A state of another version.
        let file = dir.path().join(layout::STATE_JSON);
        let text = std::fs::read_to_string(&file).unwrap();
        let other = text.replacen(&format!("\"version\": {STATE_VERSION}"), "\"version\": 999", 1);
        assert_ne!(other, text);
        std::fs::write(&file, other).unwrap();
        assert!(store.settled_entry("a").is_none());
        // A damaged state is the opening's to report.
        std::fs::write(dir.path().join(layout::STATE_JSON), "{\"version\": 1, \"contain").unwrap();
        assert!(store.settled_entry("a").is_none());
    }
}
