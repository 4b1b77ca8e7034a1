//! The names of a container's files, defined once on the helper's side
//! (lib/layout.nix names them on the Nix side).

/// `<profiles dir>/<name>/profile`, the link nix-env switches; generation N
/// is `profile-<N>-link` beside it.
pub const PROFILE_LINK: &str = "profile";
/// Where the container's profile directory is mounted inside it.
pub const PROFILE_MOUNT: &str = "init";
/// A generation's LXC settings (lib/lxc-config.nix).
pub const LXC_CONF: &str = "lxc.conf";
/// A generation's spec and parameters (lib/generation.nix).
pub const SPEC_JSON: &str = "spec.json";
/// What LXC starts: the current generation's system (its link `system`),
/// through the profile.
pub const GUEST_INIT: &str = "/init/profile/system/init";

#[cfg(test)]
mod tests {
    #[test]
    fn the_guest_init_is_the_current_systems_init() {
        let through_profile = format!("/{}/{}/", super::PROFILE_MOUNT, super::PROFILE_LINK);
        assert!(super::GUEST_INIT.starts_with(&through_profile));
    }
}
