//! `Namespace`: [`NamespaceProxy`], named attributes of any serde type (Python's
//! `NamespaceProxy`).

use super::protocol::{decode, encode_into, RemoteError, RemoteErrorKind};
use super::proxy::{decode_reply, BaseProxy};
use super::registry::{Builtin, Call, Reply, Served};
use super::wire_bytes::{encode_one, Bytes};
use crate::error::Result;
use crate::sync::lock;
use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// The server side: attribute names to encoded values.
pub(crate) struct ServedNamespace {
    attrs: Mutex<IndexMap<String, Box<[u8]>>>,
}

impl ServedNamespace {
    pub(crate) fn create(args: &[u8]) -> std::result::Result<Arc<dyn Served>, RemoteError> {
        let items: Vec<(String, &[u8])> = decode(args)?;
        let attrs = items.into_iter().map(|(k, v)| (k, Box::from(v))).collect();
        Ok(Arc::new(ServedNamespace { attrs: Mutex::new(attrs) }))
    }
}

fn no_attribute(name: &str) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Attribute, format!("'Namespace' object has no attribute '{name}'"))
}

methods! {
    enum NamespaceMethod for ServedNamespace as "Namespace" { get, set, remove, contains, names }
}

impl Builtin<NamespaceMethod> for ServedNamespace {
    fn serve(&self, method: NamespaceMethod, Call { args, out, .. }: Call<'_, '_>) -> Reply {
        let mut attrs = lock(&self.attrs);
        match method {
            NamespaceMethod::get => {
                let name: &str = decode(args)?;
                out.extend_from_slice(attrs.get(name).ok_or_else(|| no_attribute(name))?);
            }
            NamespaceMethod::set => {
                let (name, value): (&str, &[u8]) = decode(args)?;
                attrs.insert(name.to_string(), value.into());
            }
            NamespaceMethod::remove => {
                let name: &str = decode(args)?;
                attrs.shift_remove(name).ok_or_else(|| no_attribute(name))?;
            }
            NamespaceMethod::contains => {
                let name: &str = decode(args)?;
                encode_into(&attrs.contains_key(name), out)?;
            }
            NamespaceMethod::names => encode_into(&attrs.keys().collect::<Vec<_>>(), out)?,
        }
        Ok(())
    }
}

/// A proxy to a namespace in a manager's server (Python's `manager.Namespace()`): attributes
/// by name, each of any serde type, read back with the type it was written with.
///
/// ```
/// let manager = multiproc::Manager::start()?;
/// let ns = manager.namespace()?;
/// ns.set("x", &10)?;
/// ns.set("name", &"worker".to_string())?;
/// assert_eq!(ns.get::<i32>("x")?, 10);
/// assert_eq!(ns.get::<String>("name")?, "worker");
/// assert!(ns.get::<i32>("missing").is_err()); // AttributeError
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct NamespaceProxy {
    base: BaseProxy,
    _t: PhantomData<()>,
}

impl NamespaceProxy {
    /// The attribute `name` (Python's `ns.name`); an `Attribute` error if it is not set.
    #[doc(alias = "__getattr__")]
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.base.call(NamespaceMethod::get.name(), &name)
    }

    /// Sets the attribute `name` (Python's `ns.name = value`).
    #[doc(alias = "__setattr__")]
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        let v = encode_one(value)?;
        self.base.call_raw(NamespaceMethod::set.name(), &postcard_pair(name, &v)?, decode_reply)
    }

    /// Deletes the attribute `name` (Python's `del ns.name`).
    #[doc(alias = "__delattr__")]
    pub fn remove(&self, name: &str) -> Result<()> {
        self.base.call(NamespaceMethod::remove.name(), &name)
    }

    /// Whether the attribute `name` is set (Python's `hasattr`).
    pub fn contains(&self, name: &str) -> Result<bool> {
        self.base.call(NamespaceMethod::contains.name(), &name)
    }

    /// The names of the attributes, in the order they were first set.
    pub fn names(&self) -> Result<Vec<String>> {
        self.base.call(NamespaceMethod::names.name(), &())
    }
}

fn postcard_pair(name: &str, value: &[u8]) -> Result<Vec<u8>> {
    encode_one(&(name, Bytes(value)))
}

proxy_impls!(NamespaceProxy, "NamespaceProxy", "Namespace");
