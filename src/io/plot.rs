//! `--plot PATH`: the loss curves of a run (content, style, tv, total; log scale) against the
//! steps taken, as SVG, or PNG when the extension says so. Drawn with plotters; its labels use
//! an embedded DejaVu Sans subset (`fonts/`), so no system font is needed.

use std::path::Path;
use std::sync::Once;

use anyhow::{bail, Result};
use plotters::prelude::*;

/// One logged evaluation: the steps taken over all scales before it, and its losses.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub step: usize,
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    pub total: f64,
}

const FONT: &[u8] = include_bytes!("fonts/DejaVuSans-ascii.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded font is a valid TrueType font"));
    });
}

/// Whether `path` names a plot impasto can write (.svg or .png).
pub fn check_plot_path(path: &Path) -> Result<()> {
    match extension(path).as_str() {
        "svg" | "png" => crate::io::atomic::check_parent_dir(path, "--plot"),
        e => bail!(
            "--plot {}: unsupported extension {e:?}; use .svg or .png",
            path.display()
        ),
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase)
        .unwrap_or_default()
}

/// The series drawn, with their colours (as the preview page draws them).
const SERIES: [(&str, RGBColor); 4] = [
    ("content", RGBColor(31, 119, 180)),
    ("style", RGBColor(214, 39, 40)),
    ("tv", RGBColor(44, 160, 44)),
    ("total", RGBColor(0, 0, 0)),
];

fn value(p: &Point, series: usize) -> f64 {
    [p.content, p.style, p.tv, p.total][series]
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>, points: &[Point], title: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Log scale: only positive values can be drawn (content is 0 at step 0 from the content image).
    let positive = points
        .iter()
        .flat_map(|p| (0..4).map(move |s| value(p, s)))
        .filter(|v| *v > 0.0 && v.is_finite());
    let (lo, hi) = positive.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo <= hi {
        (lo / 2.0, hi * 2.0)
    } else {
        (1e-3, 1.0)
    };
    let last = points.iter().map(|p| p.step).max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0usize..last, (lo..hi).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (s, (name, colour)) in SERIES.iter().enumerate() {
        // Every point, so that a curve has as many points as the report has entries; a
        // non-positive value sits on the bottom edge.
        let line = points.iter().map(|p| (p.step, value(p, s).max(lo)));
        chart
            .draw_series(LineSeries::new(line, colour.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

const SIZE: (u32, u32) = (800, 480);

/// The plot as SVG text.
pub fn svg(points: &[Point], title: &str) -> Result<String> {
    register_font();
    let mut out = String::new();
    draw(
        SVGBackend::with_string(&mut out, SIZE).into_drawing_area(),
        points,
        title,
    )?;
    Ok(out)
}

/// Writes the plot to `path` (SVG, or PNG by the extension), atomically.
pub fn write(path: &Path, points: &[Point], title: &str) -> Result<()> {
    register_font();
    if extension(path) == "png" {
        let (w, h) = SIZE;
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        draw(
            BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area(),
            points,
            title,
        )?;
        let img = image::RgbImage::from_raw(w, h, rgb).expect("the buffer's size");
        return crate::io::atomic::write_atomic(path, |f| {
            img.write_to(&mut std::io::BufWriter::new(f), image::ImageFormat::Png)?;
            Ok(())
        });
    }
    let text = svg(points, title)?;
    crate::io::atomic::write_atomic(path, |f| {
        std::io::Write::write_all(f, text.as_bytes())?;
        Ok(())
    })
}
