//! update: a container's next generation, from its container file (the
//! one given, or the one it was last built from), activated where it runs.
//!
//! It holds the container's lock throughout and records the switch in the
//! state (the phase) before the profile changes (engine/recovery.rs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};

use super::create::create_locked;
use super::{all_containers, for_each, source_of, SourceOptions};
use crate::capabilities;
use crate::context::Context;
use crate::engine::activation::{activate_current, OnFailure};
use crate::engine::generation::{
    build_current, fixed_state_version, reserve, BuildInputs, RootSays,
};
use crate::engine::new_container::ensure_name_is_free;
use crate::engine::opening::{self, Opened};
use crate::engine::recovery::refresh_claims;
use crate::error::usage;
use crate::spec::Source;

/// What `update` was asked: one container from a file (or the file it was
/// last built from), or several from their last files.
pub enum UpdateTargets {
    One(String, Option<PathBuf>),
    Several(Vec<String>),
    All,
}

/// `update`: `targets`, from what `options` name (one container), with what
/// root says (one container) and `on_failure` for their live switches.
pub fn run(
    ctx: &Context,
    targets: UpdateTargets,
    options: SourceOptions,
    root: RootSays,
    on_failure: OnFailure,
) -> Result<ExitCode> {
    let from_last_file = |name: &str| {
        update(ctx, name, None, RootSays::NOTHING, on_failure).map(|()| ExitCode::SUCCESS)
    };
    match targets {
        UpdateTargets::One(name, file) => {
            let source = source_of(&name, SourceOptions { file, ..options })?;
            update(ctx, &name, source, root, on_failure).map(|()| ExitCode::SUCCESS)
        }
        UpdateTargets::Several(_) if !root.says_nothing() => Err(usage(
            "--lxc-config, --no-lxc-config and --autostart change one container: name only that one",
        )),
        UpdateTargets::Several(names) => for_each(names, "update", from_last_file),
        UpdateTargets::All => for_each(all_containers(ctx, None)?, "update", from_last_file),
    }
}

fn update(
    ctx: &Context,
    name: &str,
    source: Option<Source>,
    root: RootSays,
    on_failure: OnFailure,
) -> Result<()> {
    let Opened { lock, locked, .. } = opening::open(ctx, name)?;
    let had = match locked.state.containers.get(name) {
        Some(entry) => entry.clone(),
        None => {
            let created = source
                .context(format!("no container named '{name}': give a container file to create it"))
                .and_then(|source| {
                    ensure_name_is_free(ctx, &locked, name)?;
                    Ok(source)
                });
            let source = match created {
                Ok(source) => source,
                Err(err) => {
                    lock.remove();
                    return Err(err);
                }
            };
            drop(locked);
            return create_locked(ctx, name, source, root, lock);
        }
    };
    drop(locked);
    let ids = had.ids(&ctx.settings.host.idmap);
    let source = source.unwrap_or_else(|| had.source.clone());
    let inputs = BuildInputs::find(ctx, &source, Some(&had), root)?;

    let profile = ctx.profile(name);
    let before = profile.generations()?;
    let previous = profile.current_number()?.context("the container has no current generation")?;
    let params = {
        let mut locked = ctx.store.lock()?;
        let params = reserve(ctx, &mut locked, name, &source, &inputs, ids)?;
        locked
            .state
            .containers
            .get_mut(name)
            .expect("checked above")
            .mark_switching(Some(previous));
        locked.save()?;
        params
    };

    let built = build_current(ctx, name, &params, &inputs);
    let current = profile.current_number()?.unwrap_or(previous);
    let activated = match built {
        Ok(()) if current != previous => {
            activate_current(ctx, name, previous, &ctx.lxc_args, on_failure)
        }
        other => other,
    };
    let kept = on_failure == OnFailure::Keep && current != previous;
    let failed_new =
        activated.is_err() && current != previous && before.iter().all(|g| g.number != current);
    if failed_new && !kept {
        // The failed generation was new: take it away again, so that the
        // profile is as it was.
        let removal = ctx.plain_nix().delete_generations(&profile, &[current.to_string()]);
        if let Err(err) = removal {
            eprintln!("warning: cannot delete the failed generation {current}: {err:#}");
        }
    }

    let mut locked = ctx.store.lock()?;
    let entry = locked.state.containers.get_mut(name).expect("held under the container lock");
    if activated.is_ok() || kept {
        entry.source = source;
        entry.state_version = fixed_state_version(ctx, name, inputs.state_version)?;
        entry.root_settings = inputs.root_settings.map(|(file, _)| file);
        entry.autostart = inputs.autostart;
    }
    entry.mark_switching(None);
    refresh_claims(ctx, name, entry)?;
    let after = entry.clone();
    locked.save()?;
    drop(locked);
    // What its capabilities keep follows what it holds now (its ports pass
    // its addresses) and the generation that is current.
    capabilities::entry_changed(ctx, name, Some(&had), Some(&after))?;
    let now = profile.current()?.context("the container has no current generation")?.meta()?;
    capabilities::current_changed(ctx, name, &now, activated.is_ok())?;
    activated?;

    if current == previous {
        println!("container '{name}' is unchanged: generation {current} stays current");
    } else {
        println!("container '{name}': generation {current} is current");
    }
    Ok(())
}
