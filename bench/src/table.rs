//! The tables: figures as medians with their min-max, ratios oriented so that > 1 means faster.

use crate::stats::Summary;

/// Whether a larger figure is better (throughput) or a smaller one (time, memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Better {
    Higher,
    Lower,
}

/// How many times better `ours` is than `other` (> 1 = ours is better).
pub fn speedup(better: Better, ours: f64, other: f64) -> f64 {
    match better {
        Better::Higher => ours / other,
        Better::Lower => other / ours,
    }
}

/// A figure in 3 significant digits with a k/M/G suffix.
pub fn fig(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let (x, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e4 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let digits = match x.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    format!("{x:.digits$}{suffix}")
}

/// A CPU-time figure: as [`fig`], but small values keep 3 significant digits (`5.12e-4`).
pub fn fig_cpu(v: f64) -> String {
    if v > 0.0 && v < 0.01 {
        format!("{v:.2e}")
    } else {
        fig(v)
    }
}

/// `median (min-max)`.
pub fn ranged(s: &Summary) -> String {
    format!("{} ({}-{})", fig(s.median), fig(s.min), fig(s.max))
}

/// A ratio as `12.3x (11.0-13.1)`.
pub fn ratio(s: &Summary) -> String {
    format!("{}x ({}-{})", fig(s.median), fig(s.min), fig(s.max))
}

/// One rendered row: the cells in column order.
pub struct Line {
    pub cells: Vec<String>,
}

/// Renders rows under a header, each column as wide as its widest cell.
pub fn render(header: &[&str], lines: &[Line]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for l in lines {
        for (i, c) in l.cells.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let row = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(c.chars().count());
            if i <= 1 {
                s += c;
                s += &" ".repeat(pad);
            } else {
                s += &" ".repeat(pad);
                s += c;
            }
            s += "  ";
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = row(header.to_vec());
    for l in lines {
        out += &row(l.cells.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_say_how_many_times_better() {
        assert_eq!(speedup(Better::Higher, 200.0, 100.0), 2.0);
        assert_eq!(speedup(Better::Lower, 50.0, 100.0), 2.0);
    }

    #[test]
    fn figures_keep_three_digits() {
        assert_eq!(fig(970_123.0), "970k");
        assert_eq!(fig(12_345.0), "12.3k");
        assert_eq!(fig(1_234.0), "1234");
        assert_eq!(fig(12.34), "12.3");
        assert_eq!(fig(0.0123), "0.012");
        assert_eq!(fig(11_500_000.0), "11.5M");
        assert_eq!(fig(f64::NAN), "-");
        assert_eq!(fig_cpu(0.000512), "5.12e-4");
        assert_eq!(fig_cpu(0.0), "0.000");
        assert_eq!(fig_cpu(0.25), "0.250");
        let s = Summary { median: 2.0, min: 1.5, max: 2.5 };
        assert_eq!(ratio(&s), "2.00x (1.50-2.50)");
    }

    #[test]
    fn columns_line_up() {
        let lines = [
            Line { cells: vec!["a".into(), "ops/s".into(), "1".into()] },
            Line { cells: vec!["long_name".into(), "x".into(), "12345".into()] },
        ];
        let t = render(&["workload", "unit", "ours"], &lines);
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.len() == rows[0].len()), "{t}");
        assert!(rows[1].ends_with("    1"), "{t}");
    }
}
