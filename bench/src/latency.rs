//! Round-trip latency, closed loop or paced: with an interval, send `i` is scheduled at
//! `start + i * interval` and its latency runs from that scheduled time to the reply, so a late
//! send (the previous round trip overran its slot) counts against the system, not the sampler.

use std::time::{Duration, Instant};

/// Interval 0 = closed loop (next send as soon as the reply is in, latency from the send).
/// Returns nanoseconds, one per round trip; a paced run stops early, after twice its planned
/// span plus a second, if the system cannot keep up, and a closed loop after 5 s.
pub fn run(interval_ns: u64, n: usize, mut rt: impl FnMut()) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    let start = Instant::now();
    let cap = if interval_ns == 0 {
        Duration::from_secs(5)
    } else {
        Duration::from_nanos(interval_ns.saturating_mul(n as u64).saturating_mul(2)) + Duration::from_secs(1)
    };
    for i in 0..n {
        let t0 = if interval_ns == 0 {
            Instant::now()
        } else {
            let due = start + Duration::from_nanos(interval_ns * i as u64);
            wait_until(due);
            due
        };
        rt();
        out.push(t0.elapsed().as_nanos() as u64);
        if start.elapsed() > cap {
            break;
        }
    }
    out
}

/// Sleeps to within 100 us of `due`, then spins.
fn wait_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// p50, p99, p99.9 of a set of samples, ns.
pub fn percentiles(mut samples: Vec<u64>) -> [u64; 3] {
    samples.sort_unstable();
    [50.0, 99.0, 99.9].map(|p| crate::stats::percentile(&samples, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_latency_counts_from_the_scheduled_time() {
        // Each round trip takes 2 ms but the slots are 1 ms: the backlog grows, and latency
        // measured from the schedule grows with it (a closed loop would report 2 ms flat).
        let lat = run(1_000_000, 5, || std::thread::sleep(Duration::from_millis(2)));
        assert_eq!(lat.len(), 5);
        assert!(lat[4] > lat[0] + 2_000_000, "{lat:?}");
        let closed = run(0, 3, || std::thread::sleep(Duration::from_millis(2)));
        assert!(closed.iter().all(|&l| l >= 2_000_000), "{closed:?}");
    }
}
