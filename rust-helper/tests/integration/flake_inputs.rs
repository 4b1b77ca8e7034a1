//! A tenant's flake reads nothing of the host outside its own directory
//! (flake_inputs.rs, lib/tenant-flake.nix): neither through its flake.lock
//! (an input it names, one flake.nix declares and the lock lacks, the lock of
//! a flake that is not a local directory) nor through its code
//! (builtins.getFlake, builtins.fetchTree), and a refused flake leaves
//! nothing of the host in the store. What is its own, what is remote and what
//! root allows still works.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{path_str, Host, REPO};

/// A root-only host directory with a file of unique content: what a tenant
/// must not read.
struct Secret {
    dir: PathBuf,
    content: String,
}

impl Secret {
    fn new(host: &Host, name: &str) -> Secret {
        let dir = host.dir.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let content = format!("secret{}x{}", std::process::id(), nanos.as_nanos());
        let file = dir.join("s");
        std::fs::write(&file, &content).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Secret { dir, content }
    }

    /// The NAR hash of the directory, as a lock holds it.
    fn nar_hash(&self) -> String {
        output(
            Command::new("nix")
                .args(["--extra-experimental-features", "nix-command", "hash", "path"])
                .arg(&self.dir),
        )
    }

    /// The store path a copy of the directory gets (Nix's path fetcher names
    /// it "source").
    fn copy_in_store(&self) -> PathBuf {
        let hash = output(Command::new("nix-hash").args(["--type", "sha256"]).arg(&self.dir));
        let path = output(Command::new("nix-store").args([
            "--print-fixed-path",
            "--recursive",
            "sha256",
            &hash,
            "source",
        ]));
        PathBuf::from(path)
    }

    /// Fails unless nothing of the secret is in the store: not its copy,
    /// nor any store path made since `before` holding its content.
    fn assert_not_in_store(&self, before: &BTreeSet<String>) {
        let copy = self.copy_in_store();
        assert!(!copy.exists(), "the secret directory was copied to {}", copy.display());
        for new in store_listing().difference(before) {
            let path = Path::new("/nix/store").join(new);
            // A path that went meanwhile (another test's) holds nothing.
            let grep = Command::new("grep")
                .args(["-rqF", &self.content])
                .arg(&path)
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(!grep.success(), "{} holds the secret", path.display());
        }
    }
}

