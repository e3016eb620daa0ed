//! Side-by-side benchmarks: this library, CPython's `multiprocessing`, the Rust peers and the
//! physical floors, in one run, per CPU placement. See `bench/README.md`.
//!
//! `cargo run --release -p bench [--features iceoryx2,tokio,redis,mpi] -- [--placement idle|one-core|loaded|all]
//! [--method forkserver|fork|spawn] [--quick] [--reps N] [--min-secs S] [--only name,prefix]
//! [--no-python] [--no-latency] [--json PATH]`

#[cfg(feature = "tokio")]
mod aio;
mod floors;
mod host;
mod latency;
#[cfg(feature = "mpi")]
mod mpi;
mod peers;
mod python;
#[cfg(feature = "redis")]
mod redis;
mod stats;
mod table;
mod workloads;

use host::{Placement, Sample};
use multiproc::StartMethod;
use serde::Serialize;
use stats::Summary;
use table::{Better, Line};

/// What a run is asked to do.
#[derive(Clone, Debug)]
struct Options {
    placements: Vec<Placement>,
    method: StartMethod,
    quick: bool,
    reps: usize,
    min_secs: f64,
    only: Option<Vec<String>>,
    python: bool,
    latency: bool,
    json: String,
    /// Forwarded flags, for the per-placement re-executions.
    forward: Vec<String>,
}

fn parse_method(s: &str) -> StartMethod {
    match s {
        "fork" => StartMethod::Fork,
        "spawn" => StartMethod::Spawn,
        "forkserver" => StartMethod::Forkserver,
        _ => die(&format!("unknown start method {s:?} (fork, forkserver, spawn)")),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(2)
}

fn parse_args() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<String> {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| die(&format!("{flag} needs a value"))))
    };
    let has = |flag: &str| args.iter().any(|a| a == flag);
    const FLAGS: &[&str] = &["--quick", "--no-python", "--no-latency"];
    const VALUED: &[&str] = &["--placement", "--json", "--method", "--only", "--reps", "--min-secs"];
    if has("--help") || has("-h") {
        println!(
            "usage: bench [--placement idle|one-core|loaded|all] [--method forkserver|fork|spawn] \
             [--only NAME,PREFIX] [--reps N] [--min-secs S] [--quick] [--no-python] [--no-latency] \
             [--json PATH]\n(see bench/README.md)"
        );
        std::process::exit(0);
    }
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            a if VALUED.contains(&a) => i += 2,
            a if FLAGS.contains(&a) => i += 1,
            other => die(&format!("unknown argument {other:?} (try --help)")),
        }
    }
    let quick = has("--quick") || std::env::var_os("BENCH_QUICK").is_some();
    let placements = match value("--placement").as_deref() {
        Some("all") => Placement::ALL.to_vec(),
        None if !quick => Placement::ALL.to_vec(),
        None => vec![Placement::Idle],
        Some(p) => vec![Placement::parse(p).unwrap_or_else(|| die(&format!("unknown placement {p:?}")))],
    };
    let mut forward = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if a == "--placement"
            || a == "--json"
            || (i > 0 && (args[i - 1] == "--placement" || args[i - 1] == "--json"))
        {
            continue;
        }
        forward.push(a.clone());
    }
    Options {
        placements,
        method: value("--method").map(|m| parse_method(&m)).unwrap_or(StartMethod::Forkserver),
        quick,
        reps: value("--reps").map(|r| r.parse().unwrap_or_else(|_| die("--reps N"))).unwrap_or(if quick {
            3
        } else {
            5
        }),
        min_secs: value("--min-secs")
            .map(|r| r.parse().unwrap_or_else(|_| die("--min-secs S")))
            .unwrap_or(if quick { 0.01 } else { 0.5 }),
        only: value("--only").map(|s| s.split(',').map(str::to_string).collect()),
        python: !has("--no-python"),
        latency: !has("--no-latency"),
        json: value("--json")
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/results/latest.json").into()),
        forward,
    }
}

