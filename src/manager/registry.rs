//! What the server can create: the built-in types and the types registered with
//! [`#[register]`](crate::register), each behind the [`Served`] trait.
//!
//! Built-in types are found by their Python type id (`"list"`, `"dict"`, `"Queue"`, ...).
//! User types are found by the type id their `#[register]` gave them, in a `linkme` distributed
//! slice: the entries are laid out by the linker, so they are there in every process running
//! this binary before any code runs (a re-executed child runs its bootstrap inside a
//! constructor, where registration by constructors could still be missing).

use super::protocol::{RemoteError, RemoteErrorKind};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Condvar, MutexGuard};
use std::time::{Duration, Instant};

/// An object living in the server: answers calls by method name.
pub(crate) trait Served: Send + Sync + 'static {
    /// Runs one method call: `method` with encoded `args`, the encoded result appended to `out`.
    fn call(&self, call: Call<'_, '_>) -> Reply;

    /// Connection `conn` closed: release whatever it held (locks).
    fn disconnected(&self, _conn: u64) {}
}

/// A method table made by `methods!`: a built-in type's methods, by name.
pub(crate) trait Methods: Sized {
    /// The type's name in the error for a method it does not have (Python's type name).
    const OBJECT: &'static str;

    /// The method called `name`.
    fn parse(name: &str) -> Option<Self>;
}

/// A built-in object, serving the methods of its table `M`: `methods!` implements [`Served`]
/// for it with [`dispatch`].
pub(crate) trait Builtin<M: Methods>: Send + Sync + 'static {
    /// Runs one call of `method` (named by `call.method`).
    fn serve(&self, method: M, call: Call<'_, '_>) -> Reply;

    /// The name an unknown method's error gives the object: its table's, unless the object
    /// tells its kinds apart.
    fn type_name(&self) -> &'static str {
        M::OBJECT
    }

    /// As [`Served::disconnected`].
    fn disconnected(&self, _conn: u64) {}
}

/// Serves `call` on a built-in object: parses the method's name, refusing one the table does
/// not have (alike for every type), and runs the method.
pub(crate) fn dispatch<M: Methods>(object: &impl Builtin<M>, call: Call<'_, '_>) -> Reply {
    match M::parse(call.method) {
        Some(method) => object.serve(method, call),
        None => Err(super::custom::no_such_method(object.type_name(), call.method)),
    }
}

/// One method call, as an object serves it.
pub(crate) struct Call<'c, 'a> {
    /// The calling connection.
    pub(crate) cx: &'c CallCx<'a>,
    /// The method's name on the wire.
    pub(crate) method: &'c str,
    /// Its encoded arguments.
    pub(crate) args: &'c [u8],
    /// Where its encoded result goes.
    pub(crate) out: &'c mut Vec<u8>,
}

/// What serving a call gives: the result is in [`Call::out`].
pub(crate) type Reply = Result<(), RemoteError>;

/// The calling connection, as an object method sees it.
pub(crate) struct CallCx<'a> {
    pub(crate) conn: u64,
    pub(crate) sock: BorrowedFd<'a>,
    /// Run if the reply cannot be delivered (puts a dequeued item back).
    pub(crate) undo: std::cell::RefCell<Option<Box<dyn FnOnce() + 'a>>>,
}

/// How often a blocked call checks that its client is still there.
const LIVENESS_SLICE: Duration = Duration::from_millis(100);

impl CallCx<'_> {
    /// Whether the client hung up (a waiting client sends nothing).
    pub(crate) fn client_gone(&self) -> bool {
        crate::sys::net::peer_gone_or_talking(self.sock)
    }

    /// Registers what to do if the reply to this call cannot be sent.
    pub(crate) fn on_undeliverable(&self, f: impl FnOnce() + 'static) {
        *self.undo.borrow_mut() = Some(Box::new(f));
    }

    /// Waits on `cv` until `ready` holds, the deadline passes (`Ok((guard, false))`), or the
    /// client disconnects (an error: nobody is left to answer).
    pub(crate) fn wait_until<'g, T>(
        &self,
        cv: &Condvar,
        mut guard: MutexGuard<'g, T>,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut T) -> bool,
    ) -> Result<(MutexGuard<'g, T>, bool), RemoteError> {
        loop {
            if ready(&mut guard) {
                return Ok((guard, true));
            }
            let now = Instant::now();
            let slice = match deadline {
                Some(d) if d <= now => return Ok((guard, false)),
                Some(d) => (d - now).min(LIVENESS_SLICE),
                None => LIVENESS_SLICE,
            };
            let (g, timeout) = cv.wait_timeout(guard, slice).unwrap_or_else(|p| p.into_inner());
            guard = g;
            if timeout.timed_out() && self.client_gone() {
                return Err(RemoteError::new(RemoteErrorKind::Protocol, "the client disconnected"));
            }
        }
    }
}

