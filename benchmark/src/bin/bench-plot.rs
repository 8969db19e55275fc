//! `bench-plot`: draws the PNG charts of scripts/bench.sh with the `plotters` crate.
//!
//! `bench-plot SPEC.json` reads a list of charts, each a set of named series of (x, y) points,
//! and writes one PNG per chart, e.g. throughput against clients per server, or a latency CDF
//! (x: latency in ms, y: fraction of requests). The spec:
//!
//! ```json
//! {"charts": [{"file": "put-throughput.png", "title": "put, 100K keys",
//!              "x_label": "clients", "y_label": "requests/s", "log_x": true,
//!              "series": [{"name": "xline", "points": [[1, 950.0], [10, 8000.0]]}]}]}
//! ```
//!
//! Text is drawn with a TrueType font read at run time (`--font`, or DejaVu Sans / Liberation
//! Sans from the usual system paths), so no fontconfig is needed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use serde::Deserialize;

/// Where a sans-serif TrueType font is looked for when `--font` is not given.
const FONT_CANDIDATES: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];
/// The family name charts use; the loaded font is registered under it.
const FAMILY: &str = "sans-serif";
/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 560);

#[derive(Parser, Debug)]
#[command(
    name = "bench-plot",
    about = "Draw PNG line charts (throughput, latency CDF) from a JSON spec"
)]
struct Cli {
    /// The chart spec (see the binary's documentation).
    spec: PathBuf,
    /// Directory the charts' `file`s are relative to (default: the spec's directory).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// A TrueType font file for the text.
    #[arg(long)]
    font: Option<PathBuf>,
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
enum PlotError {
    /// Reading the spec or the font failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The spec is not valid JSON of the expected shape.
    #[error("{path}: {source}")]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// The failure.
        source: serde_json::Error,
    },
    /// No font given and none found.
    #[error("no TrueType font found (looked at {0}); pass --font FILE.ttf")]
    NoFont(String),
    /// The font file is not a usable font.
    #[error("{0}: not a usable TrueType font")]
    BadFont(PathBuf),
    /// A chart has nothing to draw.
    #[error("chart {0}: no series with a finite point")]
    Empty(String),
    /// plotters failed.
    #[error("chart {file}: {message}")]
    Draw {
        /// The chart's file.
        file: String,
        /// plotters' message.
        message: String,
    },
}

/// Every chart of a spec.
#[derive(Debug, Deserialize)]
struct Spec {
    /// The charts.
    charts: Vec<Chart>,
}

/// One PNG.
#[derive(Debug, Deserialize)]
struct Chart {
    /// Output file, relative to the output directory.
    file: String,
    /// Caption.
    title: String,
    /// X axis description.
    #[serde(default)]
    x_label: String,
    /// Y axis description.
    #[serde(default)]
    y_label: String,
    /// Logarithmic x axis (clients 1..200, latencies).
    #[serde(default)]
    log_x: bool,
    /// The y axis starts at 0 (throughput) rather than at the smallest value.
    #[serde(default = "yes")]
    y_from_zero: bool,
    /// The lines.
    series: Vec<Series>,
}

fn yes() -> bool {
    true
}

/// One line of a chart.
#[derive(Debug, Deserialize)]
struct Series {
    /// Legend entry.
    name: String,
    /// (x, y) points, drawn in x order; non-finite points are skipped.
    points: Vec<(f64, f64)>,
}

impl Series {
    /// The finite points (positive x on a log axis), sorted by x.
    fn drawable(&self, log_x: bool) -> Vec<(f64, f64)> {
        let mut p: Vec<_> = self
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_x || *x > 0.0))
            .collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        p
    }
}

/// Colour of the `i`-th series; xline and etcd get fixed ones so every chart matches, lighter
/// for the second load generator (`(etcd's tool)` in the name).
fn color(name: &str, i: usize) -> RGBColor {
    let base = base_color(name, i);
    if name.contains("etcd's tool") {
        let light = |c: u8| u8::try_from((u16::from(c) + 2 * 255) / 3).unwrap_or(u8::MAX);
        RGBColor(light(base.0), light(base.1), light(base.2))
    } else {
        base
    }
}

/// The colour of a server (or of the `i`-th series of anything else).
fn base_color(name: &str, i: usize) -> RGBColor {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("xline") {
        RGBColor(31, 119, 180)
    } else if lower.starts_with("etcd") {
        RGBColor(214, 39, 40)
    } else {
        let c = Palette99::pick(i + 2).to_rgba();
        RGBColor(c.0, c.1, c.2)
    }
}

/// The x and y ranges covering every drawable point (padded so lines do not touch the frame).
fn bounds(chart: &Chart) -> Option<((f64, f64), (f64, f64))> {
    let points: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.drawable(chart.log_x))
        .collect();
    let (first_x, first_y) = *points.first()?;
    let (mut x0, mut x1, mut y0, mut y1) = (first_x, first_x, first_y, first_y);
    for &(x, y) in &points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if chart.log_x {
        x0 /= 1.2;
        x1 *= 1.2;
    } else if x1 > x0 {
        let pad = (x1 - x0) * 0.03;
        x0 -= pad;
        x1 += pad;
    } else {
        x0 -= 1.0;
        x1 += 1.0;
    }
    if chart.y_from_zero {
        y0 = y0.min(0.0);
    }
    let pad = if y1 > y0 { (y1 - y0) * 0.05 } else { 1.0 };
    Some((
        (x0, x1),
        (y0 - if chart.y_from_zero { 0.0 } else { pad }, y1 + pad),
    ))
}

