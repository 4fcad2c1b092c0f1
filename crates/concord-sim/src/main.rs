//! The seed runner: `concord-sim --seed N` reproduces one run; `--seeds N` sweeps N seeds.

use concord_sim::{run_seed, Options, PlantedBug};

fn usage() -> ! {
    eprintln!(
        "usage: concord-sim [--seed N | --seeds N [--first N]] [--regions 3..5] [--chaos-ms N] [--plant causal|merge] [--verbose] [--log]\n\
         Runs the deterministic simulation of a Concord cluster. A failing seed prints the command that reproduces it."
    );
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut seed: Option<u64> = None;
    let mut seeds = 1u64;
    let mut first = 1u64;
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
            "--regions" => opts.regions = num("--regions") as usize,
            "--chaos-ms" => opts.chaos_ms = num("--chaos-ms"),
            "--plant" => {
                opts.planted = match args.next().as_deref() {
                    Some("causal") => Some(PlantedBug::Causal),
                    Some("merge") => Some(PlantedBug::Merge),
                    _ => usage(),
                }
            }
            "--verbose" => verbose = true,
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
    let list: Vec<u64> = match seed {
        Some(s) => vec![s],
        None => (first..first + seeds).collect(),
    };
    let mut failed = 0;
    let started = std::time::Instant::now();
    for s in &list {
        let o = run_seed(*s, &opts);
        if verbose || !o.ok() {
            println!(
                "seed {}: {} regions, {} acked writes, {} ops, {} conflicts, {} restarts, {} partitions, {} snapshots, caught up after {:?} ms",
                o.seed, o.regions, o.acked_writes, o.ops, o.conflicts, o.restarts, o.partitions, o.snapshots, o.caught_up_after_ms
            );
        }
        if !o.ok() {
            failed += 1;
            for f in &o.failures {
                println!("  FAIL {f}");
            }
            if verbose {
                for e in &o.events {
                    println!("  {e}");
                }
            }
            let plant = match opts.planted {
                Some(PlantedBug::Causal) => " --plant causal",
                Some(PlantedBug::Merge) => " --plant merge",
                None => "",
            };
            println!(
                "  reproduce: cargo run -p concord-sim -- --seed {}{} --verbose",
                o.seed, plant
            );
        }
    }
    println!(
        "{} passed, {} failed ({} seeds in {:.1} s)",
        list.len() - failed,
        failed,
        list.len(),
        started.elapsed().as_secs_f64()
    );
    std::process::exit(if failed > 0 { 1 } else { 0 });
}
