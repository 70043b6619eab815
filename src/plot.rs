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

/// The colour scale's ends: the 2nd and 98th percentiles of the grid's finite values (values outside
/// take the end colours).
fn colour_range(grid: &Grid<'_>) -> (f64, f64) {
    let finite: Vec<f64> = grid
        .values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let lo = crate::toy::metrics::quantile(&finite, 0.02);
    let hi = crate::toy::metrics::quantile(&finite, 0.98);
    (lo, hi.max(lo + 1e-12))
}

fn draw_grid<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    grid: &Grid<'_>,
) -> Result<(), String> {
    let (lo, hi) = colour_range(grid);
    let span = hi - lo;
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

/// A vertical colour bar for values `lo..hi` (viridis), labelled `label`, in `area`.
fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    lo: f64,
    hi: f64,
    label: &str,
) -> Result<(), String> {
    let mut bar = ChartBuilder::on(area)
        .margin_top(40)
        .margin_bottom(40)
        .margin_right(10)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..1.0, lo..hi)
        .map_err(|x| x.to_string())?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(label)
        .y_labels(6)
        .y_label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(|x| x.to_string())?;
    let steps = 100;
    let dv = (hi - lo) / steps as f64;
    bar.draw_series((0..steps).map(|k| {
        let v = lo + k as f64 * dv;
        Rectangle::new(
            [(0.0, v), (1.0, v + dv)],
            colour((k as f64 + 0.5) / steps as f64).filled(),
        )
    }))
    .map_err(|x| x.to_string())?;
    Ok(())
}