/// Draws one chart into `path`.
fn draw(chart: &Chart, path: &Path) -> Result<(), PlotError> {
    let ((x0, x1), (y0, y1)) = bounds(chart).ok_or_else(|| PlotError::Empty(chart.file.clone()))?;
    let fail = |e: &dyn std::fmt::Display| PlotError::Draw {
        file: chart.file.clone(),
        message: e.to_string(),
    };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(&chart.title, (FAMILY, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80);
    // The two axis kinds are different types, so the drawing is written once per kind.
    macro_rules! finish {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .x_desc(chart.x_label.as_str())
                .y_desc(chart.y_label.as_str())
                .label_style((FAMILY, 14))
                .draw()
                .map_err(|e| fail(&e))?;
            for (i, series) in chart.series.iter().enumerate() {
                let points = series.drawable(chart.log_x);
                if points.is_empty() {
                    continue;
                }
                let c = color(&series.name, i);
                ctx.draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                    .map_err(|e| fail(&e))?
                    .label(series.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
                if points.len() <= 30 {
                    ctx.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                        .map_err(|e| fail(&e))?;
                }
            }
            ctx.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| fail(&e))?;
        }};
    }
    if chart.log_x {
        finish!(
            builder
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(|e| fail(&e))?
        );
    } else {
        finish!(
            builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| fail(&e))?
        );
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// Reads the font (given or found) and registers it as [`FAMILY`].
fn load_font(given: Option<&Path>) -> Result<(), PlotError> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => FONT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| PlotError::NoFont(FONT_CANDIDATES.join(", ")))?,
    };
    let bytes = std::fs::read(&path).map_err(|source| PlotError::Io {
        path: path.clone(),
        source,
    })?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| PlotError::BadFont(path))
}

/// Draws every chart of the spec; returns the files written.
fn run(cli: &Cli) -> Result<Vec<PathBuf>, PlotError> {
    let text = std::fs::read_to_string(&cli.spec).map_err(|source| PlotError::Io {
        path: cli.spec.clone(),
        source,
    })?;
    let spec: Spec = serde_json::from_str(&text).map_err(|source| PlotError::Spec {
        path: cli.spec.clone(),
        source,
    })?;
    load_font(cli.font.as_deref())?;
    let dir = cli.out_dir.clone().unwrap_or_else(|| {
        cli.spec
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    });
    let mut written = Vec::new();
    for chart in &spec.charts {
        let path = dir.join(&chart.file);
        draw(chart, &path)?;
        written.push(path);
    }
    Ok(written)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(files) => {
            let mut out = std::io::stdout().lock();
            for f in files {
                let _ = writeln!(out, "{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "bench-plot: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, charts: &str) -> PathBuf {
        let path = dir.join("spec.json");
        std::fs::write(&path, format!(r#"{{"charts": [{charts}]}}"#)).unwrap();
        path
    }

    fn png_size(path: &Path) -> (u32, u32) {
        let b = std::fs::read(path).unwrap();
        assert_eq!(
            &b[..8],
            b"\x89PNG\r\n\x1a\n",
            "{} is not a PNG",
            path.display()
        );
        let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        (be(16), be(20))
    }

    #[test]
    fn draws_a_log_x_throughput_chart_and_a_linear_cdf() {
        let dir = tempfile::tempdir().unwrap();
        let path = spec(
            dir.path(),
            r#"{"file": "t.png", "title": "put", "x_label": "clients", "y_label": "req/s",
                "log_x": true, "series": [
                  {"name": "xline", "points": [[1, 900], [10, 7000], [100, 20000]]},
                  {"name": "etcd", "points": [[1, 800], [10, 6000], [0, 5]]}]},
               {"file": "c.png", "title": "cdf", "y_from_zero": false, "series": [
                  {"name": "xline", "points": [[1.5, 0.0], [2.0, 0.5], [9.0, 1.0]]}]}"#,
        );
        let files = run(&Cli {
            spec: path,
            out_dir: None,
            font: None,
        })
        .unwrap();
        assert_eq!(files.len(), 2);
        for f in &files {
            assert_eq!(png_size(f), SIZE);
        }
    }

    #[test]
    fn a_chart_without_points_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = spec(
            dir.path(),
            r#"{"file": "e.png", "title": "empty", "log_x": true,
                "series": [{"name": "xline", "points": [[0, 5]]}]}"#,
        );
        let err = run(&Cli {
            spec: path,
            out_dir: None,
            font: None,
        })
        .unwrap_err();
        assert!(matches!(err, PlotError::Empty(_)), "{err}");
    }

    #[test]
    fn a_missing_font_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = spec(dir.path(), "");
        let err = run(&Cli {
            spec: path,
            out_dir: None,
            font: Some(dir.path().join("nope.ttf")),
        })
        .unwrap_err();
        assert!(err.to_string().contains("nope.ttf"), "{err}");
    }

    #[test]
    fn bounds_pad_the_points_and_start_throughput_at_zero() {
        let chart = Chart {
            file: String::new(),
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            log_x: false,
            y_from_zero: true,
            series: vec![Series {
                name: "a".into(),
                points: vec![(10.0, 100.0), (0.0, 50.0)],
            }],
        };
        let ((x0, x1), (y0, y1)) = bounds(&chart).unwrap();
        assert!(x0 < 0.0 && x1 > 10.0, "{x0} {x1}");
        assert_eq!(y0, 0.0);
        assert!(y1 > 100.0);
        assert_eq!(
            chart.series[0].drawable(false),
            vec![(0.0, 50.0), (10.0, 100.0)]
        );
    }
}
