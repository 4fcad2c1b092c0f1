//! The `concord` binary: `serve` runs one region's node; `up` runs a whole local cluster.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use concord_server::config::{Config, PolicyFile};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "concord", version, about = "Concord: an active-active, geo-replicated key-value store that speaks the Redis protocol.", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one region's node from a cluster config file.
    Serve {
        /// The cluster config (TOML; see docs/operations.md).
        #[arg(long)]
        config: PathBuf,
        /// Which [[region]] of the config this node is.
        #[arg(long)]
        region: String,
    },
    /// Start a local cluster: one node per region as child processes, until Ctrl-C / SIGTERM.
    ///
    /// Region i (0-based) listens on RESP base+i, HTTP base+1000+i, peer base+2000+i. Running `up`
    /// again on the same data dir resumes the same cluster with its data.
    Up {
        /// Comma-separated region names.
        #[arg(long, default_value = "us,eu,ap", value_delimiter = ',')]
        regions: Vec<String>,
        #[arg(long, default_value = "./concord-data")]
        data_dir: PathBuf,
        /// Delay applied to every replication link, in ms (a simulated WAN).
        #[arg(long, default_value_t = 0)]
        wan_delay_ms: u64,
        #[arg(long, default_value_t = 7001)]
        base_port: u16,
        /// mesh, ring or star (the first region is the hub).
        #[arg(long, default_value = "mesh")]
        topology: String,
        /// A TOML file of [[policy]] rules (and optionally priority, max_siblings).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Durability: always, batch or everysec.
        #[arg(long, default_value = "batch")]
        fsync: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,axum=warn,hyper=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Cmd::Serve { config, region } => serve(&config, &region),
        Cmd::Up {
            regions,
            data_dir,
            wan_delay_ms,
            base_port,
            topology,
            policies,
            fsync,
        } => up(UpArgs {
            regions,
            data_dir,
            wan_delay_ms,
            base_port,
            topology,
            policies,
            fsync,
        }),
    }
}