fn output(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn store_listing() -> BTreeSet<String> {
    std::fs::read_dir("/nix/store")
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A flake directory `name` whose container `web` is the tiny system with
/// `version` (a Nix expression over `inputs`), declaring `inputs` (Nix
/// attribute definitions under `inputs.`).
fn flake(host: &Host, name: &str, inputs: &str, arguments: &str, version: &str) -> PathBuf {
    let dir = host.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("flake.nix"),
        format!(
            "{{\n  {inputs}\n  outputs = {{ self{arguments} }}: {{ nixcloudContainers.web = {{\n\
             \x20   system = import {REPO}/examples/tiny/system.nix {{ version = {version}; }};\n\
             \x20 }}; }};\n}}\n"
        ),
    )
    .unwrap();
    dir
}

/// Writes flake.lock with `nodes` besides the root, whose inputs are the
/// nodes by their names.
fn lock(dir: &Path, nodes: serde_json::Value) {
    let mut all = nodes.as_object().unwrap().clone();
    let inputs: serde_json::Map<String, serde_json::Value> =
        all.keys().map(|name| (name.clone(), name.clone().into())).collect();
    all.insert("root".to_string(), serde_json::json!({ "inputs": inputs }));
    let lock = serde_json::json!({ "nodes": all, "root": "root", "version": 7 });
    std::fs::write(dir.join("flake.lock"), lock.to_string()).unwrap();
}

/// A lock node of a path input that is no flake.
fn path_node(path: &str, nar_hash: &str) -> serde_json::Value {
    serde_json::json!({
        "flake": false,
        "locked": { "narHash": nar_hash, "path": path, "type": "path" },
        "original": { "path": path, "type": "path" },
    })
}

const WRONG_HASH: &str = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

#[test]
fn a_lock_naming_a_host_path_is_refused_before_anything_is_fetched() {
    let host = Host::new();
    let secret = Secret::new(&host, "secret");
    let before = store_listing();
    let secret_path = path_str(&secret.dir).to_string();
    let dir = flake(
        &host,
        "tenant",
        &format!("inputs.hs = {{ url = \"path:{secret_path}\"; flake = false; }};"),
        ", hs",
        "builtins.readFile \"${hs}/s\"",
    );
    // The attack as reported: first a made-up hash (Nix copies the
    // directory to compare), then the one the copy had.
    for hash in [WRONG_HASH.to_string(), secret.nar_hash()] {
        lock(&dir, serde_json::json!({ "hs": path_node(&secret_path, &hash) }));
        let err = host.fails(&["create", "web", "--flake", path_str(&dir)], 1);
        assert!(
            err.contains("input 'hs' reads the host path")
                && err.contains(&secret_path)
                && err.contains("allowedFlakeInputPaths"),
            "{err}"
        );
        host.assert_nothing_created();
        secret.assert_not_in_store(&before);
        // Nor is the flake's own directory: its lock is read where it is.
        let own = Secret { dir: dir.clone(), content: String::new() }.copy_in_store();
        assert!(!own.exists(), "the refused flake was copied to {}", own.display());
    }
    // The same through a path that climbs out of the flake's directory.
    let climbing = format!("{}/../secret", path_str(&dir));
    lock(&dir, serde_json::json!({ "hs": path_node(&climbing, &secret.nar_hash()) }));
    let err = host.fails(&["create", "web", "--flake", path_str(&dir)], 1);
    assert!(err.contains("reads the host path"), "{err}");
    // sync --flake reads the flake through the same step.
    let err = host.fails(&["sync", "--flake", path_str(&dir)], 1);
    assert!(err.contains("reads the host path"), "{err}");
    host.assert_nothing_created();
    secret.assert_not_in_store(&before);
}

#[test]
fn an_input_the_lock_lacks_is_not_fetched() {
    let host = Host::new();
    let secret = Secret::new(&host, "secret");
    let before = store_listing();
    let inputs =
        format!("inputs.hs = {{ url = \"path:{}\"; flake = false; }};", path_str(&secret.dir));
    let dir = flake(&host, "tenant", &inputs, ", hs", "builtins.readFile \"${hs}/s\"");
    // No lock at all: Nix would lock the flake, fetching the input.
    let err = host.fails(&["create", "web", "--flake", path_str(&dir)], 1);
    assert!(err.contains("flake.lock lacks the input 'hs'"), "{err}");
    host.assert_nothing_created();
    secret.assert_not_in_store(&before);
    // A lock that has other inputs, but not this one.
    let own = dir.join("data");
    std::fs::create_dir(&own).unwrap();
    std::fs::write(own.join("v"), "own").unwrap();
    let own_hash = output(
        Command::new("nix")
            .args(["--extra-experimental-features", "nix-command", "hash", "path"])
            .arg(&own),
    );
    lock(&dir, serde_json::json!({ "data": path_node(path_str(&own), &own_hash) }));
    let err = host.fails(&["create", "web", "--flake", path_str(&dir)], 1);
    assert!(err.contains("flake.lock lacks the input 'hs'"), "{err}");
    host.assert_nothing_created();
    secret.assert_not_in_store(&before);
}

#[test]
fn the_lock_of_a_flake_that_is_no_local_directory_is_checked_before_its_inputs_are_fetched() {
    let host = Host::new();
    let secret = Secret::new(&host, "secret");
    let before = store_listing();
    // A flake fetched as a tarball (as one from the internet would be): its
    // source is fetched first, then its lock is read, naming a host path.
    let secret_path = path_str(&secret.dir).to_string();
    let dir = flake(
        &host,
        "packed",
        &format!("inputs.hs = {{ url = \"path:{secret_path}\"; flake = false; }};"),
        ", hs",
        "builtins.readFile \"${hs}/s\"",
    );
    lock(&dir, serde_json::json!({ "hs": path_node(&secret_path, &secret.nar_hash()) }));
    let tarball = host.dir.path().join("packed.tar.gz");
    let tar = Command::new("tar")
        .args(["czf", path_str(&tarball), "-C", path_str(host.dir.path()), "packed"])
        .status()
        .unwrap();
    assert!(tar.success());
    let reference = format!("file://{}", tarball.display());
    let err = host.fails(&["create", "web", "--flake", &reference], 1);
    assert!(err.contains("input 'hs' reads the host path"), "{err}");
    host.assert_nothing_created();
    secret.assert_not_in_store(&before);
}

/// Whether Nix said that it has no flakes to offer: without the feature,
/// builtins.fetchTree says so and builtins.getFlake is not there.
fn refused(said: &str) -> bool {
    said.contains("experimental Nix feature 'flakes' is disabled")
        || said.contains("attribute 'getFlake' missing")
}

#[test]
fn a_tenants_code_fetches_no_host_path() {
    let host = Host::new();
    let secret = Secret::new(&host, "secret");
    let before = store_listing();
    let secret_path = path_str(&secret.dir).to_string();
    let fetches = [
        format!("builtins.readFile \"${{builtins.fetchTree {{ type = \"path\"; path = \"{secret_path}\"; }}}}/s\""),
        format!("builtins.readFile \"${{builtins.getFlake \"path:{secret_path}\"}}/s\""),
    ];
    for (index, fetch) in fetches.iter().enumerate() {
        let dir = flake(&host, &format!("tenant{index}"), "", "", fetch);
        let err = host.fails(&["create", "web", "--flake", path_str(&dir)], 1);
        assert!(refused(&err), "{err}");
        host.assert_nothing_created();
        secret.assert_not_in_store(&before);
        // A container file too, on a host whose nix.conf turns flakes on.
        let file = host.file(
            &format!("reader{index}.nix"),
            &format!(
                "{{ system = import {REPO}/examples/tiny/system.nix {{ version = {fetch}; }}; }}"
            ),
        );
        let run: crate::common::Run = host
            .helper_command(&["create", "web", path_str(&file)])
            .env("NIX_CONFIG", "experimental-features = nix-command flakes")
            .output()
            .unwrap()
            .into();
        assert_eq!(run.code, 1, "{run:?}");
        assert!(refused(&run.stderr), "{run:?}");
        host.assert_nothing_created();
        secret.assert_not_in_store(&before);
    }
}

#[test]
fn inputs_inside_the_flake_and_remote_ones_still_work() {
    let host = Host::new();
    let dir = host.dir.path().join("tenant");
    // A flake of its own below (path:./sub), data beside it by its absolute
    // path, and a git repository inside.
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/flake.nix"), "{ outputs = { self }: { word = \"sub\"; }; }")
        .unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/v"), "data").unwrap();
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("v"), "repo").unwrap();
    let git = |args: &str| {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd {} && git -c user.email=t@t -c user.name=t {args} >/dev/null",
                repo.display()
            ))
            .status()
            .unwrap();
        assert!(status.success(), "git {args}");
    };
    git("init -q");
    git("add v");
    git("commit -qm v");
    let data = dir.join("data");
    let inputs = format!(
        "inputs.sub.url = \"path:./sub\";\n\
         \x20 inputs.data = {{ url = \"path:{}\"; flake = false; }};\n\
         \x20 inputs.repo = {{ url = \"git+file://{}\"; flake = false; }};",
        data.display(),
        repo.display()
    );
    let version = "sub.word + \"-\" + builtins.readFile \"${data}/v\" + \"-\" + builtins.readFile \"${repo}/v\"";
    let dir = flake(&host, "tenant", &inputs, ", sub, data, repo", version);
    let hash = |path: &Path| {
        output(
            Command::new("nix")
                .args(["--extra-experimental-features", "nix-command", "hash", "path"])
                .arg(path),
        )
    };
    // Nix locks it as it is (its own hashes and revisions).
    let locked = Command::new("nix")
        .args(["--extra-experimental-features", "nix-command flakes", "flake", "lock"])
        .arg(format!("path:{}", dir.display()))
        .output()
        .unwrap();
    assert!(locked.status.success(), "{}", String::from_utf8_lossy(&locked.stderr));
    host.ok(&["create", "web", "--flake", path_str(&dir)]);
    let generations = host.ok(&["list-generations", "web"]);
    assert!(generations.contains("tiny-system-sub-data-repo"), "{generations}");

    // A github input, locked: not refused by the check; fetched from the
    // store where its source is (as here), from GitHub otherwise.
    let source = host.dir.path().join("gh/source");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("v"), format!("github{}", std::process::id())).unwrap();
    output(Command::new("nix-store").args(["--add-fixed", "--recursive", "sha256"]).arg(&source));
    let remote = flake(
        &host,
        "remote",
        "inputs.gh = { url = \"github:nixcloud/nothing-here\"; flake = false; };",
        ", gh",
        "builtins.readFile \"${gh}/v\"",
    );
    lock(
        &remote,
        serde_json::json!({ "gh": {
            "flake": false,
            "locked": { "type": "github", "owner": "nixcloud", "repo": "nothing-here",
                        "rev": "0123456789abcdef0123456789abcdef01234567",
                        "narHash": hash(&source), "lastModified": 1700000000 },
            "original": { "type": "github", "owner": "nixcloud", "repo": "nothing-here" },
        }}),
    );
    host.ok(&["create", "gh", "--flake", &format!("{}#web", remote.display())]);
    assert!(host
        .ok(&["list-generations", "gh"])
        .contains(&format!("github{}", std::process::id())));
    // One whose source is nowhere: the fetch fails, offline, as a fetch.
    lock(
        &remote,
        serde_json::json!({ "gh": {
            "flake": false,
            "locked": { "type": "github", "owner": "nixcloud", "repo": "nothing-here",
                        "rev": "0123456789abcdef0123456789abcdef01234567",
                        "narHash": WRONG_HASH, "lastModified": 1700000000 },
            "original": { "type": "github", "owner": "nixcloud", "repo": "nothing-here" },
        }}),
    );
    let offline = ["-n", "--option connect-timeout 1 --option download-attempts 1"];
    let mut args = vec!["create", "gh2", "--flake"];
    let reference = format!("{}#web", remote.display());
    args.push(&reference);
    args.extend(offline);
    let err = host.fails(&args, 1);
    assert!(err.contains("cannot fetch flake") && !err.contains("reads the host path"), "{err}");
    assert!(err.contains("api.github.com") || err.contains("download"), "{err}");
}

