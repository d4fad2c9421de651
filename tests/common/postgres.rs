//! A throw-away PostgreSQL cluster for the tests of one test binary, and one database per test.
//!
//! The cluster lives in a temp dir owned by the `postgres` user (the server refuses to run as
//! root), listens on a free 127.0.0.1 port, and is watched by a small shell loop that stops the
//! server and removes the directory as soon as the test process is gone, however it ended.
//! Without PostgreSQL 15 the tests are skipped with a printed reason, unless
//! `PERISKOPE_REQUIRE_SERVERS=1`, under which they fail.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
}

/// The cluster of this test binary, started on first use; `None` (with the reason printed)
/// when PostgreSQL is not installed and servers are not required.
pub fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(start) {
        Ok(cluster) => Some(cluster),
        Err(reason) => skip(reason),
    }
}

/// `None` after printing why, or a failure under `PERISKOPE_REQUIRE_SERVERS=1`.
fn skip<T>(reason: &str) -> Option<T> {
    if std::env::var("PERISKOPE_REQUIRE_SERVERS").as_deref() == Ok("1") {
        panic!("PERISKOPE_REQUIRE_SERVERS=1 and PostgreSQL cannot run: {reason}")
    }
    eprintln!("skipped: PostgreSQL is not available ({reason})");
    None
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.stdin(Stdio::null()).output().map_err(|error| format!("{command:?}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr)))
    }
}

fn as_postgres(program: &str) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--", &format!("{BIN}/{program}")]);
    command
}

/// A new cluster in a temp dir named after `name` and this process, owned by `postgres`, and a
/// free port for it: the directory and the port.
fn init(name: &str) -> Result<(PathBuf, u16), String> {
    if !Path::new(BIN).join("initdb").is_file() {
        return Err(format!("{BIN}/initdb not found (apt-get install postgresql)"));
    }
    remove_abandoned_dirs("periskope-pg-");
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|error| error.to_string())?;
    run(Command::new("chown").arg("postgres").arg(&dir))?;
    let data = dir.join("data");
    run(as_postgres("initdb").arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "--no-sync"]))?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    Ok((dir, port))
}

/// Removes the temp dirs named `{prefix}...-{pid}` whose process is gone and whose PostgreSQL
/// server, if they hold one, is gone too. A process killed with its process group (as `timeout`
/// kills a benchmark) takes its cluster's watchdog with it, which would have removed the cluster:
/// a gigabyte or more of disk each. Also called by the benchmarks for their SQLite dirs.
pub fn remove_abandoned_dirs(prefix: &str) {
    let running = |pid: &str| pid.parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) =
            name.to_str().filter(|name| name.starts_with(prefix)).and_then(|name| name.rsplit('-').next())
        else {
            continue;
        };
        let server = std::fs::read_to_string(entry.path().join("data/postmaster.pid")).unwrap_or_default();
        let server = server.lines().next().unwrap_or_default();
        if owner.parse::<u32>().is_ok() && !running(owner) && !running(server) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn start() -> Result<Cluster, String> {
    let (dir, port) = init("periskope-pg")?;
    let data = dir.join("data");
    // The server runs in the foreground of a shell that waits for this process to end, then
    // stops it and removes the cluster.
    let watchdog = format!(
        "{BIN}/postgres -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 -c max_connections=200 \
           >{dir}/log 2>&1 & server=$!; \
         while [ -d /proc/{parent} ] && kill -0 $server 2>/dev/null; do sleep 0.2; done; \
         kill -INT $server 2>/dev/null; wait $server; rm -rf {dir}",
        data = data.display(),
        dir = dir.display(),
        parent = std::process::id(),
    );
    Command::new("runuser")
        .args(["-u", "postgres", "--", "sh", "-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| error.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(format!("{BIN}/pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if ready {
            return Ok(Cluster { port, dir });
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            return Err(format!("the server did not start within 30 s: {log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Cluster {
    /// A fresh, empty database; dropped with the returned guard.
    pub fn database(&'static self) -> Database {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        run(Command::new(format!("{BIN}/createdb")).args(self.client_args()).arg(&name)).expect("createdb");
        Database { cluster: self, name }
    }

    fn client_args(&self) -> [String; 6] {
        client_args(self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The options of the client programs (`createdb`, `dropdb`) for the server on `port`.
fn client_args(port: u16) -> [String; 6] {
    ["-h".into(), "127.0.0.1".into(), "-p".into(), port.to_string(), "-U".into(), "postgres".into()]
}

/// A database of the cluster, dropped (connections included) when this guard is.
pub struct Database {
    cluster: &'static Cluster,
    name: String,
}

impl Database {
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.cluster.port, self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = run(Command::new(format!("{BIN}/dropdb"))
            .args(self.cluster.client_args())
            .args(["--force", &self.name]));
    }
}

/// A cluster of one test's own, run by `pg_ctl` so that it can crash and come back
/// ([`OwnCluster::restart_immediately`]) without the watchdog of [`cluster`] removing it.
/// Stopped and removed when dropped, or by a watchdog once the test process is gone.
pub struct OwnCluster {
    pub port: u16,
    dir: PathBuf,
    watchdog: Child,
}

impl OwnCluster {
    /// Starts a cluster with one database, `test`; `None` (with the reason printed) when
    /// PostgreSQL is not installed and servers are not required.
    pub fn start() -> Option<OwnCluster> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let name = format!("periskope-pg-own-{}", STARTED.fetch_add(1, Ordering::Relaxed));
        let (dir, port) = match init(&name) {
            Ok(initialised) => initialised,
            Err(reason) => return skip(&reason),
        };
        let data = dir.join("data");
        // Ends when this process is gone (then stops the server and removes the cluster) or
        // when the cluster was removed (by `drop`).
        let watchdog = format!(
            "while [ -d /proc/{parent} ] && [ -d {data} ]; do sleep 0.5; done; \
             {BIN}/pg_ctl -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            parent = std::process::id(),
            data = data.display(),
            dir = dir.display(),
        );
        let watchdog = Command::new("runuser")
            .args(["-u", "postgres", "--", "sh", "-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster's watchdog");
        let cluster = OwnCluster { port, dir, watchdog };
        // `fsync=off`: the faults are crashes of the server process, not of the machine, so
        // the operating system keeps every write; it spares a shared machine's disk.
        let options = format!(
            "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
            dir = cluster.dir.display()
        );
        run(cluster.pg_ctl("start").arg("-o").arg(options)).expect("pg_ctl start");
        run(Command::new(format!("{BIN}/createdb")).args(client_args(port)).arg("test")).expect("createdb");
        Some(cluster)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }

    /// `pg_ctl restart -m immediate`: the server stops at once, as on a crash (every connection
    /// cut, no checkpoint), and starts again with crash recovery; returns once it accepts
    /// connections.
    pub fn restart_immediately(&self) {
        run(self.pg_ctl("restart").args(["-m", "immediate"])).expect("pg_ctl restart -m immediate");
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `pg_ctl ACTION` on this cluster, logging to its directory and waiting (60 s at most)
    /// for the action to finish.
    fn pg_ctl(&self, action: &str) -> Command {
        let mut command = as_postgres("pg_ctl");
        command
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "60", action]);
        command
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = run(self.pg_ctl("stop").args(["-m", "immediate"]));
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = self.watchdog.wait();
    }
}