fn serve(config_path: &Path, region: &str) -> Result<()> {
    let config = Config::load(config_path)?;
    if config.region(region).is_none() {
        let names: Vec<_> = config.regions.iter().map(|r| r.name.as_str()).collect();
        bail!(
            "region {region:?} is not in {} (regions: {})",
            config_path.display(),
            names.join(", ")
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(concord_server::server::serve(config, region.to_string()))?;
    Ok(())
}

struct UpArgs {
    regions: Vec<String>,
    data_dir: PathBuf,
    wan_delay_ms: u64,
    base_port: u16,
    topology: String,
    policies: Option<PathBuf>,
    fsync: String,
}

/// The secret of an existing cluster in `dir`, or a fresh random one.
fn cluster_secret(config_path: &Path) -> Result<String> {
    if let Ok(old) = Config::load(config_path) {
        return Ok(old.secret);
    }
    let mut bytes = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a cluster secret")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn up(args: UpArgs) -> Result<()> {
    if args.regions.is_empty() || args.regions.len() > 64 {
        bail!("--regions: give 1 to 64 region names");
    }
    if !["mesh", "ring", "star"].contains(&args.topology.as_str()) {
        bail!("--topology: expected mesh, ring or star, got {:?}", args.topology);
    }
    if !["always", "batch", "everysec"].contains(&args.fsync.as_str()) {
        bail!("--fsync: expected always, batch or everysec, got {:?}", args.fsync);
    }
    let top = args.base_port as u32 + 2000 + args.regions.len() as u32;
    if top > 65535 {
        bail!(
            "--base-port {} leaves no room for {} regions (peer ports end at {top})",
            args.base_port,
            args.regions.len()
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let config_path = data_dir.join("concord.toml");
    let secret = cluster_secret(&config_path)?;
    let mut text = String::new();
    text += "# Generated by `concord up`; regenerated on every start (edit the flags, not this file).\n";
    text += &format!(
        "cluster = \"concord-local\"\nsecret = {}\ntopology = {}\n",
        toml_str(&secret),
        toml_str(&args.topology)
    );
    if args.topology == "star" {
        text += &format!("hub = {}\n", toml_str(&args.regions[0]));
    }
    text += &format!("link_delay_ms = {}\n", args.wan_delay_ms);
    let mut policy_text = String::new();
    if let Some(p) = &args.policies {
        let raw = std::fs::read_to_string(p).with_context(|| format!("reading --policies {}", p.display()))?;
        let file: PolicyFile = toml::from_str(&raw).with_context(|| format!("invalid --policies {}", p.display()))?;
        if let Some(prio) = &file.priority {
            text += &format!(
                "priority = [{}]\n",
                prio.iter().map(|s| toml_str(s)).collect::<Vec<_>>().join(", ")
            );
        }
        if let Some(m) = file.max_siblings {
            text += &format!("max_siblings = {m}\n");
        }
        if let Some(t) = file.ack_timeout_ms {
            text += &format!("ack_timeout_ms = {t}\n");
        }
        // Script paths in the policy file are relative to that file.
        let base = p.canonicalize()?.parent().map(Path::to_path_buf).unwrap_or_default();
        for pol in &file.policy {
            policy_text += "\n[[policy]]\n";
            policy_text += &format!(
                "match = {}\nstrings = {}\nreplicate = {}\n",
                toml_str(&pol.pattern),
                toml_str(&pol.strings),
                pol.replicate
            );
            if let Some(s) = &pol.script {
                policy_text += &format!("script = {}\n", toml_str(&base.join(s).display().to_string()));
            }
            for (k, v) in [("home", &pol.home), ("read_miss", &pol.read_miss), ("ack", &pol.ack)] {
                if let Some(v) = v {
                    policy_text += &format!("{k} = {}\n", toml_str(v));
                }
            }
        }
    }
    text += &format!("\n[storage]\nfsync = {}\n", toml_str(&args.fsync));
    for (i, name) in args.regions.iter().enumerate() {
        let p = args.base_port as u32 + i as u32;
        text += &format!(
            "\n[[region]]\nname = {}\nid = {}\nresp = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\npeer = \"127.0.0.1:{}\"\ndata_dir = {}\n",
            toml_str(name),
            i + 1,
            p,
            p + 1000,
            p + 2000,
            toml_str(&data_dir.join(name).display().to_string())
        );
    }
    text += &policy_text;
    // Validate before starting anything: the error names the field.
    Config::parse(&text).context("the generated cluster config is invalid (check --regions and --policies)")?;
    std::fs::write(&config_path, &text)?;

    let exe = std::env::current_exe()?;
    let mut children: Vec<(String, Child)> = Vec::new();
    for name in &args.regions {
        let child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--region")
            .arg(name)
            .spawn()
            .with_context(|| format!("starting region {name}"))?;
        children.push((name.clone(), child));
    }
    println!(
        "Concord cluster \"concord-local\" ({} topology, config {})",
        args.topology,
        config_path.display()
    );
    println!(
        "{:<8} {:<6} {:<18} {:<24} {:<18} data",
        "region", "id", "redis (RESP)", "http", "peer"
    );
    for (i, name) in args.regions.iter().enumerate() {
        let p = args.base_port as u32 + i as u32;
        println!(
            "{:<8} {:<6} {:<18} {:<24} {:<18} {}",
            name,
            i + 1,
            format!("127.0.0.1:{p}"),
            format!("http://127.0.0.1:{}", p + 1000),
            format!("127.0.0.1:{}", p + 2000),
            data_dir.join(name).display()
        );
    }
    println!(
        "Try: redis-cli -p {} SET hello world   (Ctrl-C stops the cluster)",
        args.base_port
    );

    // Wait for Ctrl-C / SIGTERM, or a child dying.
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    let stop = &STOP;
    let mut exit_code = 0;
    'wait: while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        for (name, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                eprintln!("region {name} exited ({status}); stopping the cluster");
                exit_code = 1;
                break 'wait;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("stopping {} region(s)...", children.len());
    for (_, child) in &children {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    for (name, child) in children.iter_mut() {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait()? {
                Some(status) => {
                    eprintln!("region {name} stopped ({status})");
                    break;
                }
                None if std::time::Instant::now() > deadline => {
                    eprintln!("region {name} did not stop in 10 s; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    exit_code = 1;
                    break;
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    std::process::exit(exit_code);
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}
