//! The comparison table: figures from one run, and ratios oriented so that > 1 means faster.

/// Whether a larger figure is better (throughput) or a smaller one (latency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// How many times faster `ours` is than `other`.
pub fn speedup(better: Better, ours: f64, other: f64) -> f64 {
    match better {
        Better::Higher => ours / other,
        Better::Lower => other / ours,
    }
}

/// One row of the table.
pub struct Row {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub ours: f64,
    pub cpython: Option<f64>,
    pub peer: Option<(&'static str, f64)>,
}

fn fig(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Renders the rows as a plain-text table.
pub fn render(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<22} {:>13} {:>13} {:>13} {:>9}   {:<22} {:>9}\n",
        "workload", "unit", "ours", "CPython", "vs CPy", "peer", "vs peer"
    );
    for r in rows {
        let cpy = r.cpython.map(fig).unwrap_or_else(|| "-".into());
        let ratio =
            r.cpython.map(|c| format!("{:.1}x", speedup(r.better, r.ours, c))).unwrap_or_else(|| "-".into());
        let (peer, peer_ratio) = match r.peer {
            Some((name, v)) => {
                (format!("{name} {}", fig(v)), format!("{:.1}x", speedup(r.better, r.ours, v)))
            }
            None => ("-".into(), "-".into()),
        };
        out += &format!(
            "{:<22} {:>13} {:>13} {:>13} {:>9}   {:<22} {:>9}\n",
            r.name,
            r.unit,
            fig(r.ours),
            cpy,
            ratio,
            peer,
            peer_ratio
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_say_how_many_times_faster() {
        assert_eq!(speedup(Better::Higher, 200.0, 100.0), 2.0);
        assert_eq!(speedup(Better::Lower, 50.0, 100.0), 2.0);
    }

    #[test]
    fn rows_render_with_ratios_and_blanks() {
        let rows = [
            Row {
                name: "a",
                unit: "ops/s",
                better: Better::Higher,
                ours: 300.0,
                cpython: Some(100.0),
                peer: None,
            },
            Row {
                name: "b",
                unit: "us/process",
                better: Better::Lower,
                ours: 10.0,
                cpython: None,
                peer: Some(("procspawn", 40.0)),
            },
        ];
        let t = render(&rows);
        assert!(t.contains("3.0x"), "{t}");
        assert!(t.contains("procspawn 40.0"), "{t}");
        assert!(t.contains("4.0x"), "{t}");
        assert_eq!(t.lines().count(), 3);
    }
}
