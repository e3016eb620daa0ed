//! Per-operation errors of the queues, as crossbeam-channel has them: each form of `put` and
//! `get` returns an error type that names only what can happen to that form. A blocking `put`
//! cannot find the queue full (it waits for room), a `get_timeout` that expires reports
//! `Timeout`, and only `put_nowait` / `get_nowait` report `Full` / `Empty`. Each put error
//! hands back the value it could not put.
//!
//! The same six types, with the queue's own failure as their last variant, serve the local
//! queues (this module: `Corrupted`) and the broker queues (`multiproc::redis`: `Broker`); the
//! macro below defines them for both.

/// Defines `PutError<T>`, `TryPutError<T>`, `PutTimeoutError<T>`, `GetError`, `TryGetError`
/// and `GetTimeoutError` in the calling module, with `$Fault` as the variant for a failure of
/// the queue itself, the `From` conversions from each blocking form into its wider forms (`from`),
/// and the conversions into the crate's [`Error`](crate::Error) (`$fault => $to_error` maps the
/// fault's payload; a form's own case becomes the `Error` variant named last in its `extra`).
macro_rules! queue_errors {
    (
        queue: $q:literal,
        put_also: $put_also:literal,
        get_also: $get_also:literal,
        put_derive: [$($pd:ident),*],
        get_derive: [$($gd:ident),*],
        fault: $Fault:ident($FaultTy:ty),
        put_fault_doc: $pfdoc:literal,
        get_fault_doc: $gfdoc:literal,
        encode_doc: $edoc:literal,
        decode_doc: $ddoc:literal,
        to_error: |$fault:ident| $to_error:expr,
    ) => {
        $crate::queue::queue_errors!(@put ($($pd),*), $Fault($FaultTy), $pfdoc, $edoc, |$fault| $to_error;
            PutError {
                doc: [
                    concat!("Why a blocking `put` on a ", $q, " failed", $put_also, "; the value comes back"),
                    "([`into_inner`](Self::into_inner)).",
                    "",
                    "A blocking put waits for room as long as it takes, so it is never full: Python's",
                    "`put(obj)` raises only for a closed queue or an item that cannot be pickled, which",
                    "are `Closed` and `Encode` here.",
                ],
                extra: [],
            }
            TryPutError from PutError {
                doc: [
                    concat!("Why `put_nowait` on a ", $q, " failed (crossbeam's `TrySendError`); the value"),
                    "comes back ([`into_inner`](Self::into_inner)). `Full` is Python's `queue.Full`.",
                ],
                extra: [
                    #[doc = "The bounded queue held `maxsize` items (Python's `queue.Full`); nothing was"]
                    #[doc = "put."]
                    Full => "queue is full", is_full, "Whether the queue was full.", Full
                ],
            }
            PutTimeoutError from PutError {
                doc: [
                    concat!("Why `put_timeout` on a ", $q, " failed (crossbeam's `SendTimeoutError`); the"),
                    "value comes back ([`into_inner`](Self::into_inner)). `Timeout` is where Python's",
                    "`put(obj, timeout=t)` raises `queue.Full`.",
                ],
                extra: [
                    #[doc = "The bounded queue held `maxsize` items for the whole timeout (Python raises"]
                    #[doc = "`queue.Full`); nothing was put."]
                    Timeout => "timed out waiting for room in the queue", is_timeout,
                    "Whether the timeout expired.", Timeout
                ],
            }
        );

        $crate::queue::queue_errors!(@get ($($gd),*), $Fault($FaultTy), $gfdoc, $ddoc, |$fault| $to_error;
            GetError {
                doc: [
                    concat!("Why a blocking `get` on a ", $q, " failed", $get_also, "."),
                    "",
                    "A blocking get waits for an item as long as it takes, so it is never empty.",
                ],
                extra: [],
            }
            TryGetError from GetError {
                doc: [
                    concat!("Why `get_nowait` on a ", $q, " failed (crossbeam's `TryRecvError`). `Empty` is"),
                    "Python's `queue.Empty`.",
                ],
                extra: [
                    #[doc = "No item was there (Python's `queue.Empty`)."]
                    Empty => "queue is empty", is_empty, "Whether the queue was empty.", Empty
                ],
            }
            GetTimeoutError from GetError {
                doc: [
                    concat!("Why `get_timeout` on a ", $q, " failed (crossbeam's `RecvTimeoutError`)."),
                    "`Timeout` is where Python's `get(timeout=t)` raises `queue.Empty`.",
                ],
                extra: [
                    #[doc = "No item came within the timeout (Python raises `queue.Empty`)."]
                    Timeout => "timed out waiting for a queue item", is_timeout,
                    "Whether the timeout expired.", Timeout
                ],
            }
        );
    };

    (@put $derive:tt, $Fault:ident($FaultTy:ty), $pfdoc:literal, $edoc:literal, |$fault:ident| $to_error:expr;
        $($Name:ident $(from $Base:ident)? {
            doc: [$($doc:expr),* $(,)?],
            extra: [$(
                $(#[doc = $xdoc:literal])* $X:ident => $xmsg:literal, $is:ident, $isdoc:literal, $XErr:ident
            )?],
        })+
    ) => {$(
        $(#[doc = $doc])*
        #[derive $derive]
        #[non_exhaustive]
        pub enum $Name<T> {
            $($(#[doc = $xdoc])* $X(T),)?
            /// `close()` was called on this handle (Python's `ValueError: Queue is closed`).
            Closed(T),
            #[doc = $edoc]
            Encode(T, String),
            #[doc = $pfdoc]
            $Fault(T, $FaultTy),
        }

        impl<T> $Name<T> {
            /// The value that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    $($Name::$X(v) => v,)?
                    $Name::Closed(v) | $Name::Encode(v, _) | $Name::$Fault(v, _) => v,
                }
            }

            /// Whether this handle was closed.
            pub fn is_closed(&self) -> bool {
                matches!(self, $Name::Closed(_))
            }

            $(
                #[doc = $isdoc]
                pub fn $is(&self) -> bool {
                    matches!(self, $Name::$X(_))
                }
            )?
        }

        impl<T> ::std::fmt::Debug for $Name<T> {
            /// The variant without the value (`T` need not be `Debug`), as crossbeam's errors show.
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    $($Name::$X(_) => f.write_str(concat!(stringify!($X), "(..)")),)?
                    $Name::Closed(_) => f.write_str("Closed(..)"),
                    $Name::Encode(_, e) => write!(f, "Encode(.., {e:?})"),
                    $Name::$Fault(_, e) => write!(f, concat!(stringify!($Fault), "(.., {:?})"), e),
                }
            }
        }

        impl<T> ::std::fmt::Display for $Name<T> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    $($Name::$X(_) => f.write_str($xmsg),)?
                    $Name::Closed(_) => f.write_str("queue is closed"),
                    $Name::Encode(_, e) => write!(f, "cannot encode queue item: {e}"),
                    $Name::$Fault(_, e) => write!(f, "{e}"),
                }
            }
        }

        impl<T> ::std::error::Error for $Name<T> {}

        $(
            impl<T> From<$Base<T>> for $Name<T> {
                fn from(e: $Base<T>) -> Self {
                    match e {
                        $Base::Closed(v) => $Name::Closed(v),
                        $Base::Encode(v, m) => $Name::Encode(v, m),
                        $Base::$Fault(v, f) => $Name::$Fault(v, f),
                    }
                }
            }
        )?

        impl<T> From<$Name<T>> for $crate::Error {
            #[doc = concat!(
                "For `?` in functions returning the crate's `Result`; the value is dropped.",
                $(" `", stringify!($X), "` becomes [`Error::", stringify!($XErr), "`](crate::Error::",
                    stringify!($XErr), ").",)?
            )]
            fn from(e: $Name<T>) -> Self {
                match e {
                    $($Name::$X(_) => $crate::Error::$XErr,)?
                    $Name::Closed(_) => $crate::Error::Closed("queue"),
                    $Name::Encode(_, msg) => $crate::Error::Encode(msg),
                    $Name::$Fault(_, $fault) => $to_error,
                }
            }
        }
    )+};

    (@get $derive:tt, $Fault:ident($FaultTy:ty), $gfdoc:literal, $ddoc:literal, |$fault:ident| $to_error:expr;
        $($Name:ident $(from $Base:ident)? {
            doc: [$($doc:expr),* $(,)?],
            extra: [$(
                $(#[doc = $xdoc:literal])* $X:ident => $xmsg:literal, $is:ident, $isdoc:literal, $XErr:ident
            )?],
        })+
    ) => {$(
        $(#[doc = $doc])*
        #[derive $derive]
        #[non_exhaustive]
        pub enum $Name {
            $($(#[doc = $xdoc])* $X,)?
            /// `close()` was called on this handle.
            Closed,
            #[doc = $ddoc]
            Decode(String),
            #[doc = $gfdoc]
            $Fault($FaultTy),
        }

        impl $Name {
            /// Whether this handle was closed.
            pub fn is_closed(&self) -> bool {
                matches!(self, $Name::Closed)
            }

            $(
                #[doc = $isdoc]
                pub fn $is(&self) -> bool {
                    matches!(self, $Name::$X)
                }
            )?
        }

        impl ::std::fmt::Display for $Name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    $($Name::$X => f.write_str($xmsg),)?
                    $Name::Closed => f.write_str("queue is closed"),
                    $Name::Decode(e) => write!(f, "cannot decode queue item: {e}"),
                    $Name::$Fault(e) => write!(f, "{e}"),
                }
            }
        }

        impl ::std::error::Error for $Name {}

        $(
            impl From<$Base> for $Name {
                fn from(e: $Base) -> Self {
                    match e {
                        $Base::Closed => $Name::Closed,
                        $Base::Decode(m) => $Name::Decode(m),
                        $Base::$Fault(f) => $Name::$Fault(f),
                    }
                }
            }
        )?

        impl From<$Name> for $crate::Error {
            #[doc = concat!(
                "For `?` in functions returning the crate's `Result`.",
                $(" `", stringify!($X), "` becomes [`Error::", stringify!($XErr), "`](crate::Error::",
                    stringify!($XErr), ").",)?
            )]
            fn from(e: $Name) -> Self {
                match e {
                    $($Name::$X => $crate::Error::$XErr,)?
                    $Name::Closed => $crate::Error::Closed("queue"),
                    $Name::Decode(msg) => $crate::Error::Decode(msg),
                    $Name::$Fault($fault) => $to_error,
                }
            }
        }
    )+};
}

