//! The LXC settings: a container's own config (`OwnConfig`, written by the
//! helper), and the check of a generation's (`<generation>/lxc.conf`)
//! before LXC ever reads them.
//!
//! lib/lxc-config.nix writes a generation's settings from values the helper
//! resolved and checked, but a generation is a store path that anything
//! built before (an older helper, a tampered profile) may have made. LXC
//! runs hooks as root, mounts host paths and grants devices on a config's
//! say, so a generation is made current, started or switched to only when
//! every line is one this helper generates: a key of a fixed list, with a
//! value of that key's form for this container, on one line. The keys of
//! the container itself are checked here; each capability checks those it
//! owns (its `owns_lxc_key` and `check_lxc_settings`). No mount among them:
//! the helper mounts what a container sees itself (lxc/mounts.rs).
//!
//! Tested against what lib/lxc-config.nix really writes, for a container
//! with every key it writes, and with each setting it must refuse, by
//! tests/integration/security.rs (it needs Nix).

use std::path::Path;

use anyhow::{bail, Context as _, Result};

use crate::capabilities::lxc_conf::{Rules, Setting};
use crate::capabilities::{self, ALL};
use crate::context::Context;
use crate::formats::show;
use crate::ids::IdMap;
use crate::lxc::CONFIG_HEADER;
use crate::spec::Spec;

/// The terminals LXC gives the container (lib/lxc-config.nix): pts/1 to
/// pts/4, named to systemd in $container_ttys.
const TTYS: &str = "4";
const CONTAINER_TTYS: &str = "container_ttys=pts/1 pts/2 pts/3 pts/4";

/// Checks the text of a generation's lxc.conf against `rules`.
pub fn check(text: &str, rules: &Rules) -> Result<()> {
    let mut idmaps = Vec::new();
    let mut theirs: Vec<Vec<Setting>> = ALL.iter().map(|_| Vec::new()).collect();
    for (index, line) in text.split('\n').enumerate() {
        let line_number = index + 1;
        let context = || format!("line {line_number}");
        let Some((key, value)) = parse(line).with_context(context)? else {
            continue;
        };
        let setting = Setting { line: line_number, key, value };
        if check_own(&setting, rules, &mut idmaps).with_context(context)? {
            continue;
        }
        match ALL.iter().position(|capability| capability.owns_lxc_key(key)) {
            Some(owner) => theirs[owner].push(setting),
            None => {
                return Err(anyhow::anyhow!(
                    "{} is not a key nixcloud-container generates",
                    show(key)
                ))
                .with_context(context)
            }
        }
    }
    for (capability, settings) in ALL.iter().zip(&theirs) {
        capability.check_lxc_settings(settings, rules)?;
    }
    let wanted = [
        format!("u 0 {} {}", rules.idmap.host_id, rules.idmap.count),
        format!("g 0 {} {}", rules.idmap.host_id, rules.idmap.count),
    ];
    if idmaps != wanted {
        bail!("lxc.idmap must map exactly {} (users and groups), not {idmaps:?}", wanted[0]);
    }
    Ok(())
}

/// Checks `<generation>/lxc.conf`.
pub fn check_file(file: &Path, rules: &Rules) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    check(&text, rules)
        .with_context(|| format!("{} is not LXC settings this helper generates", file.display()))
}

/// A line's key and value as LXC parses the line: blanks around, '#'
/// starts a comment, the key ends at the first '='; None for a blank line
/// or a comment.
fn parse(line: &str) -> Result<Option<(&str, &str)>> {
    if let Some(bad) = line.chars().find(|c| c.is_control()) {
        bail!("a control character ({bad:?}) in {}", show(line));
    }
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let Some((key, value)) = line.split_once('=') else {
        bail!("{} is not `key = value`", show(line));
    };
    Ok(Some((key.trim(), value.trim())))
}