/// One side's measurement function: operation count in, one repetition's sample out.
type Measure = Box<dyn FnMut(usize) -> Option<Sample>>;

/// How a sample becomes the row's figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
enum Kind {
    /// Operations per second (or MiB/s for byte workloads).
    Rate,
    /// Microseconds per operation.
    Micros,
    /// The sample's `secs` field holds the figure itself (memory, KiB); not timed.
    Direct,
}

impl Kind {
    fn better(self) -> Better {
        match self {
            Kind::Rate => Better::Higher,
            Kind::Micros | Kind::Direct => Better::Lower,
        }
    }

    fn figure(self, s: &Sample) -> f64 {
        match self {
            Kind::Rate => s.ops / s.secs,
            Kind::Micros => s.secs / s.ops * 1e6,
            Kind::Direct => s.secs,
        }
    }
}

/// Which floor a workload is compared with, and how a floor figure converts to its unit.
#[derive(Clone, Copy)]
enum FloorOf {
    Fork,
    Spawn,
    RoundTrip,
    Handoff,
    /// The 1 MiB hand-off rate converted to tasks of this many bytes.
    HandoffTasks(usize),
    SmallItems,
    Lock,
    Increment,
    Rss,
    /// Perfect scaling: this many tasks per second.
    Ideal(f64),
}

/// Who runs a side of a row: a Rust function here, or the CPython driver.
enum Side {
    Rust(Measure),
    Python,
}

