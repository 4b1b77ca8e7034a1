//! export, import and move: a container to one file and back, under its name
//! or another, on this host or a second one (a host of its own: its own
//! namespace, LXC path, profiles, state and data), and over SSH; a damaged
//! or crafted export is refused with nothing made.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{path_str, Host, HELPER};

/// A bind mount of the container's own data directory.
const DATA: &str = r#"bindMounts."/var/lib/app" = { hostPath = "app"; isReadOnly = false; };"#;

fn owner(path: &Path) -> (u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

/// Exports container `name` of `host` to a file; returns it and the digest
/// export printed.
fn export(host: &Host, name: &str) -> (PathBuf, String) {
    let file = host.dir.path().join(format!("{name}.export"));
    let said = host.ok(&["export", name, path_str(&file)]);
    let digest = said.rsplit("sha256 ").next().unwrap().trim().to_string();
    assert_eq!(digest.len(), 64, "{said}");
    (file, digest)
}

/// Makes container `name` on `host`, boots it and leaves files in its root
/// (one owned by uid 1000 inside, a symbolic link, a FIFO) and its data
/// directory; stopped again.
fn with_files(host: &Host, name: &str, version: &str) {
    let file = host.tiny(&format!("{name}.nix"), version, DATA);
    host.ok(&["create", name, path_str(&file)]);
    host.start_booted(name);
    host.ok(&[
        "run",
        name,
        "sh",
        "-c",
        "echo kept > /var/lib/app/note && mkdir -p /srv && echo mine > /srv/own && \
         chown 1000:1000 /srv/own && ln -s /etc/hostname /srv/link && mkfifo /srv/fifo",
    ]);
    host.ok(&["stop", name]);
}

/// The files `with_files` left are in `host`'s container `name`, owned by
/// its range from `first_id`.
fn assert_files(host: &Host, name: &str, first_id: u32) {
    let rootfs = host.lxc_path().join(name).join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("srv/own")).unwrap(), "mine\n");
    assert_eq!(owner(&rootfs.join("srv/own")), (first_id + 1000, first_id + 1000));
    assert_eq!(owner(&rootfs.join("srv")), (first_id, first_id));
    assert_eq!(std::fs::read_link(rootfs.join("srv/link")).unwrap(), Path::new("/etc/hostname"));
    assert!(std::fs::symlink_metadata(rootfs.join("srv/fifo")).unwrap().file_type().is_fifo());
    let note = host.state_dir().join("data").join(name).join("app/note");
    assert_eq!(std::fs::read_to_string(&note).unwrap(), "kept\n");
    assert_eq!(owner(&note), (first_id, first_id));
    assert_eq!(owner(&host.state_dir().join("data").join(name)), (0, 0), "root's gate");
}