/// Checks `setting` where its key is one of the container's own (not a
/// capability's): its name, rootfs, init, autostart, ids and terminals.
/// Whether it was one; the ids are gathered in `idmaps`.
fn check_own(setting: &Setting, rules: &Rules, idmaps: &mut Vec<String>) -> Result<bool> {
    match setting.key {
        "lxc.uts.name" => setting.expect(rules.name)?,
        "lxc.rootfs.path" => setting.expect(&format!("dir:{}", rules.rootfs.display()))?,
        "lxc.init.cmd" => setting.expect(&crate::layout::guest_init())?,
        "lxc.start.auto" if setting.value == "0" || setting.value == "1" => {}
        "lxc.start.auto" => bail!("lxc.start.auto must be 0 or 1, not {}", show(setting.value)),
        "lxc.idmap" => idmaps.push(setting.value.to_string()),
        "lxc.tty.max" => setting.expect(TTYS)?,
        "lxc.environment" => setting.expect(CONTAINER_TTYS)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// What the LXC settings of container `name`, whose ids are `ids`, may say.
pub fn rules<'a>(ctx: &'a Context, name: &'a str, ids: IdMap) -> Rules<'a> {
    let host = &ctx.settings.host;
    Rules {
        name,
        rootfs: ctx.lxc().rootfs(name),
        idmap: ids,
        bridges: [&host.hostonly.bridge, &host.internet.bridge]
            .into_iter()
            .chain(host.extra_bridges.keys())
            .collect(),
        store: Path::new(crate::layout::NIX_STORE),
    }
}

/// Fails unless the generation at `path` has LXC settings this helper
/// generates for container `name` (whose ids are `ids`), and each
/// capability takes it (its store holds no other container's generation):
/// before it is made current, started or switched to.
pub fn check_generation(ctx: &Context, name: &str, ids: IdMap, path: &Path) -> Result<()> {
    check_file(&path.join(crate::layout::LXC_CONF), &rules(ctx, name, ids))?;
    ALL.iter().try_for_each(|capability| capability.check_generation(name, path))
}

/// How a container takes part in autostart, as lxc-autostart reads it
/// (lxc.container.conf(5)): whether it starts with the host
/// (lxc.start.auto), its place in the order (lxc.start.order: lower first,
/// equal ones together) and the seconds to wait after it started before the
/// next ones start (lxc.start.delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartSettings {
    pub auto: bool,
    pub order: i32,
    pub delay: u32,
}

/// The start settings of the generation at `path`: its own LXC settings,
/// then root's (lxc-root.conf, included after them in the container's
/// config), the last line of a key winning as in LXC.
pub fn start_settings(path: &Path) -> Result<StartSettings> {
    let mut start = StartSettings::default();
    for file in [crate::layout::LXC_CONF, crate::layout::ROOT_LXC_CONF] {
        let file = path.join(file);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", file.display())),
        };
        for line in text.lines() {
            let Some((key, value)) = parse(line)? else { continue };
            let number = || format!("{key} = {value} in {} is not a number", file.display());
            match key {
                "lxc.start.auto" => start.auto = value.parse::<u8>().with_context(number)? == 1,
                "lxc.start.order" => start.order = value.parse().with_context(number)?,
                "lxc.start.delay" => start.delay = value.parse().with_context(number)?,
                _ => {}
            }
        }
    }
    Ok(start)
}

/// The own config of container `name`, whose current generation has
/// `spec`, with root's own settings `root_settings` (kept where LXC reads
/// them, or removed where there are none): as the host is now.
pub fn own_config(
    ctx: &Context,
    name: &str,
    spec: &Spec,
    root_settings: Option<&str>,
) -> Result<String> {
    let root_settings = ctx.lxc().keep_root_settings(name, root_settings)?;
    Ok(OwnConfig {
        lxc_config_dir: &ctx.settings.lxc_config_dir()?,
        profile_link: &ctx.profile(name).link(),
        app_armor: ctx.settings.app_armor(),
        spec,
        root_settings: root_settings.as_deref(),
    }
    .text())
}

/// What the host puts into a container's own LXC config, beside its
/// generation's settings (included through the profile link, so that they
/// switch with it): written at create and again at each start, so that it
/// follows the host as it is then.
struct OwnConfig<'a> {
    /// Where LXC's common.conf and userns.conf are.
    pub lxc_config_dir: &'a Path,
    pub profile_link: &'a Path,
    /// Under AppArmor: LXC's profile generated for each container (no
    /// nesting: no container inside).
    pub app_armor: bool,
    /// The spec of its current generation: what its capabilities add
    /// (devices, which LXC binds after it made the container's /dev).
    pub spec: &'a Spec,
    /// Root's own settings (a copy of its generation's lxc-root.conf), if
    /// any, included after all else.
    pub root_settings: Option<&'a Path>,
}

impl OwnConfig<'_> {
    fn text(&self) -> String {
        let mut text = format!(
            "{CONFIG_HEADER}\n\
             # The container's settings are in its generations: change the container\n\
             # file and run `nixcloud-container update`; those of the host here are\n\
             # written again at each start.\n\
             lxc.include = {}\n\
             lxc.include = {}\n",
            self.lxc_config_dir.join("common.conf").display(),
            self.lxc_config_dir.join("userns.conf").display(),
        );
        if self.app_armor {
            text.push_str("lxc.apparmor.profile = generated\nlxc.apparmor.allow_nesting = 0\n");
        }
        text.push_str(&format!(
            "lxc.include = {}\n",
            self.profile_link.join(crate::layout::LXC_CONF).display()
        ));
        for capability in capabilities::ALL {
            text.push_str(&capability.own_config(self.spec));
        }
        if let Some(file) = self.root_settings {
            text.push_str(&format!("lxc.include = {}\n", file.display()));
        }
        text
    }
}