struct Workload {
    name: String,
    unit: &'static str,
    kind: Kind,
    n0: usize,
    ours: Measure,
    python: bool,
    peers: Vec<(&'static str, Measure)>,
    floor: Option<FloorOf>,
}

fn ours(f: impl Fn(usize) -> Sample + 'static) -> Measure {
    Box::new(move |n| Some(f(n)))
}

fn workloads(cores: usize) -> Vec<Workload> {
    use workloads as w;
    use Kind::*;
    let wl = |name: &str, unit, kind, n0, f: Measure| Workload {
        name: name.to_string(),
        unit,
        kind,
        n0,
        ours: f,
        python: true,
        peers: Vec::new(),
        floor: None,
    };
    let mut v = vec![
        Workload {
            floor: Some(FloorOf::Fork),
            ..wl("spawn_join_fork", "us/process", Micros, 20, ours(|n| w::spawn_join(StartMethod::Fork, n)))
        },
        Workload {
            floor: Some(FloorOf::Fork),
            ..wl(
                "spawn_join_forkserver",
                "us/process",
                Micros,
                20,
                ours(|n| w::spawn_join(StartMethod::Forkserver, n)),
            )
        },
        Workload {
            floor: Some(FloorOf::Spawn),
            peers: vec![("procspawn", ours(peers::procspawn_spawn_join))],
            ..wl("spawn_join_spawn", "us/process", Micros, 5, ours(|n| w::spawn_join(StartMethod::Spawn, n)))
        },
        Workload {
            peers: vec![("ipc-channel", ours(peers::ipc_channel_small))],
            floor: Some(FloorOf::SmallItems),
            ..wl("queue_small", "items/s", Rate, 20_000, ours(w::queue_small))
        },
        Workload {
            floor: Some(FloorOf::Handoff),
            peers: vec![
                ("ipc-channel bytes", ours(peers::ipc_channel_1mb)),
                ("ipc-channel IpcSharedMemory", ours(peers::ipc_shared_memory_1mb)),
            ],
            ..wl("queue_1mb", "MiB/s", Rate, 100, ours(w::queue_1mb))
        },
        Workload {
            floor: Some(FloorOf::SmallItems),
            ..wl("queue_8to1", "items/s", Rate, 20_000, ours(w::queue_8to1))
        },
        Workload {
            floor: Some(FloorOf::RoundTrip),
            peers: {
                let p: Vec<(&'static str, Measure)> =
                    vec![("ipc-channel", ours(peers::ipc_channel_roundtrip))];
                #[cfg(feature = "iceoryx2")]
                let p = {
                    let mut p = p;
                    p.push(("iceoryx2 request-response", ours(peers::iceoryx2_rr::roundtrip)));
                    p
                };
                p
            },
            ..wl("pipe_roundtrip", "roundtrips/s", Rate, 5_000, ours(w::pipe_roundtrip))
        },
        wl("pool_map_tiny", "tasks/s", Rate, 20_000, ours(w::pool_map_tiny)),
        Workload {
            peers: vec![("procspawn Pool", ours(peers::procspawn_pool_async))],
            ..wl("pool_apply_async", "tasks/s", Rate, 2_000, ours(w::pool_apply_async))
        },
        Workload {
            floor: Some(FloorOf::RoundTrip),
            peers: vec![("procspawn Pool", ours(peers::procspawn_pool_one))],
            ..wl("apply_get_one", "tasks/s", Rate, 1_000, ours(w::apply_get_one))
        },
        Workload {
            floor: Some(FloorOf::HandoffTasks(w::TEN_MB)),
            ..wl("pool_10mb_arg", "tasks/s", Rate, 10, ours(w::pool_10mb_arg))
        },
    ];
    for workers in 1..=2 * cores {
        let ideal = workers.min(cores) as f64 * 1e6 / w::BURN_US as f64;
        v.push(Workload {
            floor: Some(FloorOf::Ideal(ideal)),
            ..wl(
                &format!("pool_scaling_w{workers}"),
                "tasks/s",
                Rate,
                200,
                Box::new(move |n| Some(w::pool_scaling(workers, n))),
            )
        });
    }
    v.extend([
        Workload {
            floor: Some(FloorOf::RoundTrip),
            ..wl("manager_list_append", "ops/s", Rate, 2_000, ours(w::manager_list_append))
        },
        Workload {
            floor: Some(FloorOf::RoundTrip),
            ..wl("manager_dict_4clients", "ops/s", Rate, 2_000, ours(w::manager_dict_4clients))
        },
        Workload {
            floor: Some(FloorOf::Lock),
            ..wl("lock_uncontended", "ops/s", Rate, 100_000, ours(w::lock_uncontended))
        },
        Workload {
            floor: Some(FloorOf::Increment),
            ..wl("value_increment", "increments/s", Rate, 20_000, ours(w::value_increment))
        },
        Workload {
            floor: Some(FloorOf::Rss),
            ..wl(
                "rss_idle_worker",
                "KiB",
                Direct,
                1,
                Box::new(|_| Some(Sample { secs: w::rss_idle_worker(), ops: 1.0, cpu: 0.0 })),
            )
        },
    ]);
    #[cfg(feature = "tokio")]
    aio::insert_rows(&mut v);
    #[cfg(feature = "redis")]
    v.extend(redis::workloads());
    #[cfg(feature = "mpi")]
    v.extend(mpi::workloads());
    v
}

/// One side of a row, all its repetitions.
#[derive(Serialize)]
struct SideResult {
    side: String,
    n: usize,
    samples: Vec<Sample>,
    figures: Vec<f64>,
    figure: Summary,
    cpu_per_1k_ops: Summary,
    shortest_rep_secs: f64,
}

impl SideResult {
    fn new(side: &str, kind: Kind, n: usize, samples: Vec<Sample>) -> Option<SideResult> {
        if samples.is_empty() {
            return None;
        }
        let figures: Vec<f64> = samples.iter().map(|s| kind.figure(s)).collect();
        let cpu: Vec<f64> = samples.iter().map(|s| s.cpu / s.ops * 1000.0).collect();
        Some(SideResult {
            side: side.to_string(),
            n,
            figure: stats::summary(&figures),
            cpu_per_1k_ops: stats::summary(&cpu),
            shortest_rep_secs: samples.iter().map(|s| s.secs).fold(f64::INFINITY, f64::min),
            samples,
            figures,
        })
    }
}

#[derive(Serialize)]
struct RowResult {
    name: String,
    unit: &'static str,
    better: Better,
    ours: Option<SideResult>,
    cpython: Option<SideResult>,
    peers: Vec<SideResult>,
    best_peer: Option<usize>,
    /// Ratios over the paired (interleaved) repetitions, > 1 = ours better.
    vs_cpython: Option<Summary>,
    vs_peer: Option<Summary>,
    floor: Option<(String, f64)>,
    percent_of_floor: Option<f64>,
}

fn paired_ratios(better: Better, ours: &SideResult, other: &SideResult) -> Summary {
    let r: Vec<f64> =
        ours.figures.iter().zip(&other.figures).map(|(&a, &b)| table::speedup(better, a, b)).collect();
    stats::summary(&r)
}

/// Finds an operation count that makes one repetition last at least `min_secs` (the runs made
/// while searching are the warm-up). None when the side failed.
fn calibrate(f: &mut dyn FnMut(usize) -> Option<Sample>, n0: usize, min_secs: f64) -> Option<usize> {
    let mut n = n0.max(1);
    for _ in 0..8 {
        let s = f(n)?;
        // A margin, so that the repetitions' spread rarely takes one below `min_secs`.
        if s.secs >= 1.2 * min_secs {
            return Some(n);
        }
        let scale = (min_secs / s.secs.max(1e-6) * 1.5).clamp(1.5, 100.0);
        n = (n as f64 * scale).ceil() as usize;
    }
    Some(n)
}

/// The floors, each the median of the repetitions.
#[derive(Serialize)]
struct FloorResult {
    name: &'static str,
    unit: &'static str,
    result: SideResult,
}

fn run_floors(o: &Options) -> Vec<FloorResult> {
    type Floor = (&'static str, &'static str, Kind, usize, fn(usize) -> Sample);
    let list: [Floor; 11] = [
        ("fork+exit+wait", "us/process", Kind::Micros, 50, floors::fork_exit_wait),
        ("posix_spawn(/bin/true)+wait", "us/process", Kind::Micros, 50, floors::posix_spawn_wait),
        ("socketpair round trip", "roundtrips/s", Kind::Rate, 5_000, floors::socketpair_roundtrip),
        ("futex round trip", "roundtrips/s", Kind::Rate, 5_000, floors::futex_roundtrip),
        ("shm spin round trip", "roundtrips/s", Kind::Rate, 5_000, floors::spin_roundtrip),
        ("memcpy 1 MiB", "MiB/s", Kind::Rate, 200, floors::memcpy_1mib),
        ("1 MiB hand-off child->parent", "MiB/s", Kind::Rate, 100, floors::handoff_1mib),
        ("shm spsc ring 8 B", "items/s", Kind::Rate, 100_000, floors::spsc_ring),
        ("cas lock", "ops/s", Kind::Rate, 1_000_000, floors::cas_lock),
        ("shm locked increment, 2 processes", "increments/s", Kind::Rate, 100_000, floors::locked_increment),
        ("rss of /bin/sleep", "KiB", Kind::Direct, 1, floors::rss_sleep),
    ];
    // With --only, just the floors of the rows selected (or all of them with `--only floors`).
    let wanted: Option<Vec<&str>> = o.only.as_ref().filter(|_| !selected(o, "floors")).map(|_| {
        workloads(host::allowed_cpus().len())
            .iter()
            .filter(|w| selected(o, &w.name))
            .filter_map(|w| w.floor)
            .flat_map(FloorOf::sources)
            .copied()
            .collect()
    });
    let mut out = Vec::new();
    for (name, unit, kind, n0, f) in list {
        if wanted.as_ref().is_some_and(|w| !w.contains(&name)) {
            continue;
        }
        eprintln!("  floor: {name}");
        let mut m: Measure = Box::new(move |n| Some(f(n)));
        let n0 = if o.quick { (n0 / 5).max(1) } else { n0 };
        let n = if kind == Kind::Direct { 1 } else { calibrate(&mut m, n0, o.min_secs).unwrap() };
        let samples: Vec<Sample> = (0..o.reps).filter_map(|_| m(n)).collect();
        out.push(FloorResult { name, unit, result: SideResult::new(name, kind, n, samples).unwrap() });
    }
    out
}

impl FloorOf {
    /// The floors this one is taken from.
    fn sources(self) -> &'static [&'static str] {
        match self {
            FloorOf::Fork => &["fork+exit+wait"],
            FloorOf::Spawn => &["posix_spawn(/bin/true)+wait"],
            FloorOf::Handoff | FloorOf::HandoffTasks(_) => &["1 MiB hand-off child->parent"],
            FloorOf::SmallItems => &["shm spsc ring 8 B"],
            FloorOf::Lock => &["cas lock"],
            FloorOf::Increment => &["shm locked increment, 2 processes"],
            FloorOf::Rss => &["rss of /bin/sleep"],
            FloorOf::Ideal(_) => &[],
            FloorOf::RoundTrip => &["socketpair round trip", "futex round trip", "shm spin round trip"],
        }
    }
}

fn floor_for(of: FloorOf, floors: &[FloorResult]) -> Option<(String, f64)> {
    let get = |name: &str| {
        floors.iter().find(|f| f.name == name).map(|f| (f.name.to_string(), f.result.figure.median))
    };
    match of {
        FloorOf::Fork => get("fork+exit+wait"),
        FloorOf::Spawn => get("posix_spawn(/bin/true)+wait"),
        FloorOf::Handoff => get("1 MiB hand-off child->parent"),
        FloorOf::HandoffTasks(bytes) => get("1 MiB hand-off child->parent")
            .map(|(n, v)| (format!("{n} / {} MB", bytes / 1_000_000), v * (1 << 20) as f64 / bytes as f64)),
        FloorOf::SmallItems => get("shm spsc ring 8 B"),
        FloorOf::Lock => get("cas lock"),
        FloorOf::Increment => get("shm locked increment, 2 processes"),
        FloorOf::Rss => get("rss of /bin/sleep"),
        FloorOf::Ideal(v) => Some(("ideal scaling".to_string(), v)),
        FloorOf::RoundTrip => ["socketpair round trip", "futex round trip", "shm spin round trip"]
            .iter()
            .filter_map(|n| get(n))
            .max_by(|a, b| a.1.total_cmp(&b.1)),
    }
}

fn selected(o: &Options, name: &str) -> bool {
    o.only.as_ref().is_none_or(|only| only.iter().any(|p| name == p || name.starts_with(p.as_str())))
}

fn run_workloads(o: &Options, py: &mut Option<python::Driver>, floors: &[FloorResult]) -> Vec<RowResult> {
    let cores = host::allowed_cpus().len();
    let mut rows = Vec::new();
    for mut w in workloads(cores).into_iter().filter(|w| selected(o, &w.name)) {
        eprintln!("  {}", w.name);
        let method = o.method;
        let name = w.name.clone();
        let mut sides: Vec<(String, Side)> =
            vec![("ours".into(), Side::Rust(std::mem::replace(&mut w.ours, Box::new(|_| None))))];
        if w.python && py.is_some() {
            sides.push(("CPython".into(), Side::Python));
        }
        for (pname, m) in w.peers.drain(..) {
            sides.push((pname.into(), Side::Rust(m)));
        }
        let mut call = |side: &mut Side, n: usize| match side {
            Side::Rust(m) => m(n),
            Side::Python => py.as_mut()?.run(&name, n, method),
        };
        // Calibrate each side, then interleave: ours, CPython, peers; ours, CPython, ...
        let ns: Vec<Option<usize>> = sides
            .iter_mut()
            .map(|(_, m)| {
                if w.kind == Kind::Direct {
                    Some(1)
                } else {
                    calibrate(&mut |n| call(m, n), if o.quick { (w.n0 / 5).max(1) } else { w.n0 }, o.min_secs)
                }
            })
            .collect();
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); sides.len()];
        for _ in 0..o.reps {
            for (i, (_, m)) in sides.iter_mut().enumerate() {
                if let Some(n) = ns[i] {
                    if let Some(s) = call(m, n) {
                        samples[i].push(s);
                    }
                }
            }
        }
        let mut results: Vec<Option<SideResult>> = sides
            .iter()
            .zip(ns)
            .zip(samples)
            .map(|(((side, _), n), s)| SideResult::new(side, w.kind, n.unwrap_or(0), s))
            .collect();
        let ours = results.remove(0);
        let cpython = if w.python && py.is_some() { results.remove(0) } else { None };
        let peers: Vec<SideResult> = results.into_iter().flatten().collect();
        let better = w.kind.better();
        let best_peer = (0..peers.len()).max_by(|&a, &b| {
            table::speedup(better, peers[a].figure.median, peers[b].figure.median).total_cmp(&1.0)
        });
        let vs = |other: Option<&SideResult>| Some(paired_ratios(better, ours.as_ref()?, other?));
        let floor = w.floor.and_then(|f| floor_for(f, floors));
        let percent_of_floor = floor.as_ref().and_then(|(_, v)| {
            let o = ours.as_ref()?.figure.median;
            Some(100.0 * table::speedup(better, o, *v))
        });
        rows.push(RowResult {
            vs_cpython: vs(cpython.as_ref()),
            vs_peer: vs(best_peer.map(|i| &peers[i])),
            name,
            unit: w.unit,
            better,
            ours,
            cpython,
            best_peer,
            peers,
            floor,
            percent_of_floor,
        });
    }
    rows
}

