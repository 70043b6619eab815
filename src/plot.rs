//! Figures as PNG files (plotters, bitmap backend). The font is DejaVu Sans, embedded in the binary
//! (assets/DejaVuSans.ttf, free licence), so figures render the same on every machine.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

/// Errors writing a figure.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {message}")]
pub struct PlotError {
    pub path: String,
    pub message: String,
}

fn err(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |message| PlotError {
        path: path.display().to_string(),
        message,
    }
}

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

/// A scalar field on a regular grid over `extent = (x0, x1, y0, y1)`, `values[j * nx + i]` at
/// column i (x) and row j (y).
pub struct Grid<'a> {
    pub nx: usize,
    pub ny: usize,
    pub extent: (f64, f64, f64, f64),
    pub values: &'a [f64],
}

/// Colour for a value in [0, 1] (viridis).
fn colour(v: f64) -> RGBColor {
    let c = ViridisRGB::get_color(v.clamp(0.0, 1.0));
    RGBColor(c.0, c.1, c.2)
}

fn draw_grid<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    grid: &Grid<'_>,
) -> Result<(), String> {
    let finite: Vec<f64> = grid
        .values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let lo = crate::toy::metrics::quantile(&finite, 0.02);
    let hi = crate::toy::metrics::quantile(&finite, 0.98);
    let span = (hi - lo).max(1e-12);
    let (x0, x1, y0, y1) = grid.extent;
    let (dx, dy) = ((x1 - x0) / grid.nx as f64, (y1 - y0) / grid.ny as f64);
    chart
        .draw_series((0..grid.ny).flat_map(|j| {
            (0..grid.nx).map(move |i| {
                let v = grid.values[j * grid.nx + i];
                let c = if v.is_finite() {
                    colour((v - lo) / span)
                } else {
                    RGBColor(255, 255, 255)
                };
                let (xa, ya) = (x0 + i as f64 * dx, y0 + j as f64 * dy);
                Rectangle::new([(xa, ya), (xa + dx, ya + dy)], c.filled())
            })
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Heat map of `grid` with `points` (row-major [n, 2]) drawn on top.
pub fn heatmap_with_points(
    path: &Path,
    title: &str,
    grid: &Grid<'_>,
    points: &[f64],
    point_colour: RGBColor,
) -> Result<(), PlotError> {
    register_font();
    let e = err(path);
    let root = BitMapBackend::new(path, (640, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let (x0, x1, y0, y1) = grid.extent;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .draw()
        .map_err(|x| e(x.to_string()))?;
    draw_grid(&mut chart, grid).map_err(&e)?;
    chart
        .draw_series(
            points
                .chunks_exact(2)
                .filter(|p| p[0] >= x0 && p[0] <= x1 && p[1] >= y0 && p[1] <= y1)
                .map(|p| Circle::new((p[0], p[1]), 2, point_colour.filled())),
        )
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}

/// Line plot of several named series, each on its own panel stacked vertically.
pub fn curves(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[(&str, &[(f64, f64)])],
) -> Result<(), PlotError> {
    let panels: Vec<Panel> = series
        .iter()
        .map(|(name, pts)| Panel {
            name: name.to_string(),
            lines: vec![Line {
                label: String::new(),
                points: pts.to_vec(),
                err: None,
            }],
        })
        .collect();
    lines(path, title, x_label, &panels, false)
}

/// Small multiples: one scatter panel per frame (title, points [n, 2]), over the same extent, with
/// reference points (e.g. data samples) in grey behind.
pub fn snapshots(
    path: &Path,
    title: &str,
    extent: (f64, f64, f64, f64),
    reference: &[f64],
    frames: &[(String, Vec<f64>)],
) -> Result<(), PlotError> {
    register_font();
    let e = err(path);
    let cols = frames.len().clamp(1, 3);
    let rows = frames.len().div_ceil(cols).max(1);
    let root =
        BitMapBackend::new(path, (300 * cols as u32, 300 * rows as u32 + 40)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|x| e(x.to_string()))?;
    let (x0, x1, y0, y1) = extent;
    for ((name, pts), area) in frames.iter().zip(root.split_evenly((rows, cols)).iter()) {
        let mut chart = ChartBuilder::on(area)
            .margin(6)
            .caption(name, ("sans-serif", 14))
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|x| e(x.to_string()))?;
        chart
            .draw_series(
                reference
                    .chunks_exact(2)
                    .map(|p| Circle::new((p[0], p[1]), 1, RGBColor(190, 190, 190).filled())),
            )
            .map_err(|x| e(x.to_string()))?;
        chart
            .draw_series(
                pts.chunks_exact(2)
                    .filter(|p| p[0] >= x0 && p[0] <= x1 && p[1] >= y0 && p[1] <= y1)
                    .map(|p| Circle::new((p[0], p[1]), 2, RED.filled())),
            )
            .map_err(|x| e(x.to_string()))?;
    }
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}

/// One named line of a [`Panel`], with optional symmetric error bars (one per point). A panel whose
/// lines all have empty labels gets no legend.
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub err: Option<Vec<f64>>,
}

/// A panel of several lines sharing axes, with a legend.
pub struct Panel {
    pub name: String,
    pub lines: Vec<Line>,
}

/// Panels stacked vertically, each with several labelled lines (and error bars where given). With
/// `log_x` the x axis shows log10(x).
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    panels: &[Panel],
    log_x: bool,
) -> Result<(), PlotError> {
    register_font();
    let e = err(path);
    let height = 300 * panels.len().max(1) as u32 + 40;
    let root = BitMapBackend::new(path, (760, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|x| e(x.to_string()))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    let palette = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let tx = |x: f64| if log_x { x.log10() } else { x };
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let all: Vec<(f64, f64, f64)> = panel
            .lines
            .iter()
            .flat_map(|l| {
                l.points.iter().enumerate().map(move |(i, p)| {
                    (
                        tx(p.0),
                        p.1,
                        l.err
                            .as_ref()
                            .and_then(|e| e.get(i))
                            .copied()
                            .unwrap_or(0.0),
                    )
                })
            })
            .filter(|p| p.0.is_finite() && p.1.is_finite() && p.2.is_finite())
            .collect();
        if all.is_empty() {
            continue;
        }
        let xmin = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let xmax = all.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        let ymin = all.iter().map(|p| p.1 - p.2).fold(f64::INFINITY, f64::min);
        let ymax = all
            .iter()
            .map(|p| p.1 + p.2)
            .fold(f64::NEG_INFINITY, f64::max);
        let xpad = ((xmax - xmin) * 0.03).max(1e-9);
        let ypad = ((ymax - ymin) * 0.08).max(1e-9);
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .caption(&panel.name, ("sans-serif", 16))
            .build_cartesian_2d((xmin - xpad)..(xmax + xpad), (ymin - ypad)..(ymax + ypad))
            .map_err(|x| e(x.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(if log_x {
                format!("log10({x_label})")
            } else {
                x_label.to_string()
            })
            .draw()
            .map_err(|x| e(x.to_string()))?;
        for (k, line) in panel.lines.iter().enumerate() {
            let colour = palette[k % palette.len()];
            let pts: Vec<(f64, f64)> = line
                .points
                .iter()
                .map(|p| (tx(p.0), p.1))
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            let drawn = chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                .map_err(|x| e(x.to_string()))?;
            if !line.label.is_empty() {
                drawn.label(line.label.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
            }
            if let Some(errs) = &line.err {
                chart
                    .draw_series(pts.iter().zip(errs).map(|(p, s)| {
                        ErrorBar::new_vertical(p.0, p.1 - s, p.1, p.1 + s, colour.filled(), 8)
                    }))
                    .map_err(|x| e(x.to_string()))?;
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                    .map_err(|x| e(x.to_string()))?;
            }
        }
        if panel.lines.iter().all(|l| l.label.is_empty()) {
            continue;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|x| e(x.to_string()))?;
    }
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}

/// A grid of grey images (each `side x side`, values in [0, 1], row-major, `images.len() / (side *
/// side)` of them) drawn `cols` per row, each pixel `scale x scale` on screen, with a 2-pixel gap.
pub fn image_grid(
    path: &Path,
    images: &[f32],
    side: usize,
    cols: usize,
    scale: u32,
) -> Result<(), PlotError> {
    let e = err(path);
    let n = images.len() / (side * side).max(1);
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let cell = side as u32 * scale + 2;
    let root = BitMapBackend::new(path, (cols as u32 * cell + 2, rows as u32 * cell + 2))
        .into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    for (k, img) in images.chunks_exact(side * side).enumerate() {
        let (ox, oy) = (2 + (k % cols) as u32 * cell, 2 + (k / cols) as u32 * cell);
        for (p, v) in img.iter().enumerate() {
            let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            let (x, y) = (
                ox + (p % side) as u32 * scale,
                oy + (p / side) as u32 * scale,
            );
            root.draw(&Rectangle::new(
                [
                    (x as i32, y as i32),
                    ((x + scale) as i32, (y + scale) as i32),
                ],
                RGBColor(g, g, g).filled(),
            ))
            .map_err(|x| e(x.to_string()))?;
        }
    }
    root.present().map_err(|x| e(x.to_string()))
}
