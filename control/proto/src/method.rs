//! What a method is: a name, its help, and the types of its parameters and result.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::envelope::RpcError;

/// A method of the command socket. Each is a zero-sized type in [`crate::methods`], so that a
/// call names its types once: `client.call::<AddPort>(&params)` returns an `AddPortResult`.
pub trait Method {
    /// The method's name on the wire, e.g. `add-port`.
    const NAME: &'static str;
    /// Its parameters as `list-commands` describes them, e.g. `name, queues?`.
    const PARAMS: &'static str;
    /// What it does, in a few words.
    const HELP: &'static str;
    /// Its parameters (an object on the wire).
    type Params: Serialize + DeserializeOwned;
    /// What it answers.
    type Result: Serialize + DeserializeOwned;
}

/// A method as `list-commands` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// The name.
    pub name: &'static str,
    /// The parameters, described.
    pub params: &'static str,
    /// What it does.
    pub help: &'static str,
}

impl MethodInfo {
    /// The entry of method `M`.
    pub const fn of<M: Method>() -> MethodInfo {
        MethodInfo {
            name: M::NAME,
            params: M::PARAMS,
            help: M::HELP,
        }
    }
}

/// Nothing: the parameters of a method that takes none, or the result of one that only
/// succeeds. It is `{}` on the wire, and reads from anything, since the daemon has always
/// ignored what such a method was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Empty;

impl Serialize for Empty {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Empty, D::Error> {
        IgnoredAny::deserialize(deserializer)?;
        Ok(Empty)
    }
}

/// Reads the parameters of `M`; missing (null) parameters read as an empty object.
///
/// # Errors
/// An invalid-parameters error that quotes serde's complaint.
pub(crate) fn read_params<M: Method>(params: Value) -> Result<M::Params, RpcError> {
    let params = if params.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        params
    };
    serde_json::from_value(params).map_err(|e| RpcError::params(format!("bad parameters: {e}")))
}

/// Declares the methods, each once: its zero-sized type and [`Method`] impl, the table
/// `METHODS`, and the enum `Call` that reads a request into one variant per method. A method
/// added here is in `list-commands` and, through `Call`, in every exhaustive `match` of the
/// daemon's dispatch.
macro_rules! methods {
    ($(
        $ty:ident = $name:literal ($params_doc:literal, $help:literal): $params:ty => $result:ty;
    )*) => {
        $(
            #[doc = concat!("`", $name, "`: ", $help, ".")]
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $ty;

            impl Method for $ty {
                const NAME: &'static str = $name;
                const PARAMS: &'static str = $params_doc;
                const HELP: &'static str = $help;
                type Params = $params;
                type Result = $result;
            }
        )*

        /// Every method, in the order `list-commands` shows them.
        pub const METHODS: &[MethodInfo] = &[$(MethodInfo::of::<$ty>()),*];

        /// A request read: the method, with its parameters.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Call {
            $(
                #[doc = concat!("`", $name, "`: ", $help, ".")]
                $ty(<$ty as Method>::Params),
            )*
        }

        impl Call {
            /// Reads `method` with `params` (null reads as no parameters).
            ///
            /// # Errors
            /// [`code::METHOD_NOT_FOUND`](crate::code::METHOD_NOT_FOUND) for a name that is
            /// no method, [`code::INVALID_PARAMS`](crate::code::INVALID_PARAMS) for
            /// parameters the method does not take.
            pub fn parse(method: &str, params: Value) -> Result<Call, RpcError> {
                match method {
                    $($name => Ok(Call::$ty(read_params::<$ty>(params)?)),)*
                    _ => Err(RpcError::new(
                        crate::code::METHOD_NOT_FOUND,
                        format!("unknown command {method:?} (see list-commands)"),
                    )),
                }
            }

            /// The method's name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Call::$ty(_) => <$ty as Method>::NAME,)*
                }
            }

            /// The parameters as they go on the wire.
            pub fn params(&self) -> Value {
                let value = match self {
                    $(Call::$ty(p) => serde_json::to_value(p),)*
                };
                value.expect("parameter types serialize to JSON")
            }
        }
    };
}

pub(crate) use methods;