#[test]
fn host_paths_root_allows_are_fetched_but_never_through_a_symlink() {
    let host = Host::new();
    let shared = host.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let data = Secret::new(&host, "shared/data");
    let dir = flake(
        &host,
        "tenant",
        &format!("inputs.hs = {{ url = \"path:{}\"; flake = false; }};", data.dir.display()),
        ", hs",
        "builtins.readFile \"${hs}/s\"",
    );
    lock(&dir, serde_json::json!({ "hs": path_node(path_str(&data.dir), &data.nar_hash()) }));
    let err = host.fails(&["create", "web", "--flake", path_str(&dir)], 1);
    assert!(err.contains("reads the host path"), "{err}");
    std::fs::write(
        host.dir.path().join("host.json"),
        serde_json::json!({ "allowedFlakeInputPaths": [path_str(&shared)] }).to_string(),
    )
    .unwrap();
    host.ok(&["create", "web", "--flake", path_str(&dir)]);
    assert!(host.ok(&["list-generations", "web"]).contains(&data.content));

    // A link below the allowed path leads elsewhere: refused.
    let secret = Secret::new(&host, "secret");
    let before = store_listing();
    let link = shared.join("link");
    std::os::unix::fs::symlink(&secret.dir, &link).unwrap();
    lock(&dir, serde_json::json!({ "hs": path_node(path_str(&link), &secret.nar_hash()) }));
    let err = host.fails(&["update", "web", "--flake", path_str(&dir)], 1);
    assert!(err.contains("which is a symlink"), "{err}");
    secret.assert_not_in_store(&before);
    // And inside the flake's own directory, a link out is refused as well,
    // relative or absolute.
    let inside = dir.join("inside");
    std::os::unix::fs::symlink(&secret.dir, &inside).unwrap();
    for path in [path_str(&inside).to_string(), "./inside".to_string()] {
        lock(&dir, serde_json::json!({ "hs": path_node(&path, &secret.nar_hash()) }));
        let err = host.fails(&["update", "web", "--flake", path_str(&dir)], 1);
        assert!(
            err.contains("which is a symlink") || err.contains("relative path"),
            "{path}: {err}"
        );
        secret.assert_not_in_store(&before);
    }
}

