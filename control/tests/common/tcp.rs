//! Real TCP between namespaces, driven step by step: a python3 echo server, and a client
//! whose connection the test holds open and asks to send, receive, close (FIN) or reset.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::{Container, Lab};

/// A TCP server: echoes each line; on "bulk" sends 8 MB and a newline.
const SERVER: &str = r#"
import socket, sys, threading, time
ip, port = sys.argv[1], int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
srv.bind((ip, port))
srv.listen(16)
print("listening", flush=True)
def serve(c):
    f = c.makefile("rb")
    try:
        for line in f:
            if line.strip() == b"bulk":
                c.sendall(b"x" * 8_000_000 + b"\n")
            elif line.startswith(b"later "):
                time.sleep(float(line.split()[1]))
                c.sendall(b"late\n")
            else:
                c.sendall(line)
    except OSError:
        pass
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A TCP client driven line by line on stdin: connects (from `sport` if not 0), then
/// `echo WORD`, `bulk`, `close` (FIN) or `reset` (RST); prints one line per command.
const CLIENT: &str = r#"
import socket, struct, sys
ip, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
if sport:
    s.bind(("", sport))
s.settimeout(5)
try:
    s.connect((ip, port))
except OSError as e:
    print("failed", type(e).__name__, flush=True)
    sys.exit(0)
f = s.makefile("rb")
print("connected", flush=True)
for line in sys.stdin:
    cmd = line.split()
    try:
        if cmd[0] == "echo":
            s.sendall(cmd[1].encode() + b"\n")
            print("got", f.readline().decode().strip(), flush=True)
        elif cmd[0] == "later":
            s.sendall(("later " + cmd[1] + "\n").encode())
            print("got", f.readline().decode().strip(), flush=True)
        elif cmd[0] == "bulk":
            s.sendall(b"bulk\n")
            print("got", len(f.readline()), flush=True)
        elif cmd[0] == "close":
            s.shutdown(socket.SHUT_WR)
            print("closed", repr(f.read()), flush=True)
            s.close()
            break
        elif cmd[0] == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            print("reset", flush=True)
            break
    except OSError as e:
        print("error", type(e).__name__, flush=True)
"#;

pub fn python(c: &Container, script: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &c.ns, "python3", "-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 in the namespace")
}

/// A server listening in `c` on `port`.
pub fn server(lab: &mut Lab, c: &Container, port: u16) {
    let mut child = python(c, SERVER, &["0.0.0.0", &port.to_string()]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "listening", "server in {}", c.ns);
    lab.keep(child);
}

/// A connection from a client in one namespace.
pub struct Conn {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Conn {
    /// Connects from `from` to `ip:port`; `Err` with the error's name if it cannot.
    pub fn open(from: &Container, ip: &str, port: u16, sport: u16) -> Result<Conn, String> {
        let mut child = python(from, CLIENT, &[ip, &port.to_string(), &sport.to_string()]);
        let stdin = child.stdin.take().unwrap();
        let mut conn = Conn {
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            stdin,
        };
        let first = conn.line();
        if first == "connected" {
            Ok(conn)
        } else {
            let _ = conn.child.wait();
            Err(first)
        }
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    pub fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.line()
    }

    /// Gives the client a command without waiting for its line (read it with `line`).
    pub fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
