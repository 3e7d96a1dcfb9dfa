//! One netlink socket and the request/reply exchange both dialects use.

use netlink_sys::{Socket, SocketAddr};

use super::NetlinkError;

/// `struct nlmsghdr`: length, type, flags, sequence number, port id.
pub(crate) const HEADER_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 1;
pub(crate) const NLM_F_ACK: u16 = 4;

const RECV_BUFFER: usize = 64 * 1024;

/// A netlink socket of one protocol, connected to the kernel.
#[derive(Debug)]
pub(crate) struct Channel {
    socket: Socket,
    seq: u32,
}

impl Channel {
    /// Opens a socket of `protocol` (`NETLINK_ROUTE`, `NETLINK_GENERIC`) in the calling
    /// thread's network namespace.
    pub(crate) fn open(protocol: isize) -> Result<Channel, NetlinkError> {
        let os = |source| NetlinkError::Os {
            op: "open socket",
            source,
        };
        let mut socket = Socket::new(protocol).map_err(os)?;
        socket.bind_auto().map_err(os)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(os)?;
        socket.set_ext_ack(true).map_err(os)?;
        Ok(Channel { socket, seq: 0 })
    }

    /// Sends `request` (a whole message; its flags gain REQUEST and ACK, its sequence number
    /// is set here) and returns the data messages of the answer, each whole, once the kernel
    /// acknowledges, ends a dump, or refuses.
    pub(crate) fn exchange(
        &mut self,
        op: &'static str,
        request: &mut [u8],
    ) -> Result<Vec<Vec<u8>>, NetlinkError> {
        let decode = |detail: &str| NetlinkError::Decode {
            op,
            detail: detail.to_owned(),
        };
        if request.len() < HEADER_LEN {
            return Err(decode("request shorter than a header"));
        }
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let flags = u16::from_ne_bytes([request[6], request[7]]) | NLM_F_REQUEST | NLM_F_ACK;
        request[6..8].copy_from_slice(&flags.to_ne_bytes());
        request[8..12].copy_from_slice(&seq.to_ne_bytes());
        let os = |source| NetlinkError::Os { op, source };
        self.socket.send(request, 0).map_err(os)?;

        let mut replies = Vec::new();
        let mut buffer = Vec::with_capacity(RECV_BUFFER);
        loop {
            buffer.clear();
            let len = self.socket.recv(&mut buffer, 0).map_err(os)?;
            if len > buffer.len() {
                return Err(decode(&format!("reply of {len} bytes truncated")));
            }
            let mut offset = 0;
            while offset + HEADER_LEN <= buffer.len() {
                let message = &buffer[offset..];
                let size = u32::from_ne_bytes(message[0..4].try_into().expect("4 bytes")) as usize;
                if size < HEADER_LEN || size > message.len() {
                    return Err(decode("message length out of the buffer"));
                }
                let message = &message[..size];
                offset += size.next_multiple_of(4);
                let kind = u16::from_ne_bytes([message[4], message[5]]);
                if u32::from_ne_bytes(message[8..12].try_into().expect("4 bytes")) != seq {
                    // A late answer to an earlier request (an ACK after a dump's DONE).
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let errno = message
                            .get(HEADER_LEN..HEADER_LEN + 4)
                            .map(|e| -i32::from_ne_bytes(e.try_into().expect("4 bytes")))
                            .ok_or_else(|| decode("short error message"))?;
                        return match errno {
                            0 => Ok(replies),
                            errno => Err(os(std::io::Error::from_raw_os_error(errno))),
                        };
                    }
                    NLMSG_DONE => return Ok(replies),
                    _ => replies.push(message.to_vec()),
                }
            }
        }
    }
}