pub(crate) use queue_errors;

queue_errors! {
    queue: "[`Queue`](crate::Queue)",
    put_also: " (also the error of `put_async` and of the queue's sink, which wait for room too)",
    get_also: " (also the error of `get_async` and of the queue's stream)",
    put_derive: [Clone, PartialEq, Eq],
    get_derive: [Debug, Clone, PartialEq, Eq],
    fault: Corrupted(String),
    put_fault_doc: "The queue's shared memory was written over by some process (its ring positions \
        make no sense); nothing more can be put.",
    get_fault_doc: "The queue's shared memory was written over by some process (its records make \
        no sense); nothing is taken, and later gets report the same.",
    encode_doc: "The value could not be encoded (or holds more handles than one item may carry).",
    decode_doc: "An item could not be decoded as `T`; it was taken off the queue.",
    to_error: |msg| crate::Error::InvalidState(msg),
}

impl<T> TryPutError<T> {
    /// The value back when the queue was full, the error of a blocking put otherwise (for the
    /// forms that wait for room after a put that found none).
    pub(crate) fn full_or(self) -> Result<T, PutError<T>> {
        match self {
            TryPutError::Full(v) => Ok(v),
            TryPutError::Closed(v) => Err(PutError::Closed(v)),
            TryPutError::Encode(v, m) => Err(PutError::Encode(v, m)),
            TryPutError::Corrupted(v, m) => Err(PutError::Corrupted(v, m)),
        }
    }
}

