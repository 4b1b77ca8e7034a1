//! The names of a container's files, defined once on the helper's side
//! (lib/layout.nix names them on the Nix side).

/// The host's store.
pub const NIX_STORE: &str = "/nix/store";

/// `<profiles dir>/<name>/profile`, the link nix-env switches; generation N
/// is `profile-<N>-link` beside it.
pub const PROFILE_LINK: &str = "profile";
/// Where the container's profile directory is mounted inside it.
pub const PROFILE_MOUNT: &str = "init";
/// A generation's LXC settings (lib/lxc-config.nix).
pub const LXC_CONF: &str = "lxc.conf";
/// Root's own LXC settings in a generation (create/update --lxc-config).
pub const ROOT_LXC_CONF: &str = "lxc-root.conf";
/// A generation's spec and parameters (lib/generation.nix).
pub const SPEC_JSON: &str = "spec.json";
/// The store paths of a generation's system's closure, one per line: what
/// the container's store view holds (lib/generation-builder.sh).
pub const CLOSURE: &str = "closure";
/// How a generation's store path is named: this and its container's name
/// (lib/generation.nix).
pub const GENERATION_NAME_PREFIX: &str = "nixcloud-container-";
/// What LXC starts: the current generation's system (its link `system`),
/// through the profile.
pub const GUEST_INIT: &str = "/init/profile/system/init";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_init_is_the_current_systems_init() {
        let through_profile = format!("/{PROFILE_MOUNT}/{PROFILE_LINK}/");
        assert!(GUEST_INIT.starts_with(&through_profile));
    }

    #[test]
    fn generations_are_named_as_lib_generation_nix_names_them() {
        let nix = include_str!("../../lib/generation.nix");
        assert!(nix.contains(&format!("name = \"{GENERATION_NAME_PREFIX}${{params.name}}\";")));
    }

    #[test]
    fn the_names_are_lib_layouts() {
        let nix = include_str!("../../lib/layout.nix");
        for (key, value) in [
            ("profileLink", PROFILE_LINK),
            ("profileMount", PROFILE_MOUNT),
            ("lxcConf", LXC_CONF),
            ("rootLxcConf", ROOT_LXC_CONF),
            ("specJson", SPEC_JSON),
            ("closure", CLOSURE),
        ] {
            assert!(nix.contains(&format!("  {key} = \"{value}\";")), "{key} = {value}");
        }
    }
}