#[derive(Serialize)]
struct LatencyResult {
    workload: &'static str,
    mode: String,
    interval_ns: u64,
    ours: Option<[u64; 3]>,
    ours_samples: usize,
    cpython: Option<[u64; 3]>,
    cpython_samples: usize,
}

fn run_latency(o: &Options, py: &mut Option<python::Driver>) -> Vec<LatencyResult> {
    type Lat = fn(u64, usize) -> Vec<u64>;
    let list: [(&'static str, Lat); 3] = [
        ("pipe_roundtrip", workloads::pipe_latency),
        ("manager_list_append", workloads::manager_latency),
        ("apply_get_one", workloads::apply_get_latency),
    ];
    let mut out = Vec::new();
    for (name, f) in list {
        if !selected(o, name) && !selected(o, "latency") {
            continue;
        }
        for interval_ns in [0u64, 10_000, 100_000, 1_000_000] {
            let n = if interval_ns == 0 {
                20_000
            } else {
                ((o.min_secs.max(0.5) * 1e9 / interval_ns as f64) as usize).clamp(2_000, 50_000)
            };
            let n = if o.quick { (n / 20).max(100) } else { n };
            let mode = if interval_ns == 0 {
                "closed".to_string()
            } else {
                format!("paced {}us", interval_ns / 1000)
            };
            eprintln!("  latency {name} {mode}");
            let ours = f(interval_ns, n);
            let cpy = py.as_mut().and_then(|d| d.latency(name, interval_ns, n, o.method));
            out.push(LatencyResult {
                workload: name,
                mode,
                interval_ns,
                ours_samples: ours.len(),
                ours: Some(latency::percentiles(ours)),
                cpython_samples: cpy.as_ref().map_or(0, Vec::len),
                cpython: cpy.map(latency::percentiles),
            });
        }
    }
    out
}

fn render_rows(rows: &[RowResult], min_secs: f64) -> String {
    let header = [
        "workload",
        "unit",
        "ours (min-max)",
        "cpu/1k",
        "CPython (min-max)",
        "cpu/1k",
        "vs CPython",
        "best peer",
        "peer (min-max)",
        "vs peer",
        "floor",
        "% floor",
    ];
    let side = |r: &RowResult, s: &Option<SideResult>| match s {
        Some(s) => {
            let timed = r.unit != "KiB";
            let short = if timed && s.shortest_rep_secs < min_secs { "*" } else { "" };
            let cpu = if s.samples.iter().all(|x| x.cpu == 0.0) {
                "-".into()
            } else {
                table::fig_cpu(s.cpu_per_1k_ops.median)
            };
            (format!("{}{short}", table::ranged(&s.figure)), cpu)
        }
        None => ("-".into(), "-".into()),
    };
    let lines: Vec<Line> = rows
        .iter()
        .map(|r| {
            let (o, oc) = side(r, &r.ours);
            let (c, cc) = side(r, &r.cpython);
            let peer = r.best_peer.map(|i| &r.peers[i]);
            Line {
                cells: vec![
                    r.name.clone(),
                    r.unit.to_string(),
                    o,
                    oc,
                    c,
                    cc,
                    r.vs_cpython.as_ref().map_or("-".into(), table::ratio),
                    peer.map_or("-".into(), |p| p.side.clone()),
                    peer.map_or("-".into(), |p| table::ranged(&p.figure)),
                    r.vs_peer.as_ref().map_or("-".into(), table::ratio),
                    r.floor.as_ref().map_or("-".into(), |(n, v)| format!("{} {n}", table::fig(*v))),
                    r.percent_of_floor.map_or("-".into(), |p| format!("{p:.0}%")),
                ],
            }
        })
        .collect();
    table::render(&header, &lines)
}

fn render_floors(floors: &[FloorResult]) -> String {
    let lines: Vec<Line> = floors
        .iter()
        .map(|f| Line {
            cells: vec![
                f.name.to_string(),
                f.unit.to_string(),
                table::ranged(&f.result.figure),
                table::fig_cpu(f.result.cpu_per_1k_ops.median),
            ],
        })
        .collect();
    table::render(&["floor", "unit", "figure (min-max)", "cpu/1k"], &lines)
}

fn render_latency(l: &[LatencyResult]) -> String {
    let us = |p: &Option<[u64; 3]>, n: usize| match p {
        Some(p) => format!(
            "{} / {} / {} ({n})",
            table::fig(p[0] as f64 / 1e3),
            table::fig(p[1] as f64 / 1e3),
            table::fig(p[2] as f64 / 1e3)
        ),
        None => "-".into(),
    };
    let lines: Vec<Line> = l
        .iter()
        .map(|r| Line {
            cells: vec![
                r.workload.to_string(),
                r.mode.clone(),
                us(&r.ours, r.ours_samples),
                us(&r.cpython, r.cpython_samples),
            ],
        })
        .collect();
    table::render(
        &["latency, us", "mode", "ours p50 / p99 / p99.9 (samples)", "CPython p50 / p99 / p99.9 (samples)"],
        &lines,
    )
}

#[derive(Serialize)]
struct PlacementResult {
    placement: &'static str,
    start_method: &'static str,
    reps: usize,
    min_secs: f64,
    environment: host::Environment,
    busy_loop_pids: Vec<i32>,
    floors: Vec<FloorResult>,
    rows: Vec<RowResult>,
    latency: Vec<LatencyResult>,
    notes: Vec<String>,
}

fn run_placement(o: &Options, placement: Placement) -> PlacementResult {
    let given = host::allowed_cpus();
    if placement == Placement::OneCore {
        host::set_affinity(&[given[0]]).unwrap_or_else(|e| die(&format!("sched_setaffinity: {e}")));
    }
    let load = (placement == Placement::Loaded).then(|| host::Load::start(given.len()).expect("busy loops"));
    multiproc::force_start_method(o.method);
    let cpus = host::allowed_cpus();
    let mut py = if o.python { python::Driver::start(o.method, &cpus) } else { None };
    let pyver = py.as_ref().map_or_else(|| "not run".to_string(), |d| d.banner.clone());
    let environment = host::environment(&pyver);
    let mut notes = vec![];
    if !cfg!(feature = "iceoryx2") {
        notes.push("iceoryx2 peer not built: run with --features iceoryx2".to_string());
    }
    if !cfg!(feature = "tokio") {
        notes.push("async rows not built: run with --features tokio".to_string());
    }
    if !cfg!(feature = "redis") {
        notes.push("Redis rows not built: run with --features redis".to_string());
    }
    println!(
        "\n=== placement: {} | start method (both sides): {} | {} repetitions of >= {} s ===",
        placement.name(),
        o.method.name(),
        o.reps,
        o.min_secs
    );
    println!("{}", environment.header());
    if let Some(l) = &load {
        println!("load: {} busy-loop processes, pids {:?}", l.pids().len(), l.pids());
    }
    eprintln!("[{}] floors", placement.name());
    let floors = run_floors(o);
    eprintln!("[{}] workloads", placement.name());
    let rows = run_workloads(o, &mut py, &floors);
    #[cfg(feature = "tokio")]
    notes.extend(aio::versus_blocking(&rows));
    #[cfg(feature = "mpi")]
    notes.extend(mpi::notes());
    if !cfg!(feature = "mpi") {
        notes.push("MPI rows (mpi_pool_*, against mpi4py.futures) not built: run with --features mpi".into());
    }
    let latency = if o.latency { run_latency(o, &mut py) } else { Vec::new() };
    drop(py);
    #[cfg(feature = "redis")]
    {
        redis::shutdown();
        notes.extend(redis::notes());
        notes.extend(redis::targets(&rows));
    }
    let busy_loop_pids = load.as_ref().map_or_else(Vec::new, host::Load::pids);
    drop(load);
    println!("\n{}", render_floors(&floors));
    println!("{}", render_rows(&rows, o.min_secs));
    for r in rows.iter().filter(|r| r.peers.len() > 1) {
        let all: Vec<String> =
            r.peers.iter().map(|p| format!("{} {}", p.side, table::ranged(&p.figure))).collect();
        println!("peers of {}: {}", r.name, all.join(", "));
    }
    println!("* a repetition shorter than {} s; cpu/1k = CPU seconds of the side's whole process tree per 1000 operations (per 1000 MiB for MiB/s rows)", o.min_secs);
    if !latency.is_empty() {
        println!("\n{}", render_latency(&latency));
    }
    for n in &notes {
        println!("note: {n}");
    }
    PlacementResult {
        placement: placement.name(),
        start_method: o.method.name(),
        reps: o.reps,
        min_secs: o.min_secs,
        environment,
        busy_loop_pids,
        floors,
        rows,
        latency,
        notes,
    }
}

fn write_json(path: &str, v: &impl Serialize) {
    if let Some(dir) = std::path::Path::new(path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(path, serde_json::to_string_pretty(v).unwrap()) {
        Ok(()) => eprintln!("wrote {path}"),
        Err(e) => eprintln!("could not write {path}: {e}"),
    }
}

fn main() {
    // Rank 0 of the MPI rows' job (the other ranks serve its pool and never get here).
    #[cfg(feature = "mpi")]
    if std::env::args().nth(1).as_deref() == Some("--mpi-serve") {
        return mpi::serve();
    }
    procspawn::init();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--busy-loop") {
        host::busy_loop(args.get(2).and_then(|p| p.parse().ok()).unwrap_or(0));
    }
    let o = parse_args();
    if o.placements.len() == 1 {
        let r = run_placement(&o, o.placements[0]);
        write_json(&o.json, &serde_json::json!({ "placements": [r] }));
        return;
    }
    // Each placement in a fresh process, so that no helper (forkserver, pool) outlives the
    // affinity it was started with; the parts are merged into one file.
    let exe = std::env::current_exe().unwrap();
    let mut parts = Vec::new();
    for p in &o.placements {
        let part = format!("{}.{}.part", o.json, p.name());
        let st = std::process::Command::new(&exe)
            .args(&o.forward)
            .args(["--placement", p.name(), "--json", &part])
            .status()
            .expect("re-run the bench for a placement");
        if !st.success() {
            eprintln!("placement {} failed: {st}", p.name());
            continue;
        }
        if let Some(v) = std::fs::read_to_string(&part)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        {
            if let Some(a) = v["placements"].as_array() {
                parts.extend(a.iter().cloned());
            }
        }
        let _ = std::fs::remove_file(&part);
    }
    write_json(&o.json, &serde_json::json!({ "placements": parts }));
}
