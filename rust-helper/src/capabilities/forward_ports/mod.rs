//! Forwarded ports.

pub mod types;

use anyhow::{bail, Result};

use crate::state::State;
use types::ForwardPort;

/// Claims the host ports `forwards` for container `name` (whose entry
/// must exist), unless another container has one of them.
pub fn claim(state: &mut State, name: &str, forwards: &[ForwardPort]) -> Result<()> {
    for wanted in forwards {
        let holder = state.containers.iter().filter(|(other, _)| other.as_str() != name).find(
            |(_, entry)| {
                entry.forwards.iter().any(|held| {
                    held.protocol == wanted.protocol
                        && held.host_port == wanted.host_port
                        && (held.host_address.is_none()
                            || wanted.host_address.is_none()
                            || held.host_address == wanted.host_address)
                })
            },
        );
        if let Some((holder, _)) = holder {
            bail!(
                "forwardPorts: host port {} {} is forwarded to container '{holder}' already",
                wanted.protocol,
                wanted.host_port.0
            );
        }
    }
    let entry = state.containers.get_mut(name).expect("the entry exists");
    entry.forwards.extend(forwards.iter().copied());
    Ok(())
}
