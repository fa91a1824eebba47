//! Flags: a connected function may answer with a flag instead of a value, and the caller's
//! side resolves it (see [`crate::flag`](macro@crate::flag) for handlers).

use std::fmt;

/// A flag a connected function answers with instead of a value: return
/// `Result<T, net::Flag>` and `Err(net::Flag::new("NAME"))`.
///
/// On the caller's side, `NULL` resolves to the string `"NULL"`, a flag its module declares a
/// handler for (`#[net::flag("NAME")]`) resolves to what the handler returns, and any other
/// flag is [`Error::UnknownFlag`](crate::Error::UnknownFlag) naming it.
///
/// ```
/// #[net::connect]
/// fn reserve(seats: u32) -> Result<u32, net::Flag> {
///     if seats > 10 {
///         return Err(net::Flag::new("FULL"));
///     }
///     Ok(seats)
/// }
///
/// assert_eq!(reserve(2), Ok(2)); // a local call is a plain Rust call
/// assert_eq!(reserve(99).unwrap_err().name(), "FULL");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flag {
    name: String,
}

impl Flag {
    /// The flag `name`.
    pub fn new(name: impl Into<String>) -> Flag {
        Flag { name: name.into() }
    }

    /// The built-in `NULL` flag: the caller gets the string `"NULL"`.
    ///
    /// ```
    /// assert_eq!(net::Flag::null().name(), "NULL");
    /// ```
    pub fn null() -> Flag {
        Flag::new(netrun_abi::names::flag::NULL)
    }

    /// The flag's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flag {}", self.name)
    }
}

impl std::error::Error for Flag {}
