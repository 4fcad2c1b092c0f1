//! What a node takes from its surroundings: the wall clock, randomness, the network, where its
//! committer runs and what its store is written on.
//!
//! Production uses [`Env::production`]: the system clock, tokio TCP, OS randomness, a committer
//! thread and a data dir on the file system. The deterministic simulation (`concord-sim`) passes
//! its own: turmoil's network, a skewed simulated clock, randomness from the seed, a committer
//! task, and a crash-faithful in-memory disk under redb. Everything else — engine, committer,
//! store, replication links, forwarding, ack waits — is the same code in both, so what the
//! simulation proves is proved of the code users run (FoundationDB, TigerBeetle, openraft's
//! turmoil tests). Monotonic time is `tokio::time::Instant`, which turmoil drives; the node never
//! reads `std::time::Instant` or `SystemTime` outside this file.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream (a TCP connection, or turmoil's).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}
pub type BoxStream = Box<dyn Stream>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A bound listening socket.
pub trait Listener: Send + 'static {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
}

/// Connect and listen.
pub trait Network: Send + Sync + 'static {
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxStream>>;
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>>;
}

/// The wall clock: milliseconds since the Unix epoch. (HLCs take their physical part from it; a
/// simulation skews it per node by hours.)
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// Where the committer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitterMode {
    /// A dedicated OS thread (production: redb's fsync blocks).
    Thread,
    /// A task on the current runtime (simulation: one deterministic thread, an in-memory disk).
    Task,
}

/// What the store is written on.
pub enum Storage {
    /// `concord.redb` in the region's data dir (production).
    DataDir,
    /// A redb storage backend (the simulation's crash-faithful disk).
    Backend(Box<dyn FnOnce() -> Box<dyn redb::StorageBackend> + Send>),
}

/// Randomness: OS-seeded in production, from the seed in a simulation.
pub struct Random(Mutex<u64>);

impl Random {
    pub fn seeded(seed: u64) -> Random {
        Random(Mutex::new(seed ^ 0x9E37_79B9_7F4A_7C15))
    }

    /// From the OS (`/dev/urandom`), mixed with the time and a per-process address.
    pub fn from_os() -> Random {
        let mut seed = [0u8; 8];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            use std::io::Read;
            let _ = f.read_exact(&mut seed);
        }
        let stack = &seed as *const _ as u64;
        Random::seeded(u64::from_le_bytes(seed) ^ system_now_ms().rotate_left(20) ^ stack)
    }

    /// SplitMix64.
    pub fn next_u64(&self) -> u64 {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn bytes16(&self) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        n[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        n
    }
}

/// Everything a node takes from outside.
pub struct Env {
    pub clock: Arc<dyn Clock>,
    pub net: Arc<dyn Network>,
    pub random: Random,
    pub committer: CommitterMode,
    /// Taken by `Node::open`.
    pub storage: Mutex<Option<Storage>>,
    /// Sees every change the engine makes, as it is added to the pending group (under the
    /// engine lock: it must not call back into the node). The simulation records its history here.
    pub observer: Option<Observer>,
    /// Deliberately wrong behaviour, only to prove the simulation's invariants can fail.
    #[doc(hidden)]
    pub planted_bug: Option<concord_core::PlantedBug>,
}

/// See [`Env::observer`].
pub type Observer = Arc<dyn Fn(Observed<'_>) + Send + Sync>;

/// What an [`Observer`] sees.
pub enum Observed<'a> {
    /// An engine output entering the pending group (ops applied or written, conflicts).
    Output(&'a concord_core::Output),
    /// A full-state transfer finished: everything in this vector is now merged.
    SnapshotMerged(&'a concord_core::VersionVector),
    /// This home region answers a forwarded write whose (last) op is this dot: the moment its
    /// acknowledgement leaves (the forwarding region's client hears it a little later).
    ForwardAnswered(concord_core::Dot),
}

impl Env {
    /// The system clock, tokio TCP, OS randomness, a committer thread, a data dir.
    pub fn production() -> Env {
        Env {
            clock: Arc::new(SystemClock),
            net: Arc::new(TokioNet),
            random: Random::from_os(),
            committer: CommitterMode::Thread,
            storage: Mutex::new(Some(Storage::DataDir)),
            observer: None,
            planted_bug: None,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) fn take_storage(&self) -> Storage {
        self.storage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or(Storage::DataDir)
    }
}

fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        system_now_ms()
    }
}

/// Tokio TCP (with `TCP_NODELAY`: replication and forwarding send small frames).
pub struct TokioNet;

struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, addr) = self.0.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Box::new(s) as BoxStream, addr))
        })
    }
}

impl Network for TokioNet {
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxStream>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TokioListener(l)) as Box<dyn Listener>)
        })
    }
}

/// Make any panic stop the process (after the usual message). A panic in the middle of an engine
/// mutation would otherwise leave a torn engine behind a mutex that later callers recover and go
/// on serving; stopped, the node recovers from its disk on restart instead. The binary and the
/// simulation install it (a panicking simulated node fails its seed); `panic = "abort"` in the
/// profiles would do the same but double every build (tests need unwinding).
pub fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        eprintln!("concord: a panic is fatal (the node recovers from its disk on restart); aborting");
        std::process::abort();
    }));
}
