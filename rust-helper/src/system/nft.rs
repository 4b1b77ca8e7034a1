//! nftables, where the helper keeps the host's network rules for its
//! containers (capabilities/network/rules.rs, port_guard.rs, egress.rs): a ruleset
//! applied in one transaction by `nft -f`, the lock that keeps two commands
//! from applying rules computed from different states, and whether a table
//! is there, asked of the kernel without running nft.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use rustix::fs::{flock, FlockOperation};

use crate::system::process::Tool;

/// Applies `ruleset` (nft's syntax) in one transaction: all of it or none.
pub fn apply(ruleset: &str) -> Result<()> {
    let file = tempfile::NamedTempFile::new().context("cannot write the network rules")?;
    std::fs::write(file.path(), ruleset).context("cannot write the network rules")?;
    let finished = Tool::new("nft").arg("-f").arg(file.path()).output(false).context(
        "the containers' network rules need nftables (nft) on the host: install it (Debian: \
         apt-get install nftables)",
    )?;
    if !finished.status.success() {
        bail!("nft could not set the network rules: {}", finished.stderr.trim());
    }
    Ok(())
}

/// Held while a command computes rules from the state and applies them, so
/// that rules computed from an older state never replace newer ones.
pub struct NetworkLock {
    _file: File,
}

impl NetworkLock {
    /// Takes the lock (`<state dir>/network.lock`), waiting for another
    /// command that holds it.
    pub fn take(state_dir: &Path) -> Result<NetworkLock> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
        let path = state_dir.join(crate::layout::NETWORK_LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock {}", path.display()))?;
        flock(&file, FlockOperation::LockExclusive).context("cannot lock the network rules")?;
        Ok(NetworkLock { _file: file })
    }
}

/// The families of nftables tables the helper keeps (nfgen_family in the
/// kernel's netlink messages: NFPROTO_*).
#[derive(Debug, Clone, Copy)]
pub enum Family {
    Bridge,
    Inet,
}

impl Family {
    fn number(self) -> u8 {
        match self {
            Family::Bridge => 7,
            Family::Inet => 1,
        }
    }
}

/// Whether the network namespace of this process has table `name` of
/// `family`: one netlink request (NFT_MSG_GETTABLE), answered by the kernel
/// in microseconds where `nft list` would cost a process.
pub fn table_exists(family: Family, name: &str) -> Result<bool> {
    use rustix::net::{netlink, AddressFamily, RecvFlags, SendFlags, SocketType};
    let socket =
        rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, Some(netlink::NETFILTER))
            .context("cannot ask the kernel for nftables tables (netlink)")?;
    let request = get_table_request(family, name);
    rustix::net::sendto(
        &socket,
        &request,
        SendFlags::empty(),
        &netlink::SocketAddrNetlink::new(0, 0),
    )
    .context("cannot ask the kernel for nftables tables (netlink)")?;
    let mut buffer = vec![0_u8; 8192];
    let mut found = false;
    loop {
        let (received, _) = rustix::net::recv(&socket, &mut buffer[..], RecvFlags::empty())
            .context("cannot read the kernel's answer about nftables tables (netlink)")?;
        if let Some(answer) = table_answer(&buffer[..received.min(buffer.len())], &mut found)? {
            return Ok(answer);
        }
    }
}

/// The netlink message types and flags `table_exists` uses
/// (linux/netlink.h, linux/netfilter/nfnetlink.h, nf_tables.h).
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE, and the answer's NEWTABLE.
const NFT_MSG_GETTABLE: u16 = 10 << 8 | 1;
const NFT_MSG_NEWTABLE: u16 = 10 << 8;
const NFTA_TABLE_NAME: u16 = 1;
const ENOENT: i32 = 2;

