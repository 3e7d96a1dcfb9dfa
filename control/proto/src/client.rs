//! A client of the command socket, for xvsctl and the container plugins.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::envelope::{Request, Response, RpcError};
use crate::method::Method;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens on the socket.
    #[error("xvsd is not running (no socket at {0})")]
    NotRunning(PathBuf),
    /// The socket exists but we may not use it.
    #[error("permission denied on {0} (xvsd's socket is for root)")]
    PermissionDenied(PathBuf),
    /// Talking to the daemon failed.
    #[error("talking to xvsd at {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered with something that is not a response.
    #[error("xvsd sent a bad response: {0}")]
    BadResponse(String),
    /// The daemon refused the request.
    #[error("{0}")]
    Rpc(RpcError),
}

/// A connection to xvsd.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    /// Connects to the daemon at `path`.
    ///
    /// # Errors
    /// [`ClientError::NotRunning`] when nobody listens there, or a permission error.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning(path.to_owned())
            }
            std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied(path.to_owned()),
            _ => ClientError::Io {
                path: path.to_owned(),
                source: e,
            },
        })?;
        let io = |source| ClientError::Io {
            path: path.to_owned(),
            source,
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Client {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        })
    }

    /// Calls method `M` and returns its result.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the daemon refused, [`ClientError::BadResponse`] when its
    /// answer is not `M`'s result, or an I/O error.
    ///
    /// # Examples
    /// ```no_run
    /// use xvs_proto::client::Client;
    /// use xvs_proto::methods::Show;
    ///
    /// let mut client = Client::connect(xvs_proto::DEFAULT_SOCKET.as_ref())?;
    /// let show = client.call::<Show>(&xvs_proto::Empty)?;
    /// println!("{} port(s)", show.ports.len());
    /// # Ok::<(), xvs_proto::client::ClientError>(())
    /// ```
    pub fn call<M: Method>(&mut self, params: &M::Params) -> Result<M::Result, ClientError> {
        let params = serde_json::to_value(params)
            .map_err(|e| ClientError::BadResponse(format!("parameters of {}: {e}", M::NAME)))?;
        let result = self.call_raw(M::NAME, params)?;
        serde_json::from_value(result)
            .map_err(|e| ClientError::BadResponse(format!("result of {}: {e}", M::NAME)))
    }

    /// Calls `method` with any `params` and returns the result as it came: for `xvsctl call`,
    /// which sends what a person typed, and for tests that look at the wire.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the daemon refused, or an I/O error.
    pub fn call_raw(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let io = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line =
            serde_json::to_string(&Request::new(id, method, params)).expect("requests serialize");
        line.push('\n');
        self.writer.write_all(line.as_bytes()).map_err(io)?;
        let mut answer = String::new();
        let n = self
            .reader
            .read_line(&mut answer)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(ClientError::BadResponse("connection closed".into()));
        }
        let response: Response =
            serde_json::from_str(&answer).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        match (response.result, response.error) {
            (_, Some(error)) => Err(ClientError::Rpc(error)),
            (Some(result), None) => Ok(result),
            (None, None) => Err(ClientError::BadResponse("neither result nor error".into())),
        }
    }
}
