//! PNG plots of run curves and confusion matrices (plotters, with an embedded DejaVu Sans so
//! nothing depends on the machine's fonts). Files are written to a temporary name and renamed.

use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// A chart that could not be drawn or written, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlotError {
    /// The PNG.
    pub path: PathBuf,
    /// What failed.
    pub message: String,
}

type Result<T> = std::result::Result<T, PlotError>;

/// One named line: (x, y) points in x order; non-finite points are skipped.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is a fixed, valid TTF; a failure here would only lose text.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// `x.tmp.png` beside `x.png` (the encoder picks the format from the extension).
fn temporary(path: &Path) -> PathBuf {
    path.with_extension("tmp.png")
}

fn finish(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|e| PlotError { path: path.to_path_buf(), message: format!("cannot write: {e}") })
}

/// A line chart of `series` over a shared x axis, written to `path` (PNG, 900×500).
pub fn line_chart(path: &Path, title: &str, x_label: &str, series: &[Series]) -> Result<()> {
    register_font();
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().filter(finite).copied()).collect();
    let (x0, x1) = bounds(all.iter().map(|p| p.0));
    let (y0, y1) = bounds(all.iter().map(|p| p.1));
    let tmp = temporary(path);
    let drawn = || -> std::result::Result<(), String> {
        let root = BitMapBackend::new(&tmp, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_error)?;
        chart.configure_mesh().x_desc(x_label).label_style((FONT, 14)).draw().map_err(plot_error)?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = s.points.iter().filter(finite).copied().collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(plot_error)?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart.configure_series_labels().label_font((FONT, 14)).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(plot_error)?;
        root.present().map_err(plot_error)?;
        Ok(())
    };
    drawn().map_err(|message| PlotError { path: path.to_path_buf(), message })?;
    finish(&tmp, path)
}

/// A confusion matrix (rows gold, columns predicted) with counts in the cells, to `path`.
/// `columns` may extend `rows` (e.g. an `invalid` column for unparseable answers).
pub fn confusion_chart(path: &Path, title: &str, rows: &[String], columns: &[String], counts: &[Vec<usize>]) -> Result<()> {
    register_font();
    let (k, c) = (rows.len() as u32, columns.len() as u32);
    let max = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let tmp = temporary(path);
    let drawn = || -> std::result::Result<(), String> {
        let root = BitMapBackend::new(&tmp, (120 + 80 * c, 120 + 70 * k)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d((0..c.max(1) - 1).into_segmented(), (0..k.max(1) - 1).into_segmented())
            .map_err(plot_error)?;
        let name = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) => (k - 1).checked_sub(*i).and_then(|r| rows.get(r as usize)).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let column = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) => columns.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("gold")
            .x_label_formatter(&column)
            .y_label_formatter(&name)
            .label_style((FONT, 13))
            .draw()
            .map_err(plot_error)?;
        for (g, row) in counts.iter().enumerate() {
            for (p, n) in row.iter().enumerate() {
                let (x, y) = (p as u32, k - 1 - g as u32);
                let shade = 1.0 - 0.85 * (*n as f64 / max);
                let fill = RGBColor((255.0 * shade) as u8, (255.0 * shade) as u8, 255);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(SegmentValue::Exact(x), SegmentValue::Exact(y + 1)), (SegmentValue::Exact(x + 1), SegmentValue::Exact(y))],
                        fill.filled(),
                    )))
                    .map_err(plot_error)?;
                let ink = if shade < 0.5 { WHITE } else { BLACK };
                chart
                    .draw_series(std::iter::once(Text::new(
                        n.to_string(),
                        (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                        (FONT, 15).into_font().color(&ink),
                    )))
                    .map_err(plot_error)?;
            }
        }
        root.present().map_err(plot_error)?;
        Ok(())
    };
    drawn().map_err(|message| PlotError { path: path.to_path_buf(), message })?;
    finish(&tmp, path)
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

fn plot_error<E: std::fmt::Display>(e: E) -> String {
    format!("plotting: {e}")
}