fn state_entry(host: &Host, name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(host.state_dir().join("state.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["containers"][name].clone()
}

fn list(host: &Host, entries: &str) -> String {
    path_str(&host.file("list.json", entries)).to_string()
}

#[test]
fn an_export_gives_back_the_generations_and_files_after_a_destroy() {
    let host = Host::new();
    // Its address is the second: the first is free when it comes back.
    host.ok(&["create", "early", path_str(&host.tiny("early.nix", "1", ""))]);
    // Made by sync, which would prune it: once imported, it is root's own.
    let first = host.tiny("web1.nix", "1", DATA);
    host.ok(&[
        "sync",
        "--file",
        &list(&host, &format!(r#"{{"web": {{"file": "{}"}}}}"#, path_str(&first))),
    ]);
    for version in ["2", "3"] {
        host.ok(&[
            "update",
            "web",
            path_str(&host.tiny(&format!("web{version}.nix"), version, DATA)),
        ]);
    }
    host.ok(&["switch-generation", "web", "2"]);
    assert_eq!(host.start_booted("web"), "2");
    host.ok(&[
        "run",
        "web",
        "sh",
        "-c",
        "echo kept > /var/lib/app/note && mkdir -p /srv && echo mine > /srv/own && \
         chown 1000:1000 /srv/own && ln -s /etc/hostname /srv/link && mkfifo /srv/fifo",
    ]);
    host.ok(&["stop", "web"]);
    let generations = host.ok(&["list-generations", "web", "--json"]);

    let (file, digest) = export(&host, "web");
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600, "root's alone");
    host.ok(&["destroy", "web"]);
    host.ok(&["destroy", "early"]);
    let imported = host.ok(&["import", path_str(&file), "--sha256", &digest]);
    assert!(imported.contains("generations 1, 2, 3 (current 2)"), "{imported}");
    // Its name follows it, as a created container's does (names.rs).
    let named = std::fs::read_to_string(host.state_dir().join("hosts/web")).unwrap_or_default();
    assert_eq!(named, "10.101.0.3 web.containers\n");

    // The same generations: numbers, dates, addresses (10.101.0.3 kept,
    // though .2 is free), systems, the current one.
    assert!(generations.contains("10.101.0.3"), "{generations}");
    assert_eq!(host.ok(&["list-generations", "web", "--json"]), generations);
    assert_files(&host, "web", 100000);
    assert_eq!(host.start_booted("web"), "2", "it boots its current generation");
    assert!(host.pings("10.101.0.3"));
    assert!(host.processes("web").iter().all(|(_, uid)| *uid >= 100000));
    host.ok(&["stop", "web"]);
    // Sync prunes only what it made.
    host.ok(&["sync", "--file", &list(&host, "{}"), "--prune"]);
    host.ok(&["exists", "web"]);
    assert!(state_entry(&host, "web").get("synced").is_none());
}

#[test]
fn another_name_makes_a_clone_beside_the_original() {
    let host = Host::new();
    with_files(&host, "web", "1");
    // A running container is exported only when asked, as it is.
    host.start_booted("web");
    let running = host.dir.path().join("running.export");
    let error = host.fails(&["export", "web", path_str(&running)], 1);
    assert!(error.contains("is running") && error.contains("--running"), "{error}");
    assert!(!running.exists());
    let run = host.helper(&["export", "web", path_str(&running), "--running"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("copied as they are while it writes them"), "{run:?}");
    host.ok(&["stop", "web"]);
    let (file, _) = export(&host, "web");
    let cloned = host.ok(&["import", path_str(&file), "web2"]);
    assert!(cloned.contains("10.101.0.3 on brNC-hostonly, ids 165536-231071"), "{cloned}");
    assert_eq!(state_entry(&host, "web2")["ids"]["hostId"], 165536);
    assert_files(&host, "web2", 165536);
    assert_eq!(host.start_booted("web"), "1");
    assert_eq!(host.start_booted("web2"), "1");
    assert!(host.pings("10.101.0.2") && host.pings("10.101.0.3"));
    assert!(host.processes("web2").iter().all(|(_, uid)| (165536..231072).contains(uid)));
    let note = host.ok(&["run", "web2", "cat", "/var/lib/app/note"]);
    assert_eq!(note, "kept\n");
    // The clone's files are its own: the original's stay as they were.
    host.ok(&["run", "web2", "sh", "-c", "echo changed > /var/lib/app/note"]);
    assert_eq!(host.ok(&["run", "web", "cat", "/var/lib/app/note"]), "kept\n");
}

#[test]
fn an_import_on_a_second_host_gets_its_own_range_and_address_there() {
    let first = Host::new();
    let second = Host::new();
    with_files(&first, "web", "from-first");
    let (file, _) = export(&first, "web");
    // The second host's first range and address are taken.
    second.ok(&["create", "other", path_str(&second.tiny("other.nix", "1", ""))]);
    let imported = second.helper(&["import", path_str(&file)]);
    assert_eq!(imported.code, 0, "{imported:?}");
    assert!(
        imported.stdout.contains("10.101.0.3 on brNC-hostonly, ids 165536-231071"),
        "{imported:?}"
    );
    assert!(
        imported.stderr.contains("note: 10.101.0.2, the address it had where it was exported"),
        "{imported:?}"
    );
    assert_files(&second, "web", 165536);
    assert_eq!(second.start_booted("web"), "from-first");
    assert!(second.processes("web").iter().all(|(_, uid)| (165536..231072).contains(uid)));
    // The first host still has its own.
    first.ok(&["exists", "web"]);
}

fn store_path_is_valid(path: &str) -> bool {
    Command::new("nix-store")
        .args(["--check-validity", path])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn a_cut_short_or_changed_export_is_refused_and_makes_nothing() {
    let first = Host::new();
    // A system no other test has, so that the store loses it with the container.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let unique = format!("only{}x{}", std::process::id(), nanos.as_nanos());
    first.ok(&["create", "web", path_str(&first.tiny("web.nix", &unique, DATA))]);
    let generation = std::fs::canonicalize(first.profiles_dir().join("web/profile")).unwrap();
    let system = std::fs::canonicalize(generation.join("system")).unwrap();
    let (file, digest) = export(&first, "web");
    first.ok(&["destroy", "web"]);
    let deleted =
        Command::new("nix-store").arg("--delete").arg(&generation).arg(&system).output().unwrap();
    assert!(deleted.status.success(), "{deleted:?}");
    let system = path_str(&system).to_string();
    assert!(!store_path_is_valid(&system));

    let second = Host::new();
    let bytes = std::fs::read(&file).unwrap();
    let mut changed = bytes.clone();
    changed[bytes.len() / 2] ^= 0x20;
    let mut longer = bytes.clone();
    longer.push(b'\n');
    let damaged: [(&str, &[u8]); 5] = [
        ("first-half", &bytes[..bytes.len() / 2]),
        ("without-end", &bytes[..bytes.len() - 37]),
        ("one-byte-short", &bytes[..bytes.len() - 1]),
        ("changed", &changed),
        ("longer", &longer),
    ];
    for (what, content) in damaged {
        let path = second.dir.path().join(what);
        std::fs::write(&path, content).unwrap();
        let error = second.fails(&["import", path_str(&path)], 1);
        assert!(error.contains("damaged"), "{what}: {error}");
        second.assert_nothing_created();
        assert!(!second.state_dir().join("data/web").exists(), "{what}");
        assert!(!store_path_is_valid(&system), "{what}: no store path is added");
    }
    let other = "0".repeat(64);
    let error = second.fails(&["import", path_str(&file), "--sha256", &other], 1);
    assert!(error.contains("not 0000"), "{error}");
    second.assert_nothing_created();
    assert!(!store_path_is_valid(&system));

    // The whole export brings the store paths back.
    second.ok(&["import", path_str(&file), "--sha256", &digest]);
    assert!(store_path_is_valid(&system));
    assert_eq!(second.start_booted("web"), unique);
}

#[test]
fn what_an_export_asks_of_the_host_is_checked_as_a_container_files() {
    let first = Host::new();
    first.add_bridge("myOwnBridge", "10.10.0.1/16");
    first.allow_bridge("myOwnBridge", "10.10.0.1", 16);
    let own =
        first.tiny("own.nix", "1", r#"network = { bridge = "myOwnBridge"; ip = "10.10.1.2"; };"#);
    first.ok(&["create", "own", path_str(&own)]);
    let settings = first.file("first.conf", "lxc.environment = GREETING=from-first\n");
    let rooted = first.tiny("rooted.nix", "1", "");
    first.ok(&["create", "rooted", path_str(&rooted), "--lxc-config", path_str(&settings)]);
    let (own_file, _) = export(&first, "own");
    let (rooted_file, _) = export(&first, "rooted");

    let second = Host::new();
    let error = second.fails(&["import", path_str(&own_file)], 1);
    assert!(error.contains("not a bridge this host lets containers join"), "{error}");
    second.assert_nothing_created();

    // A static address another container has here: one clear error.
    let fixed = r#"network.ip = "10.101.0.50";"#;
    first.ok(&["create", "fixed", path_str(&first.tiny("fixed.nix", "1", fixed))]);
    let (fixed_file, _) = export(&first, "fixed");
    second.ok(&["create", "holder", path_str(&second.tiny("holder.nix", "1", fixed))]);
    let error = second.fails(&["import", path_str(&fixed_file)], 1);
    assert!(
        error.contains("10.101.0.50 on brNC-hostonly is already used by container 'holder'"),
        "{error}"
    );
    assert_eq!(second.helper(&["exists", "fixed"]).code, 1);
    second.ok(&["destroy", "holder"]);
    second.assert_nothing_created();

    // Root's settings from elsewhere are not applied; root's here are.
    let run = second.helper(&["import", path_str(&rooted_file)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("not applied here"), "{run:?}");
    let generation = std::fs::canonicalize(second.profiles_dir().join("rooted/profile")).unwrap();
    assert!(!generation.join("lxc-root.conf").exists());
    second.ok(&["destroy", "rooted"]);
    let mine = second.file("second.conf", "lxc.environment = GREETING=from-second\n");
    second.ok(&["import", path_str(&rooted_file), "--lxc-config", path_str(&mine)]);
    let generation = std::fs::canonicalize(second.profiles_dir().join("rooted/profile")).unwrap();
    assert_eq!(
        std::fs::read_to_string(generation.join("lxc-root.conf")).unwrap(),
        "lxc.environment = GREETING=from-second\n"
    );
}

/// `export` with its root section replaced by `root` (a tar stream) and
/// its digest made again: what someone who can write an export can make.
fn with_root(export: &[u8], root: &[u8]) -> Vec<u8> {
    with_section(export, b'R', root)
}

/// `export` with its section of frames of `kind` (docs/export-format.md)
/// replaced by `content`, and its digest made again.
fn with_section(export: &[u8], kind: u8, content: &[u8]) -> Vec<u8> {
    let first_line = export.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut out = export[..first_line].to_vec();
    let mut at = first_line;
    let mut replaced = false;
    while export[at] != b'E' {
        let length = u32::from_be_bytes(export[at + 1..at + 5].try_into().unwrap()) as usize;
        if export[at] != kind {
            out.extend_from_slice(&export[at..at + 5 + length]);
        } else if !replaced {
            for chunk in content.chunks(1 << 20) {
                out.push(kind);
                out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
                out.extend_from_slice(chunk);
            }
            replaced = true;
        }
        at += 5 + length;
    }
    let mut sha =
        Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut sha.stdin.take().unwrap(), &out).unwrap();
    let hex = String::from_utf8(sha.wait_with_output().unwrap().stdout).unwrap();
    let digest: Vec<u8> =
        (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    out.push(b'E');
    out.extend_from_slice(&32u32.to_be_bytes());
    out.extend_from_slice(&digest);
    out
}

/// A tar stream made by Python's tarfile (ustar) of `entries`, a Python
/// list of `entry(name, type, data, **attributes)`.
fn crafted_tar(entries: &str) -> Vec<u8> {
    let script = format!(
        "import io, sys, tarfile\n\
         def entry(name, kind=tarfile.REGTYPE, data=b'', **attributes):\n\
         \x20   info = tarfile.TarInfo(name)\n\
         \x20   info.type, info.size = kind, len(data)\n\
         \x20   for key, value in attributes.items(): setattr(info, key, value)\n\
         \x20   return info, data\n\
         out = io.BytesIO()\n\
         with tarfile.open(fileobj=out, mode='w', format=tarfile.USTAR_FORMAT) as tar:\n\
         \x20   for info, data in [{entries}]: tar.addfile(info, io.BytesIO(data))\n\
         sys.stdout.buffer.write(out.getvalue())\n"
    );
    let made = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    made.stdout
}

#[test]
fn a_crafted_export_reaches_nothing_outside_its_container() {
    let first = Host::new();
    first.ok(&["create", "web", path_str(&first.tiny("web.nix", "1", ""))]);
    let (file, _) = export(&first, "web");
    let export = std::fs::read(&file).unwrap();
    let second = Host::new();
    let outside = second.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host's").unwrap();
    let cases = [
        ("entry('sda', tarfile.BLKTYPE, devmajor=8)".to_string(), "device node"),
        ("entry('null', tarfile.CHRTYPE, devmajor=1, devminor=3)".to_string(), "device node"),
        (
            format!(
                "entry('escape', tarfile.SYMTYPE, linkname={:?}), entry('escape/planted', data=b'x')",
                path_str(&outside)
            ),
            "not in a directory written before it",
        ),
        (
            "entry('shadow', tarfile.LNKTYPE, linkname='../../../../etc/shadow')".to_string(),
            "not a path below",
        ),
        (
            "entry('up', tarfile.SYMTYPE, linkname='..'), \
             entry('copy', tarfile.LNKTYPE, linkname='up/outside/secret')"
                .to_string(),
            "which is not there",
        ),
        ("entry('../escape', data=b'x')".to_string(), "not a path below"),
        ("entry('mine', uid=70000)".to_string(), "outside a container's"),
    ];
    for (entries, message) in cases {
        let crafted = second.dir.path().join("crafted.export");
        std::fs::write(&crafted, with_root(&export, &crafted_tar(&entries))).unwrap();
        let error = second.fails(&["import", path_str(&crafted)], 1);
        assert!(error.contains(message), "{entries}: {error}");
        second.assert_nothing_created();
        let left: Vec<_> =
            std::fs::read_dir(&outside).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, ["secret"], "{entries}");
    }
    assert_eq!(std::fs::read_to_string(outside.join("secret")).unwrap(), "host's");
    assert!(!second.dir.path().join("escape").exists());
    // The untouched export is fine.
    second.ok(&["import", path_str(&file)]);
}

/// The header of `export` (its JSON).
fn header_of(export: &[u8]) -> serde_json::Value {
    let mut at = export.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut json = Vec::new();
    while export[at] == b'H' {
        let length = u32::from_be_bytes(export[at + 1..at + 5].try_into().unwrap()) as usize;
        json.extend_from_slice(&export[at + 5..at + 5 + length]);
        at += 5 + length;
    }
    serde_json::from_slice(&json).unwrap()
}

#[test]
fn a_crafted_exports_requests_meet_the_hosts_permissions() {
    let first = Host::new();
    first.ok(&["create", "web", path_str(&first.tiny("web.nix", "1", ""))]);
    let (file, _) = export(&first, "web");
    let export = std::fs::read(&file).unwrap();
    let header = header_of(&export);
    let second = Host::new();
    // What a container file may ask of a host only where the host allows it,
    // written into the export's recorded spec by whoever could write the file.
    let cases: [(&str, serde_json::Value, &str); 4] = [
        (
            "bindMounts",
            serde_json::json!([{ "mountPoint": "/mnt", "hostPath": "/etc", "isReadOnly": false }]),
            "host path \"/etc\" is not one this host lets containers see",
        ),
        (
            "devices",
            serde_json::json!(["tun"]),
            "tun is not a device this host lets containers have",
        ),
        ("nixDaemon", serde_json::json!(true), "which this host does not allow"),
        ("wholeStore", serde_json::json!(true), "which this host does not allow"),
    ];
    for (key, value, message) in cases {
        let mut crafted_header = header.clone();
        crafted_header["generations"][0]["spec"][key] = value;
        let crafted = second.dir.path().join("crafted.export");
        let content = serde_json::to_vec(&crafted_header).unwrap();
        std::fs::write(&crafted, with_section(&export, b'H', &content)).unwrap();
        let error = second.fails(&["import", path_str(&crafted)], 1);
        assert!(error.contains(message), "{key}: {error}");
        second.assert_nothing_created();
    }
    // The untouched header is fine.
    let same = second.dir.path().join("same.export");
    let content = serde_json::to_vec(&header).unwrap();
    std::fs::write(&same, with_section(&export, b'H', &content)).unwrap();
    second.ok(&["import", path_str(&same)]);
}

/// Moves running container `web` of `first` to `second` through `ssh` (a
/// command line standing for ssh); the second host's first range and
/// address are taken.
fn moves_to_the_second_host(first: &Host, second: &Host, ssh: &str) {
    with_files(first, "web", "moved");
    assert_eq!(first.start_booted("web"), "moved");
    second.ok(&["create", "other", path_str(&second.tiny("other.nix", "1", ""))]);
    // A name the other side has is refused before anything stops.
    second.ok(&["create", "taken", path_str(&second.tiny("taken.nix", "1", ""))]);
    first.ok(&["create", "taken", path_str(&first.tiny("taken.nix", "1", ""))]);
    let error = first.fails(&["move", "taken", "root@second", "--ssh", ssh, "--remote", HELPER], 1);
    assert!(error.contains("already exists"), "{error}");
    first.ok(&["exists", "taken"]);

    let moved = first.ok(&["move", "web", "root@second", "--ssh", ssh, "--remote", HELPER]);
    // The second host shares this machine's store: it has every path.
    assert!(
        moved.contains("moved container 'web' to root@second (started there): 0 store paths sent"),
        "{moved}"
    );
    assert_eq!(first.helper(&["exists", "web"]).code, 1, "destroyed here");
    assert!(!first.lxc_path().join("web").exists());
    assert_eq!(second.state("web"), "RUNNING");
    assert_eq!(second.ok(&["run", "web", "cat", "/var/lib/app/note"]), "kept\n");
    assert!(second.processes("web").iter().all(|(_, uid)| (231072..296608).contains(uid)));
    assert_eq!(second.ok(&["show-ip", "web"]).trim(), "10.101.0.4");
}

/// A stand-in for ssh that runs the command line as sshd does (with a
/// shell), in the second host's namespace and with its settings.
fn local_transport(first: &Host, second: &Host) -> String {
    let settings: Vec<String> = second
        .helper_env()
        .iter()
        .map(|(key, value)| format!("{key}={}", value.display()))
        .collect();
    let script = format!(
        "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done\nshift 2\n\
         exec ip netns exec {} env {} sh -c \"$1\"\n",
        second.netns,
        settings.join(" ")
    );
    let path = first.file("local-ssh", &script);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path_str(&path).to_string()
}

#[test]
fn move_streams_the_export_into_the_other_hosts_import() {
    let first = Host::new();
    let second = Host::new();
    moves_to_the_second_host(&first, &second, &local_transport(&first, &second));
}

/// sshd (Debian's openssh-server) on 127.0.0.1 in the second host's
/// namespace, with keys of its own, running the helper with the second
/// host's settings; killed when dropped.
struct Sshd {
    child: std::process::Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(file: &Path) {
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", path_str(file)])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
}

#[test]
fn move_over_ssh_to_a_second_host() {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        eprintln!(
            "skipped: /usr/sbin/sshd is missing (Debian's openssh-server: tests/run --install)"
        );
        return;
    }
    let first = Host::new();
    let second = Host::new();
    let dir = second.dir.path();
    keygen(&dir.join("host_key"));
    keygen(&dir.join("client_key"));
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    let host_key = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
    std::fs::write(dir.join("known_hosts"), format!("127.0.0.1 {host_key}")).unwrap();
    let settings: Vec<String> = second
        .helper_env()
        .iter()
        .map(|(key, value)| format!("{key}={}", value.display()))
        .collect();
    let config = format!(
        "ListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
         PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\nUsePAM no\n\
         PidFile {d}/sshd.pid\nSetEnv {}\n",
        settings.join(" "),
        d = dir.display()
    );
    let config_file = second.file("sshd_config", &config);
    // Where sshd separates its privileges (Debian's service makes it).
    std::fs::create_dir_all("/run/sshd").unwrap();
    let _sshd = Sshd {
        child: Command::new("ip")
            .args([
                "netns",
                "exec",
                &second.netns,
                path_str(sshd),
                "-D",
                "-e",
                "-f",
                path_str(&config_file),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    let ssh = format!(
        "ip netns exec {} ssh -i {d}/client_key -o UserKnownHostsFile={d}/known_hosts \
         -o StrictHostKeyChecking=yes -o BatchMode=yes -o HostKeyAlias=127.0.0.1 \
         -o Hostname=127.0.0.1",
        second.netns,
        d = dir.display()
    );
    let ssh_words: Vec<&str> = ssh.split_whitespace().collect();
    second.wait_for("sshd to listen", || {
        Command::new(ssh_words[0])
            .args(&ssh_words[1..])
            .args(["root@127.0.0.1", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    moves_to_the_second_host(&first, &second, &ssh);
}

#[test]
fn a_killed_import_is_removed_by_the_next_command() {
    let first = Host::new();
    let file = first.tiny("web.nix", "1", DATA);
    first.ok(&["create", "web", path_str(&file)]);
    let data = first.state_dir().join("data/web/app");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("large"), vec![7u8; 8 << 20]).unwrap();
    let (export, _) = export(&first, "web");
    let bytes = std::fs::read(&export).unwrap();

    let second = Host::new();
    let mut child = second
        .helper_command(&["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &bytes[..bytes.len() - (4 << 20)]).unwrap();
    // Killed half-way through the files, recorded as being made.
    second.wait_for("the import to record the container", || {
        state_entry(&second, "web")["phase"] == "creating"
            && second.state_dir().join("data/web/app").exists()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert!(second.lxc_path().join("web/rootfs").exists(), "half-made");

    // The next command removes it; the import then makes it whole.
    let run = second.helper(&["import", path_str(&export)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("removing what an interrupted command left of container 'web'"),
        "{run:?}"
    );
    assert_eq!(
        std::fs::read(second.state_dir().join("data/web/app/large")).unwrap().len(),
        8 << 20
    );
    second.ok(&["destroy", "web"]);
    second.assert_nothing_created();
}

fn nixpkgs_lib() -> Option<String> {
    let lib =
        std::env::var("NIXPKGS_LIB").ok().filter(|dir| Path::new(dir).join("default.nix").exists());
    if lib.is_none() {
        eprintln!("skipped: set NIXPKGS_LIB to a copy of nixpkgs' lib to test NixOS containers");
    }
    lib
}

#[test]
fn a_nixos_container_comes_over_only_under_its_name_and_address() {
    let Some(lib) = nixpkgs_lib() else { return };
    let fake =
        format!("-I nixpkgs={}/tests/fake-nixpkgs -I nixpkgs-lib={lib}", crate::common::REPO);
    let first = Host::new();
    let example = format!("{}/examples/example.nix", crate::common::REPO);
    first.ok(&["create", "ex", &example, "-n", &fake]);
    let (file, _) = export(&first, "ex");
    // Its system configures 'ex' at 10.101.0.2 inside: not a clone's.
    let error = first.fails(&["import", path_str(&file), "ex2"], 1);
    assert!(error.contains("NixOS system built for container 'ex' at 10.101.0.2/16"), "{error}");
    assert!(error.contains("as 'ex2' at 10.101.0.3/16"), "{error}");
    assert_eq!(first.helper(&["exists", "ex2"]).code, 1);
    // Nor where its address is taken.
    let second = Host::new();
    second.ok(&["create", "other", path_str(&second.tiny("other.nix", "1", ""))]);
    let error = second.fails(&["import", path_str(&file)], 1);
    assert!(
        error.contains("at 10.101.0.3/16 it would configure the old name and address"),
        "{error}"
    );
    second.ok(&["destroy", "other"]);
    second.assert_nothing_created();
    // Under its name where its address is free it is whole, with no nixpkgs here.
    second.ok(&["import", path_str(&file)]);
    assert_eq!(second.start_booted("ex"), "ex_10.101.0.2");
}

#[test]
fn lib_spec_nix_checks_an_imported_generations_spec_again() {
    let host = Host::new();
    // Every kind of key: a bind mount, a flag, limits of each unit.
    let keys = format!(
        "{DATA} ephemeral = true; limits = {{ cpu.max = 0.5; memory.max = \"512M\"; \
         pids.max = 300; io.weight = 50; }};"
    );
    host.ok(&["create", "web", path_str(&host.tiny("web.nix", "1", &keys))]);
    let generation = std::fs::canonicalize(host.profiles_dir().join("web/profile")).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(generation.join("spec.json")).unwrap())
            .unwrap();
    let system = meta["system"].as_str().unwrap().to_string();
    // As import hands it over (lib/cli.nix's `spec`): checked by fromSpec.
    let checked = |spec: &serde_json::Value| {
        let output = Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json", "--argstr", "spec", &spec.to_string()])
            .args(["--argstr", "system", &system, "--expr"])
            .arg(format!(
                "{{ spec, system }}: (import {}/lib/spec.nix).fromSpec \"recorded\" system \
                 (builtins.fromJSON spec)",
                crate::common::REPO
            ))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        match output.status.success() {
            true => Ok(serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()),
            false => Err(stderr),
        }
    };
    let spec = meta["spec"].clone();
    assert_eq!(checked(&spec).unwrap(), spec, "a spec lib/spec.nix wrote comes back as it is");
    let mut without_limits = spec.clone();
    without_limits["limits"].as_object_mut().unwrap().retain(|_, value| !value.is_null());
    assert_eq!(without_limits["limits"].as_object().unwrap().len(), 4, "{without_limits}");
    assert_eq!(
        checked(&without_limits).unwrap(),
        spec,
        "unset limits as the helper leaves them out"
    );
    /// A change made to a recorded spec.
    type Change<'a> = &'a dyn Fn(&mut serde_json::Value);
    let changed = |change: Change| {
        let mut spec = spec.clone();
        change(&mut spec);
        checked(&spec).unwrap_err()
    };
    let cases: [(Change, &str); 4] = [
        (&|spec| spec["kind"] = "vm".into(), "neither"),
        (&|spec| spec["hooks"] = "/bin/sh".into(), "not one lib/spec.nix writes"),
        (&|spec| spec["devices"] = serde_json::json!(["sda"]), "devices"),
        (&|spec| spec["bindMounts"][0]["mountPoint"] = "../etc".into(), "bindMounts"),
    ];
    for (change, message) in cases {
        let error = changed(change);
        assert!(error.contains(message), "{message}: {error}");
    }
}