#[test]
fn sync_builds_a_flakes_containers_from_its_one_fetch() {
    let host = Host::new();
    let dir = host.dir.path().join("tenant");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("flake.nix"),
        "{ outputs = { self }: { nixcloudContainers = {\n\
         \x20 a.system = import <nixcloud-container/examples/tiny/system.nix> { version = \"a\"; };\n\
         \x20 b.system = import <nixcloud-container/examples/tiny/system.nix> { version = \"b\"; };\n\
         }; }; }\n",
    )
    .unwrap();
    let run: crate::common::Run = host
        .helper_command(&["sync", "--flake", path_str(&dir)])
        .env("NIXCLOUD_CONTAINER_TIMINGS", "1")
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{run:?}");
    let evaluations = |prefix: &str| {
        run.stderr
            .lines()
            .filter(|line| {
                *line == format!("{prefix}timing: nix-instantiate")
                    || line.starts_with(&format!("{prefix}timing: nix-instantiate "))
            })
            .count()
    };
    // sync fetches the flake and lists its containers; each container's
    // helper evaluates its spec from that fetch, and fetches nothing.
    assert_eq!(evaluations(""), 2, "{run:?}");
    assert_eq!(evaluations("a: "), 1, "{run:?}");
    assert_eq!(evaluations("b: "), 1, "{run:?}");
    let left: Vec<_> = std::fs::read_dir(host.state_dir())
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("flake-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
