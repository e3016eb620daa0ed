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
/// the queue itself, the `From` conversions from each blocking form into its wider forms, and
/// the conversions into the crate's [`Error`](crate::Error) (`$fault => $to_error` maps the
/// fault's payload).
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
        $crate::queue::queue_errors!(@put PutError, [$($pd),*], $Fault($FaultTy), $pfdoc, $edoc,
            doc: [
                concat!("Why a blocking `put` on a ", $q, " failed", $put_also, "; the value comes back"),
                "([`into_inner`](Self::into_inner)).",
                "",
                "A blocking put waits for room as long as it takes, so it is never full: Python's",
                "`put(obj)` raises only for a closed queue or an item that cannot be pickled, which",
                "are `Closed` and `Encode` here.",
            ],
            extra: []);
        $crate::queue::queue_errors!(@put TryPutError, [$($pd),*], $Fault($FaultTy), $pfdoc, $edoc,
            doc: [
                concat!("Why `put_nowait` on a ", $q, " failed (crossbeam's `TrySendError`); the value"),
                "comes back ([`into_inner`](Self::into_inner)). `Full` is Python's `queue.Full`.",
            ],
            extra: [
                #[doc = "The bounded queue held `maxsize` items (Python's `queue.Full`); nothing was put."]
                Full => "queue is full", is_full, "Whether the queue was full."
            ]);
        $crate::queue::queue_errors!(@put PutTimeoutError, [$($pd),*], $Fault($FaultTy), $pfdoc, $edoc,
            doc: [
                concat!("Why `put_timeout` on a ", $q, " failed (crossbeam's `SendTimeoutError`); the"),
                "value comes back ([`into_inner`](Self::into_inner)). `Timeout` is where Python's",
                "`put(obj, timeout=t)` raises `queue.Full`.",
            ],
            extra: [
                #[doc = "The bounded queue held `maxsize` items for the whole timeout (Python raises"]
                #[doc = "`queue.Full`); nothing was put."]
                Timeout => "timed out waiting for room in the queue", is_timeout, "Whether the timeout expired."
            ]);

        $crate::queue::queue_errors!(@get GetError, [$($gd),*], $Fault($FaultTy), $gfdoc, $ddoc,
            doc: [
                concat!("Why a blocking `get` on a ", $q, " failed", $get_also, "."),
                "",
                "A blocking get waits for an item as long as it takes, so it is never empty.",
            ],
            extra: []);
        $crate::queue::queue_errors!(@get TryGetError, [$($gd),*], $Fault($FaultTy), $gfdoc, $ddoc,
            doc: [
                concat!("Why `get_nowait` on a ", $q, " failed (crossbeam's `TryRecvError`). `Empty` is"),
                "Python's `queue.Empty`.",
            ],
            extra: [
                #[doc = "No item was there (Python's `queue.Empty`)."]
                Empty => "queue is empty", is_empty, "Whether the queue was empty."
            ]);
        $crate::queue::queue_errors!(@get GetTimeoutError, [$($gd),*], $Fault($FaultTy), $gfdoc, $ddoc,
            doc: [
                concat!("Why `get_timeout` on a ", $q, " failed (crossbeam's `RecvTimeoutError`). `Timeout`"),
                "is where Python's `get(timeout=t)` raises `queue.Empty`.",
            ],
            extra: [
                #[doc = "No item came within the timeout (Python raises `queue.Empty`)."]
                Timeout => "timed out waiting for a queue item", is_timeout, "Whether the timeout expired."
            ]);

        impl<T> From<PutError<T>> for TryPutError<T> {
            fn from(e: PutError<T>) -> Self {
                match e {
                    PutError::Closed(v) => TryPutError::Closed(v),
                    PutError::Encode(v, m) => TryPutError::Encode(v, m),
                    PutError::$Fault(v, f) => TryPutError::$Fault(v, f),
                }
            }
        }

        impl<T> From<PutError<T>> for PutTimeoutError<T> {
            fn from(e: PutError<T>) -> Self {
                match e {
                    PutError::Closed(v) => PutTimeoutError::Closed(v),
                    PutError::Encode(v, m) => PutTimeoutError::Encode(v, m),
                    PutError::$Fault(v, f) => PutTimeoutError::$Fault(v, f),
                }
            }
        }

        impl From<GetError> for TryGetError {
            fn from(e: GetError) -> Self {
                match e {
                    GetError::Closed => TryGetError::Closed,
                    GetError::Decode(m) => TryGetError::Decode(m),
                    GetError::$Fault(f) => TryGetError::$Fault(f),
                }
            }
        }

        impl From<GetError> for GetTimeoutError {
            fn from(e: GetError) -> Self {
                match e {
                    GetError::Closed => GetTimeoutError::Closed,
                    GetError::Decode(m) => GetTimeoutError::Decode(m),
                    GetError::$Fault(f) => GetTimeoutError::$Fault(f),
                }
            }
        }

        impl<T> From<PutError<T>> for $crate::Error {
            /// For `?` in functions returning the crate's `Result`; the value is dropped.
            fn from(e: PutError<T>) -> Self {
                match e {
                    PutError::Closed(_) => $crate::Error::Closed("queue"),
                    PutError::Encode(_, msg) => $crate::Error::Encode(msg),
                    PutError::$Fault(_, $fault) => $to_error,
                }
            }
        }

        impl<T> From<TryPutError<T>> for $crate::Error {
            /// For `?`; the value is dropped. `Full` becomes [`Error::Full`]($crate::Error::Full).
            fn from(e: TryPutError<T>) -> Self {
                match e {
                    TryPutError::Full(_) => $crate::Error::Full,
                    TryPutError::Closed(_) => $crate::Error::Closed("queue"),
                    TryPutError::Encode(_, msg) => $crate::Error::Encode(msg),
                    TryPutError::$Fault(_, $fault) => $to_error,
                }
            }
        }

        impl<T> From<PutTimeoutError<T>> for $crate::Error {
            /// For `?`; the value is dropped. `Timeout` becomes
            /// [`Error::Timeout`]($crate::Error::Timeout).
            fn from(e: PutTimeoutError<T>) -> Self {
                match e {
                    PutTimeoutError::Timeout(_) => $crate::Error::Timeout,
                    PutTimeoutError::Closed(_) => $crate::Error::Closed("queue"),
                    PutTimeoutError::Encode(_, msg) => $crate::Error::Encode(msg),
                    PutTimeoutError::$Fault(_, $fault) => $to_error,
                }
            }
        }

        impl From<GetError> for $crate::Error {
            fn from(e: GetError) -> Self {
                match e {
                    GetError::Closed => $crate::Error::Closed("queue"),
                    GetError::Decode(msg) => $crate::Error::Decode(msg),
                    GetError::$Fault($fault) => $to_error,
                }
            }
        }

        impl From<TryGetError> for $crate::Error {
            /// `Empty` becomes [`Error::Empty`]($crate::Error::Empty).
            fn from(e: TryGetError) -> Self {
                match e {
                    TryGetError::Empty => $crate::Error::Empty,
                    TryGetError::Closed => $crate::Error::Closed("queue"),
                    TryGetError::Decode(msg) => $crate::Error::Decode(msg),
                    TryGetError::$Fault($fault) => $to_error,
                }
            }
        }

        impl From<GetTimeoutError> for $crate::Error {
            /// `Timeout` becomes [`Error::Timeout`]($crate::Error::Timeout).
            fn from(e: GetTimeoutError) -> Self {
                match e {
                    GetTimeoutError::Timeout => $crate::Error::Timeout,
                    GetTimeoutError::Closed => $crate::Error::Closed("queue"),
                    GetTimeoutError::Decode(msg) => $crate::Error::Decode(msg),
                    GetTimeoutError::$Fault($fault) => $to_error,
                }
            }
        }
    };

    (@put $Name:ident, [$($pd:ident),*], $Fault:ident($FaultTy:ty), $pfdoc:literal, $edoc:literal,
        doc: [$($doc:expr),* $(,)?],
        extra: [$($(#[doc = $xdoc:literal])* $X:ident => $xmsg:literal, $is:ident, $isdoc:literal)?]
    ) => {
        $(#[doc = $doc])*
        #[derive($($pd),*)]
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
    };

    (@get $Name:ident, [$($gd:ident),*], $Fault:ident($FaultTy:ty), $gfdoc:literal, $ddoc:literal,
        doc: [$($doc:expr),* $(,)?],
        extra: [$($(#[doc = $xdoc:literal])* $X:ident => $xmsg:literal, $is:ident, $isdoc:literal)?]
    ) => {
        $(#[doc = $doc])*
        #[derive($($gd),*)]
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
    };
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
