//! `oxcopy-copy-plot`: render bench/copy.sh's CSV as an SVG — seconds
//! against copy size, log-log, one line per method and filesystem.
//!
//!   oxcopy-copy-plot --csv docs/bench/copy.csv --out docs/bench/copy.svg
//!
//! The CSV has a header and the columns `fs,method,size_bytes,seconds,...`
//! (more columns are ignored). Lives in the bench crate so that the `oxcopy`
//! CLI does not depend on plotters.

use anyhow::{bail, Context, Result};
use clap::Parser;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Plot bench/copy.sh results (SVG, log-log seconds vs size)")]
struct Args {
    /// The CSV written by bench/copy.sh
    #[arg(long)]
    csv: PathBuf,
    /// The SVG to write
    #[arg(long)]
    out: PathBuf,
    /// Chart title
    #[arg(long, default_value = "oxcopy cp: seconds by copy size (log-log)")]
    title: String,
}

/// One measured point.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    series: String,
    mib: f64,
    seconds: f64,
}

/// Parse the CSV: header with at least fs, method, size_bytes, seconds.
fn parse(text: &str) -> Result<Vec<Point>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').map(str::trim).collect();
    let col = |name: &str| header.iter().position(|h| *h == name).with_context(|| format!("no column {name:?}"));
    let (fs, method, size, secs) = (col("fs")?, col("method")?, col("size_bytes")?, col("seconds")?);
    let mut out = Vec::new();
    for (i, l) in lines.enumerate() {
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        let get = |c: usize| f.get(c).copied().with_context(|| format!("line {}: too few columns", i + 2));
        let bytes: f64 = get(size)?.parse().with_context(|| format!("line {}: size_bytes", i + 2))?;
        let seconds: f64 = get(secs)?.parse().with_context(|| format!("line {}: seconds", i + 2))?;
        if bytes <= 0.0 || seconds <= 0.0 {
            continue;
        }
        out.push(Point { series: format!("{} / {}", get(method)?, get(fs)?), mib: bytes / 1048576.0, seconds });
    }
    if out.is_empty() {
        bail!("no data rows");
    }
    Ok(out)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let text = std::fs::read_to_string(&a.csv).with_context(|| format!("reading {}", a.csv.display()))?;
    let points = parse(&text)?;
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for p in &points {
        series.entry(p.series.clone()).or_default().push((p.mib, p.seconds));
    }
    for v in series.values_mut() {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let (xmin, xmax) = points.iter().fold((f64::MAX, 0f64), |(lo, hi), p| (lo.min(p.mib), hi.max(p.mib)));
    let (ymin, ymax) = points.iter().fold((f64::MAX, 0f64), |(lo, hi), p| (lo.min(p.seconds), hi.max(p.seconds)));
    let root = SVGBackend::new(&a.out, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&a.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d((xmin / 1.5..xmax * 1.5).log_scale(), (ymin / 2.0..ymax * 2.0).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("copy size (MiB)")
        .y_desc("seconds")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| if *y >= 1.0 { format!("{y:.0}") } else { format!("{y:.3}") })
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let palette = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0xe3, 0x77, 0xc2),
        RGBColor(0x7f, 0x7f, 0x7f),
    ];
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = palette[i % palette.len()];
        let style = ShapeStyle::from(&color).stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 3, color.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("wrote {} ({} series, {} points)", a.out.display(), series.len(), points.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_by_header() {
        let p =
            parse("fs,method,size_bytes,seconds,extra\nxfs,token,67108864,0.5,x\n\next4,host,1048576,2,y\n").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], Point { series: "token / xfs".into(), mib: 64.0, seconds: 0.5 });
        assert!(parse("fs,method\n").is_err());
        assert!(parse("fs,method,size_bytes,seconds\nxfs,host,abc,1\n").is_err());
    }
}
