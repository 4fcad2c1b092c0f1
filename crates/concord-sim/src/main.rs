//! The seed runner: `concord-sim --seed N` reproduces one run; `--seeds N` sweeps N seeds.
//!
//! A sweep runs every seed in its own process (`--jobs` at a time): one run leaves traces in
//! process-wide state of the libraries under the node (a seed run after another is not the same
//! run as that seed alone), so a seed's failure in a sweep replays exactly with `--seed N`.

use concord_sim::{run_seed, Options, PlantedBug};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn usage() -> ! {
    eprintln!(
        "usage: concord-sim [--seed N | --seeds N [--first N] [--jobs J]] [--regions 3..5] [--chaos-ms N] [--plant BUG] [--pubsub] [--verbose] [--log]\n\
         Runs the deterministic simulation of a Concord cluster: real nodes (concord-server) on turmoil,\n\
         crash-faithful disks, partitions, crashes, lost disks, restored backups, clock skew.\n\
         A failing seed prints the command that reproduces it. --log prints the nodes' logs (RUST_LOG);\n\
         CONCORD_SIM_TRACE_KEY=<key> adds that key's ops, where each region applied them, and its\n\
         final state in every region to the report. --pubsub adds pub/sub messages and checks each\n\
         subscriber gets each message at most once, in publish order per publisher.\n\
         BUG (to show the invariants catch it): {}",
        PlantedBug::ALL.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
    );
    std::process::exit(2)
}

fn main() {
    concord_server::env::abort_on_panic();
    let mut args = std::env::args().skip(1);
    let mut seed: Option<u64> = None;
    let mut seeds = 1u64;
    let mut first = 1u64;
    let mut jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as u64;
    let mut verbose = false;
    let mut opts = Options::default();
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> u64 {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{name} needs a number");
                usage()
            })
        };
        match a.as_str() {
            "--seed" => seed = Some(num("--seed")),
            "--seeds" => seeds = num("--seeds"),
            "--first" => first = num("--first"),
            "--jobs" => jobs = num("--jobs").max(1),
            "--regions" => opts.regions = num("--regions") as usize,
            "--chaos-ms" => opts.chaos_ms = num("--chaos-ms"),
            "--plant" => {
                let name = args.next().unwrap_or_default();
                opts.planted = Some(PlantedBug::parse(&name).unwrap_or_else(|| usage()));
            }
            "--verbose" => verbose = true,
            "--pubsub" => opts.pubsub = true,
            "--log" => {
                // The nodes' own logs (RUST_LOG filters; default info), for one seed.
                let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
                tracing_subscriber::fmt().with_env_filter(filter).init();
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    // The pub/sub plant needs the pub/sub workload to show.
    if opts.planted == Some(PlantedBug::PublishAhead) {
        opts.pubsub = true;
    }
    let plant = opts
        .planted
        .map(|p| format!(" --plant {}", p.name()))
        .unwrap_or_default();
    if let Some(s) = seed {
        let o = run_seed(s, &opts);
        if verbose || !o.ok() {
            print_outcome(&o, verbose, &plant);
        }
        println!("{} passed, {} failed (1 seeds)", o.ok() as u8, (!o.ok()) as u8);
        std::process::exit(if o.ok() { 0 } else { 1 });
    }

    // A sweep: each seed in a child process, `jobs` at a time.
    let exe = std::env::current_exe().expect("own executable");
    let started = std::time::Instant::now();
    let list: Vec<u64> = (first..first + seeds).collect();
    let (mut passed, mut failed) = (0u64, 0u64);
    for chunk in list.chunks(jobs as usize) {
        let children: Vec<_> = chunk
            .iter()
            .map(|s| {
                let mut c = Command::new(&exe);
                c.arg("--seed").arg(s.to_string());
                if opts.regions != 0 {
                    c.arg("--regions").arg(opts.regions.to_string());
                }
                c.arg("--chaos-ms").arg(opts.chaos_ms.to_string());
                if let Some(p) = opts.planted {
                    c.arg("--plant").arg(p.name());
                }
                if verbose {
                    c.arg("--verbose");
                }
                if opts.pubsub {
                    c.arg("--pubsub");
                }
                (*s, c.stdout(Stdio::piped()).spawn().expect("spawn a seed"))
            })
            .collect();
        for (s, mut child) in children {
            let out = child.stdout.take().expect("piped");
            let lines: Vec<String> = BufReader::new(out).lines().map_while(Result::ok).collect();
            let ok = child.wait().map(|st| st.success()).unwrap_or(false);
            for l in lines.iter().filter(|l| !l.contains(" passed, ")) {
                println!("{l}");
            }
            if ok {
                passed += 1;
            } else {
                failed += 1;
                if lines.is_empty() {
                    println!("seed {s}: the run crashed\n  reproduce: cargo run -p concord-sim -- --seed {s}{plant} --verbose");
                }
            }
        }
        let done = passed + failed;
        if done % 500 < jobs && done >= 500 {
            eprintln!(
                "... {done} of {} seeds, {failed} failed, {:.0} s",
                list.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "{} passed, {} failed ({} seeds in {:.1} s)",
        passed,
        failed,
        list.len(),
        started.elapsed().as_secs_f64()
    );
    std::process::exit(if failed > 0 { 1 } else { 0 });
}

fn print_outcome(o: &concord_sim::Outcome, verbose: bool, plant: &str) {
    println!(
        "seed {}: {} regions, {} acked writes, {} ops, {} conflicts, {} restarts, {} partitions, {} snapshots, {} transactions, {} scripts, {} forwarded scripts, {} units applied whole, {} deleted keys checked, {} home-list pops checked ({} blocking), caught up after {:?} ms",
        o.seed, o.regions, o.acked_writes, o.ops, o.conflicts, o.restarts, o.partitions, o.snapshots, o.transactions, o.scripts, o.forwarded_scripts, o.unit_fragments, o.resurrection_keys, o.home_pops, o.blocking_pops, o.caught_up_after_ms
    );
    for f in &o.failures {
        println!("  FAIL {f}");
    }
    if verbose {
        for e in &o.events {
            println!("  {e}");
        }
    }
    if !o.ok() {
        println!(
            "  reproduce: cargo run -p concord-sim -- --seed {}{plant} --verbose",
            o.seed
        );
    }
}