/// Why `task_done` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskDoneError {
    /// Called more times than items were put (Python's `ValueError`).
    TooManyCalls,
}

impl std::fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("task_done() called too many times")
    }
}

impl std::error::Error for TaskDoneError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_hands_the_value_back_and_names_its_case() {
        let e = TryPutError::Full(7u8);
        assert!(e.is_full() && !e.is_closed());
        assert_eq!(format!("{e:?} / {e}"), "Full(..) / queue is full");
        assert_eq!(e.into_inner(), 7);

        let e = PutTimeoutError::Timeout("x");
        assert!(e.is_timeout() && !e.is_closed());
        assert_eq!(e.to_string(), "timed out waiting for room in the queue");
        assert_eq!(e.into_inner(), "x");

        let e = PutError::Encode(3u8, "no".into());
        assert_eq!(format!("{e:?}"), "Encode(.., \"no\")");
        assert_eq!(e.into_inner(), 3);

        assert!(TryGetError::Empty.is_empty());
        assert!(!TryGetError::Closed.is_empty());
        assert!(GetTimeoutError::Timeout.is_timeout());
        assert!(GetError::Closed.is_closed());
        assert_eq!(GetTimeoutError::Timeout.to_string(), "timed out waiting for a queue item");
    }

    #[test]
    fn a_blocking_form_converts_into_the_wider_ones_and_into_the_crate_error() {
        assert_eq!(TryPutError::from(PutError::Closed(1)), TryPutError::Closed(1));
        assert_eq!(PutTimeoutError::from(PutError::Closed(1)), PutTimeoutError::Closed(1));
        assert_eq!(
            PutTimeoutError::from(PutError::Corrupted(1, "bad".into())),
            PutTimeoutError::Corrupted(1, "bad".into())
        );
        assert_eq!(TryGetError::from(GetError::Decode("d".into())), TryGetError::Decode("d".into()));
        assert_eq!(GetTimeoutError::from(GetError::Closed), GetTimeoutError::Closed);

        assert!(matches!(crate::Error::from(TryPutError::Full(1)), crate::Error::Full));
        assert!(matches!(crate::Error::from(PutTimeoutError::Timeout(1)), crate::Error::Timeout));
        assert!(matches!(crate::Error::from(TryGetError::Empty), crate::Error::Empty));
        assert!(matches!(crate::Error::from(GetTimeoutError::Timeout), crate::Error::Timeout));
        assert!(matches!(crate::Error::from(PutError::Closed(1)), crate::Error::Closed("queue")));
        assert!(matches!(
            crate::Error::from(GetError::Corrupted("c".into())),
            crate::Error::InvalidState(m) if m == "c"
        ));

        assert_eq!(TryPutError::Full(2).full_or(), Ok(2));
        assert_eq!(TryPutError::Closed(2).full_or(), Err(PutError::Closed(2)));
    }
}