/// A request for table `name` of `family`, with an acknowledgement.
fn get_table_request(family: Family, name: &str) -> Vec<u8> {
    // The attribute: its length and type, the name with its NUL, padding to 4.
    let attribute_length = 4 + name.len() + 1;
    let padded = attribute_length.next_multiple_of(4);
    // nlmsghdr (16 bytes), nfgenmsg (4), the attribute.
    let length = 16 + 4 + padded;
    let mut message = Vec::with_capacity(length);
    message.extend_from_slice(&(length as u32).to_ne_bytes());
    message.extend_from_slice(&NFT_MSG_GETTABLE.to_ne_bytes());
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    message.extend_from_slice(&1_u32.to_ne_bytes()); // sequence number
    message.extend_from_slice(&0_u32.to_ne_bytes()); // port id: the kernel's
    message.extend_from_slice(&[family.number(), 0, 0, 0]); // NFNETLINK_V0, res_id 0
    message.extend_from_slice(&(attribute_length as u16).to_ne_bytes());
    message.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    message.extend_from_slice(name.as_bytes());
    message.resize(length, 0);
    message
}

/// What the kernel's messages in `received` say about the table, `found`
/// recording a table among them: once the acknowledgement comes, whether
/// there was one (Some(false) too for "no such table"); None while it is
/// still to come.
fn table_answer(received: &[u8], found: &mut bool) -> Result<Option<bool>> {
    let mut rest = received;
    while rest.len() >= 16 {
        let length = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes"));
        if length < 16 || length > rest.len() {
            bail!("the kernel's answer about nftables tables is cut short (netlink)");
        }
        match kind {
            NFT_MSG_NEWTABLE => *found = true,
            NLMSG_ERROR if length >= 20 => {
                let error = i32::from_ne_bytes(rest[16..20].try_into().expect("4 bytes"));
                return match error {
                    0 => Ok(Some(*found)),
                    _ if -error == ENOENT => Ok(Some(false)),
                    _ => Err(std::io::Error::from_raw_os_error(-error))
                        .context("the kernel did not say whether an nftables table is there"),
                };
            }
            _ => {}
        }
        rest = &rest[length.next_multiple_of(4).min(rest.len())..];
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_table_and_its_family() {
        let request = get_table_request(Family::Bridge, "abc");
        assert_eq!(request.len(), 16 + 4 + 8, "4 bytes of attribute header, abc, NUL: 8");
        assert_eq!(u32::from_ne_bytes(request[0..4].try_into().unwrap()), 28);
        assert_eq!(request[16], 7, "NFPROTO_BRIDGE");
        assert_eq!(&request[24..28], b"abc\0");
    }

    #[test]
    fn answers_are_read_to_their_acknowledgement() {
        let message = |kind: u16, payload: &[u8]| {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
            bytes.extend_from_slice(&kind.to_ne_bytes());
            bytes.extend_from_slice(&[0; 10]);
            bytes.extend_from_slice(payload);
            bytes
        };
        let ack = |error: i32| message(NLMSG_ERROR, &error.to_ne_bytes());
        let table = message(NFT_MSG_NEWTABLE, &[7, 0, 0, 0]);
        let answer = |received: &[u8]| table_answer(received, &mut false);
        assert_eq!(answer(&[table.clone(), ack(0)].concat()).unwrap(), Some(true));
        assert_eq!(answer(&ack(-ENOENT)).unwrap(), Some(false));
        assert!(answer(&ack(-1)).is_err(), "EPERM is no answer");
        assert!(answer(&table[..19]).is_err(), "cut short");
        // The table and its acknowledgement in two reads.
        let mut found = false;
        assert_eq!(
            table_answer(&table, &mut found).unwrap(),
            None,
            "the acknowledgement is to come"
        );
        assert_eq!(table_answer(&ack(0), &mut found).unwrap(), Some(true));
    }

    #[test]
    fn a_table_of_this_namespace_is_found() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: only root may ask the kernel for nftables tables");
            return;
        }
        assert!(!table_exists(Family::Bridge, "nixcloud-container-no-such-table").unwrap());
    }
}
