//! One PNG per scenario: store requests a second over time, keyturn's policy against the
//! Agent's (text drawn with an embedded DejaVu font, so no system font is needed).

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::scenario::{Scenario, slice};

/// One series: its label and per-second counts.
pub(crate) struct Series<'a> {
    pub(crate) label: &'a str,
    pub(crate) requests: &'a [u32],
    pub(crate) colour: RGBColor,
}

/// Writes `scenario`'s plot to `path`.
pub(crate) fn write(path: &Path, scenario: &Scenario, series: &[Series<'_>]) -> Result<()> {
    register_font()?;
    let (from, to, step) = scenario.plot;
    let step_s = step.as_secs().max(1);
    let points: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| averaged(slice(s.requests, (from, to)), step_s, from))
        .collect();
    let top = points.iter().flatten().map(|&(_, y)| y).fold(1.0, f64::max) * 1.1;
    let (x0, x1) = (minutes(from), minutes(to));

    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let caption = format!(
        "{}: store requests/s ({} s averages), {} daemons",
        scenario.name, step_s, scenario.fleet.daemons
    );
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60);
    if scenario.plot_log {
        // Zero buckets sit on the axis floor.
        let floor = 0.1;
        let points: Vec<Vec<(f64, f64)>> = points
            .into_iter()
            .map(|p| p.into_iter().map(|(x, y)| (x, y.max(floor))).collect())
            .collect();
        let chart = builder
            .build_cartesian_2d(x0..x1, (floor..top).log_scale())
            .map_err(plot_error)?;
        draw(chart, scenario, series, points, floor, top)?;
    } else {
        let chart = builder
            .build_cartesian_2d(x0..x1, 0.0..top)
            .map_err(plot_error)?;
        draw(chart, scenario, series, points, 0.0, top)?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

fn draw<'a, Y>(
    mut chart: ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    scenario: &Scenario,
    series: &[Series<'_>],
    points: Vec<Vec<(f64, f64)>>,
    bottom: f64,
    top: f64,
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("minutes since the simulation's start")
        .y_desc("requests/s")
        .draw()
        .map_err(plot_error)?;
    if let Some((start, end)) = scenario.outage {
        let band = [(minutes(start), bottom), (minutes(end), top)];
        let pink = RGBColor(255, 220, 220);
        chart
            .draw_series(std::iter::once(Rectangle::new(band, pink.filled())))
            .map_err(plot_error)?
            .label("store outage")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], pink.filled()));
    }
    for (s, points) in series.iter().zip(points) {
        let colour = s.colour;
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(plot_error)?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn averaged(buckets: &[u32], step: u64, from: Duration) -> Vec<(f64, f64)> {
    let step = usize::try_from(step).unwrap_or(1);
    buckets
        .chunks(step)
        .enumerate()
        .map(|(i, chunk)| {
            let sum: f64 = chunk.iter().map(|&n| f64::from(n)).sum();
            let at = from + Duration::from_secs((i * step) as u64);
            (minutes(at), sum / chunk.len() as f64)
        })
        .collect()
}

fn minutes(at: Duration) -> f64 {
    at.as_secs_f64() / 60.0
}

fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .map_err(|_| anyhow!("the embedded font could not be read"));
    });
    result.context("plotting")
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(
    error: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("drawing the plot: {error}")
}