/// A deadline from an optional timeout in seconds, as the proxies send it.
pub(crate) fn deadline(timeout: Option<f64>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.clamp(0.0, 1e9)))
}

/// The deadline of a call that may block (Python's `block`, `timeout` pair): none to wait
/// for when it must not block, else as [`deadline`].
pub(crate) fn block_deadline(block: bool, timeout: Option<f64>) -> Option<Instant> {
    if block {
        deadline(timeout)
    } else {
        Some(Instant::now())
    }
}

/// Creates a built-in object from its type id and encoded initial state.
pub(crate) fn create(typeid: &str, ctor: &str, args: &[u8]) -> Result<Arc<dyn Served>, RemoteError> {
    let obj: Arc<dyn Served> = match typeid {
        "list" => super::list::ServedList::create(args)?,
        "dict" => super::dict::ServedDict::create(args)?,
        "Namespace" => super::namespace::ServedNamespace::create(args)?,
        "Value" => super::value::ServedValue::create(args)?,
        "Array" => super::value::ServedArray::create(args)?,
        "Queue" | "JoinableQueue" => super::queue::ServedQueue::create(args)?,
        "Lock" | "RLock" => super::lock::ServedLock::create(typeid == "RLock"),
        "Semaphore" | "BoundedSemaphore" => {
            super::semaphore::ServedSemaphore::create(args, typeid == "BoundedSemaphore")?
        }
        "Condition" => super::condition::ServedCondition::create(),
        "Event" => super::event::ServedEvent::create(),
        "Barrier" => super::barrier::ServedBarrier::create(args)?,
        _ => return create_registered(typeid, ctor, args),
    };
    Ok(obj)
}

fn create_registered(typeid: &str, ctor: &str, args: &[u8]) -> Result<Arc<dyn Served>, RemoteError> {
    match REGISTRY.iter().find(|r| r.typeid == typeid) {
        Some(r) => (r.create)(ctor, args).map(|o| o.0),
        None => Err(RemoteError::new(
            RemoteErrorKind::NoSuchType,
            format!("no type {typeid:?} is registered in the manager's program"),
        )),
    }
}

/// Every type registered with `#[register]` in this binary.
#[linkme::distributed_slice]
pub static REGISTRY: [TypeRegistration];

/// A registered type, as `#[register]` records it (internal to the macro).
#[doc(hidden)]
pub struct TypeRegistration {
    typeid: &'static str,
    create: fn(&str, &[u8]) -> Result<ServedObject, RemoteError>,
}

/// An object made by a registered constructor.
pub(crate) struct ServedObject(pub(crate) Arc<dyn Served>);

impl TypeRegistration {
    /// The registration of `T`.
    pub const fn of<T: super::custom::Registered>() -> TypeRegistration {
        TypeRegistration { typeid: T::TYPEID, create: super::custom::create::<T> }
    }
}

#[cfg(test)]
mod tests {
    use super::{create, Call, CallCx, Methods, Reply, Served};
    use crate::manager::list::ListMethod;
    use crate::manager::RemoteErrorKind;
    use std::os::fd::AsFd;

    fn call(obj: &dyn Served, method: &str, args: &[u8]) -> (Reply, Vec<u8>) {
        let (_peer, sock) = crate::sys::socketpair().unwrap();
        let cx = CallCx { conn: 1, sock: sock.as_fd(), undo: Default::default() };
        let mut out = Vec::new();
        let reply = obj.call(Call { cx: &cx, method, args, out: &mut out });
        (reply, out)
    }

    #[test]
    fn a_method_table_parses_the_names_it_lists() {
        for m in [ListMethod::append, ListMethod::replace_if, ListMethod::snapshot] {
            assert_eq!(ListMethod::parse(m.name()), Some(m));
        }
        assert_eq!(ListMethod::replace_if.name(), "replace_if");
        assert_eq!(ListMethod::parse("appendd"), None);
    }

    #[test]
    fn a_builtin_serves_its_methods_and_refuses_others_naming_its_type() {
        let list = create("list", "", &[0]).unwrap();
        let (reply, out) = call(&*list, "len", &[]);
        assert_eq!((reply, out), (Ok(()), vec![0]));
        // A lock's kinds are told apart; the bounded semaphore and the joinable queue are named
        // as their plain kinds.
        for (typeid, named) in [
            ("list", "list"),
            ("Lock", "Lock"),
            ("RLock", "RLock"),
            ("BoundedSemaphore", "Semaphore"),
            ("JoinableQueue", "Queue"),
        ] {
            let obj = create(typeid, "", &[0]).unwrap();
            let e = call(&*obj, "appendd", &[]).0.unwrap_err();
            assert_eq!(e.kind(), RemoteErrorKind::NoSuchMethod);
            let message = e.message();
            assert!(message.contains(&format!("{named:?}")) && message.contains("\"appendd\""), "{e}");
        }
    }
}
