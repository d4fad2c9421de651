//! A throw-away `redis-server` for tests: its own process on a free 127.0.0.1 port, in a temp
//! dir, killed and removed when dropped; a durable one can be crashed and started again.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
    /// The options it was started with, to start it again the same way.
    options: Vec<&'static str>,
}

/// Keeps nothing on disk: every test starts from an empty server.
const EPHEMERAL: &[&str] = &["--save", "", "--appendonly", "no"];
/// Appends every write to its file before answering it, so that a restart loses nothing.
const DURABLE: &[&str] = &["--save", "", "--appendonly", "yes", "--appendfsync", "always"];

impl RedisServer {
    /// Starts a server, or returns `None` (after saying why) when `redis-server` is missing;
    /// with `PERISKOPE_REQUIRE_SERVERS=1` (as `.ci/run` sets) a missing server fails instead.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(EPHEMERAL)
    }

    /// [`RedisServer::start`], with every write on disk before it is answered: a server that
    /// is killed and [started again](RedisServer::start_again) has what it had.
    pub fn start_durable() -> Option<RedisServer> {
        RedisServer::start_with(DURABLE)
    }

    fn start_with(options: &[&'static str]) -> Option<RedisServer> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let required = std::env::var("PERISKOPE_REQUIRE_SERVERS").is_ok_and(|value| value == "1");
        let dir = std::env::temp_dir().join(format!(
            "periskope-redis-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create the server's temp dir");
        let port = free_port();
        let child = match spawn(port, &dir, options) {
            Ok(child) => child,
            Err(error) if !required => {
                eprintln!(
                    "skipped: cannot start redis-server ({error}); install it, or set PERISKOPE_REQUIRE_SERVERS=1 to fail"
                );
                let _ = std::fs::remove_dir_all(&dir);
                return None;
            }
            Err(error) => panic!("PERISKOPE_REQUIRE_SERVERS=1 and redis-server cannot start: {error}"),
        };
        let server = RedisServer { child, dir, port, options: options.to_vec() };
        server.wait_until_ready();
        Some(server)
    }

    /// SIGKILLs the server, as a crash would, and leaves it down until
    /// [`RedisServer::start_again`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again after [`RedisServer::kill`], on the same port and files.
    pub fn start_again(&mut self) {
        self.child = spawn(self.port, &self.dir, &self.options).expect("start redis-server again");
        self.wait_until_ready();
    }

    /// The URL clients connect with.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut reply = [0u8; 7];
                let ponged = stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok();
                if ponged && &reply == b"+PONG\r\n" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING within 10 s", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(port: u16, dir: &Path, options: &[&str]) -> std::io::Result<Child> {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(options)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// A port nothing listens on right now (the OS's pick for an ephemeral bind).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}
