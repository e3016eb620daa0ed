//! The authkeys this process holds, so that a serialized proxy never has to carry one. It lives
//! beside the connection's authentication, below the process room (which hands it to children)
//! and the manager (whose proxies look keys up here).
//!
//! A proxy travels as its manager's address, the object's id and a ticket for one reference;
//! the process that decodes it finds the key here. A process holds:
//!
//! - the *process key* (Python's `current_process().authkey`): 32 random bytes made by the first
//!   process of a tree that needs one, and handed to every child it starts; managers started
//!   without an explicit key use it;
//! - the key of every manager this process started or connected to, by address.
//!
//! Children get both with their start request (the same private channel that carries their
//! arguments), as Python's children get the parent's authkey with their preparation data. A
//! proxy that reaches a process holding no key for its manager (sent over TCP to an unrelated
//! program, say) decodes, but its first use fails with an authentication error.
//!
//! The keyring is a copy-on-write [`Snapshot`]: readers take no lock, and a child forked while
//! another thread adds a key never finds a lock held. Replaced snapshots are never freed; they
//! are a few hundred bytes, made once per manager started or connected to.

use super::Address;
use crate::error::{Error, Result};
use crate::sys;
use crate::sys::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a child inherits (in its start request).
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct Keyring {
    process: Option<Vec<u8>>,
    managers: Vec<(Address, Vec<u8>)>,
}

static CURRENT: Snapshot<Keyring> = Snapshot::new();

fn current() -> Option<&'static Keyring> {
    CURRENT.get()
}

fn update(f: impl FnMut(&Keyring) -> Option<Keyring>) {
    CURRENT.update(f)
}

/// The process key, made now if this process has none yet.
pub(crate) fn process_key() -> Result<Vec<u8>> {
    if let Some(k) = current().and_then(|k| k.process.clone()) {
        return Ok(k);
    }
    let mut fresh = vec![0u8; 32];
    sys::net::random_bytes(&mut fresh).map_err(Error::io("generating an authkey"))?;
    update(|k| {
        if k.process.is_some() {
            return None;
        }
        Some(Keyring { process: Some(fresh.clone()), managers: k.managers.clone() })
    });
    Ok(current().and_then(|k| k.process.clone()).expect("set above"))
}

/// Records the key of the manager at `address`.
pub(crate) fn remember(address: &Address, key: &[u8]) {
    update(|k| {
        if k.managers.iter().any(|(a, v)| a == address && v == key) {
            return None;
        }
        let mut next = k.clone();
        next.managers.retain(|(a, _)| a != address);
        next.managers.push((address.clone(), key.to_vec()));
        Some(next)
    });
}

/// The key this process holds for the manager at `address`: its own, else the process key.
pub(crate) fn key_for(address: &Address) -> Option<Arc<[u8]>> {
    let k = current()?;
    k.managers
        .iter()
        .find(|(a, _)| a == address)
        .map(|(_, v)| Arc::from(&v[..]))
        .or_else(|| k.process.as_deref().map(Arc::from))
}

/// What a child started now inherits; makes the process key first, so that the child and
/// every later child share it (a manager started later, and its proxies, work in all of them).
pub(crate) fn for_child() -> Keyring {
    let _ = process_key();
    current().cloned().unwrap_or_default()
}

/// Takes what the parent handed down (in a child, before its arguments are decoded).
pub(crate) fn install(inherited: Keyring) {
    update(|k| {
        let same = k.process == inherited.process && k.managers.len() == inherited.managers.len();
        if same {
            return None; // a forked child already has it
        }
        Some(inherited.clone())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_address_then_the_process_key() {
        let a = Address::Abstract(b"keyring-test-a".to_vec());
        let b = Address::Abstract(b"keyring-test-b".to_vec());
        remember(&a, b"key a");
        assert_eq!(&*key_for(&a).unwrap(), b"key a");
        let pk = process_key().unwrap();
        assert_eq!(pk.len(), 32);
        assert_eq!(process_key().unwrap(), pk, "made once");
        assert_eq!(&*key_for(&b).unwrap(), &pk[..]);
        remember(&a, b"key a2");
        assert_eq!(&*key_for(&a).unwrap(), b"key a2");
        let child = for_child();
        assert_eq!(child.process.as_deref(), Some(&pk[..]));
        assert!(child.managers.iter().any(|(x, k)| x == &a && k == b"key a2"));
    }
}