/// Heat map of `grid` with `points` (row-major [n, 2]) drawn on top, and a colour bar of the grid's
/// values labelled `value_label`.
pub fn heatmap_with_points(
    path: &Path,
    title: &str,
    grid: &Grid<'_>,
    value_label: &str,
    points: &[f64],
    point_colour: RGBColor,
) -> Result<(), PlotError> {
    register_font();
    let e = err(path);
    let root = BitMapBackend::new(path, (760, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let (map_area, bar_area) = root.split_horizontally(640);
    let (lo, hi) = colour_range(grid);
    colour_bar(&bar_area, lo, hi, value_label).map_err(&e)?;
    let (x0, x1, y0, y1) = grid.extent;
    let mut chart = ChartBuilder::on(&map_area)
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
                band: false,
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

/// One named line of a [`Panel`], with optional symmetric error bars (one per point) or a shaded band
/// of the same half-width around the line (`band`). A panel whose lines all have empty labels gets no
/// legend.
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub err: Option<Vec<f64>>,
    pub band: bool,
}

/// A panel of several lines sharing axes, with a legend.
pub struct Panel {
    pub name: String,
    pub lines: Vec<Line>,
}

/// `v` with two significant digits, in plain notation (0.011, 0.3, 25, 1200).
fn two_significant(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return format!("{v}");
    }
    let decimals = (1 - v.abs().log10().floor() as i32).max(0) as usize;
    let rounded = format!("{v:.decimals$}");
    if decimals == 0 {
        let scale = 10f64.powi(v.abs().log10().floor() as i32 - 1);
        format!("{}", (v / scale).round() * scale)
    } else {
        rounded
    }
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
        // On a log axis the ticks sit at even log10 positions and are labelled with the values.
        let log_label = |v: &f64| two_significant(10f64.powf(*v));
        let mut mesh = chart.configure_mesh();
        if log_x {
            mesh.x_label_formatter(&log_label);
        }
        mesh.x_desc(if log_x {
            format!("{x_label} (log scale)")
        } else {
            x_label.to_string()
        })
        .draw()
        .map_err(|x| e(x.to_string()))?;
        for (k, line) in panel.lines.iter().enumerate() {
            let colour = palette[k % palette.len()];
            // Points and their half-widths, kept together so that dropping a point drops its width.
            let with_err: Vec<((f64, f64), f64)> = line
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let s = line.err.as_ref().and_then(|e| e.get(i)).copied();
                    ((tx(p.0), p.1), s.unwrap_or(0.0))
                })
                .filter(|(p, s)| p.0.is_finite() && p.1.is_finite() && s.is_finite())
                .collect();
            let pts: Vec<(f64, f64)> = with_err.iter().map(|(p, _)| *p).collect();
            let errs: Vec<f64> = with_err.iter().map(|(_, s)| *s).collect();
            if line.band && line.err.is_some() && pts.len() > 1 {
                let outline: Vec<(f64, f64)> = with_err
                    .iter()
                    .map(|(p, s)| (p.0, p.1 + s))
                    .chain(with_err.iter().rev().map(|(p, s)| (p.0, p.1 - s)))
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        outline,
                        colour.mix(0.2).filled(),
                    )))
                    .map_err(|x| e(x.to_string()))?;
            }
            let drawn = chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                .map_err(|x| e(x.to_string()))?;
            if !line.label.is_empty() {
                drawn.label(line.label.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
            }
            if line.err.is_some() && !line.band {
                chart
                    .draw_series(pts.iter().zip(&errs).map(|(p, s)| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels(path: &Path) -> image::RgbImage {
        image::open(path).expect("decode png").to_rgb8()
    }

    #[test]
    fn log_axis_labels_have_two_significant_digits() {
        let got: Vec<String> = [0.01123, 0.03, 0.3, 2.5, 25.4, 1234.0]
            .iter()
            .map(|v| two_significant(*v))
            .collect();
        assert_eq!(got, ["0.011", "0.030", "0.30", "2.5", "25", "1200"]);
    }

    #[test]
    fn heat_maps_carry_a_colour_bar_from_the_low_to_the_high_end_of_viridis() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("map.png");
        let values: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let grid = Grid {
            nx: 10,
            ny: 10,
            extent: (0.0, 1.0, 0.0, 1.0),
            values: &values,
        };
        heatmap_with_points(&path, "t", &grid, "NLL", &[0.5, 0.5], RED).expect("draw");
        let img = pixels(&path);
        assert_eq!(img.dimensions(), (760, 640));
        // The bar's column of pixels, right of the map: viridis from purple (low, bottom) to yellow
        // (high, top).
        let column: Vec<[u8; 3]> = (0..640)
            .map(|y| img.get_pixel(735, y).0)
            .filter(|p| *p != [255, 255, 255] && *p != [0, 0, 0])
            .collect();
        assert!(column.len() > 400, "no colour bar: {} pixels", column.len());
        let (top, bottom) = (column[2], column[column.len() - 3]);
        assert!(
            top[0] > 200 && top[1] > 200 && top[2] < 80,
            "top {top:?} is not yellow"
        );
        assert!(
            bottom[0] < 90 && bottom[1] < 40 && bottom[2] > 60,
            "bottom {bottom:?} is not purple"
        );
    }

    #[test]
    fn a_band_line_shades_its_spread_and_a_plain_one_does_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let draw = |band: bool| {
            let path = dir.path().join(format!("band-{band}.png"));
            let points: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, (i as f64).sqrt())).collect();
            let panel = Panel {
                name: "p".into(),
                lines: vec![Line {
                    label: "a".into(),
                    points,
                    err: Some(vec![0.5; 20]),
                    band,
                }],
            };
            lines(&path, "t", "step", &[panel], false).expect("draw");
            // Light blue: blue at 20% over white.
            pixels(&path)
                .pixels()
                .filter(|p| {
                    let [r, g, b] = p.0;
                    b == 255 && r == g && (190..=215).contains(&r)
                })
                .count()
        };
        let (shaded, plain) = (draw(true), draw(false));
        assert!(shaded > 5_000, "no shaded band: {shaded} light-blue pixels");
        // Without the band only the line's anti-aliased edges are that colour.
        assert!(
            plain < shaded / 20,
            "{plain} light-blue pixels without a band"
        );
    }
}
