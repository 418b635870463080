//! `ErrorCurves`: test error (%) against corruption strength, one line per method, one
//! panel per (dataset, corruption, trusted %), points at the mean over seeds with ± std
//! bars (the style of GLC's Figure 2).

use std::collections::BTreeMap;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::aggregate::{group_stats, num_key, Obs};
use crate::report::figures::{palette, pe, Figure, FAMILY, PALETTE_LEN};
use crate::report::format::{corruption_name, dataset_name, method_name, percent};
use crate::report::layouts::{methods_present, setting_across_strengths, sorted_settings, Setting};
use crate::report::run::RunRecord;

/// One panel: its title and, per method, (strength, mean error %, std) points by strength.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    pub series: Vec<(String, Vec<(f64, f64, Option<f64>)>)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ErrorCurves {
    pub panels: Vec<Panel>,
    /// All methods, in legend order (fixes each method's colour across panels).
    pub methods: Vec<String>,
}

impl ErrorCurves {
    /// Aggregates the noisy runs (optionally only `methods`) over seeds.
    pub fn from_runs(runs: &[RunRecord], methods: &[String]) -> Result<ErrorCurves> {
        let runs: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.metrics.noise.is_some() && r.metrics.method != "distill")
            .filter(|r| methods.is_empty() || methods.contains(&r.metrics.method))
            .collect();
        let methods = if methods.is_empty() {
            methods_present(runs.iter().copied())
        } else {
            methods.to_vec()
        };
        let obs: Vec<Obs> = runs
            .iter()
            .map(|r| {
                let s = Setting {
                    dataset: r.metrics.dataset.name.clone(),
                    corruption: r.corruption().into(),
                    strength: None,
                    trusted: r.trusted_fraction(),
                };
                let mut k = s.key();
                k.push(r.metrics.method.clone());
                k.push(num_key(r.strength().unwrap_or(0.0)));
                (k, 100.0 * r.metrics.final_test_error)
            })
            .collect();
        let stats = group_stats(
            &[
                "dataset",
                "corruption",
                "strength_unused",
                "trusted",
                "method",
                "strength",
            ],
            &obs,
        )?;
        let settings = sorted_settings(runs.iter().map(|r| setting_across_strengths(r)).collect());
        let mut panels = Vec::new();
        for s in &settings {
            let mut series = Vec::new();
            for m in &methods {
                let mut pts: Vec<(f64, f64, Option<f64>)> = stats
                    .iter()
                    .filter(|(k, _)| k[..4] == s.key()[..] && &k[4] == m)
                    .map(|(k, st)| (k[5].parse::<f64>().unwrap_or(f64::NAN), st.mean, st.std))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                if !pts.is_empty() {
                    series.push((m.clone(), pts));
                }
            }
            panels.push(Panel {
                title: format!(
                    "{}, {}, {}% trusted",
                    dataset_name(&s.dataset),
                    corruption_name(&s.corruption),
                    percent(s.trusted.unwrap_or(0.0))
                ),
                series,
            });
        }
        Ok(ErrorCurves { panels, methods })
    }

    fn grid(&self) -> (usize, usize) {
        let n = self.panels.len().max(1);
        let cols = n.min(3);
        (n.div_ceil(cols), cols)
    }
}

impl Figure for ErrorCurves {
    fn size(&self) -> (u32, u32) {
        let (r, c) = self.grid();
        (c as u32 * 520, r as u32 * 400)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        pe(root.fill(&WHITE))?;
        // Colour from the 8-colour palette; past 8 methods the lines turn dashed with
        // triangle markers, so no two methods look alike.
        let style: BTreeMap<&str, (RGBColor, bool)> = self
            .methods
            .iter()
            .enumerate()
            .map(|(i, m)| (m.as_str(), (palette(i), i >= PALETTE_LEN)))
            .collect();
        let areas = root.split_evenly(self.grid());
        for (panel, area) in self.panels.iter().zip(areas.iter()) {
            let xmax = panel
                .series
                .iter()
                .flat_map(|(_, p)| p.iter().map(|x| x.0))
                .fold(1.0f64, f64::max);
            let ymax = panel
                .series
                .iter()
                .flat_map(|(_, p)| p.iter().map(|x| x.1 + x.2.unwrap_or(0.0)))
                .fold(10.0f64, f64::max)
                .min(100.0);
            let mut chart = pe(ChartBuilder::on(area)
                .caption(&panel.title, (FAMILY, 18))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..xmax, 0f64..(ymax * 1.05).min(100.0)))?;
            pe(chart
                .configure_mesh()
                .x_desc("corruption strength")
                .y_desc("test error (%)")
                .label_style((FAMILY, 13))
                .axis_desc_style((FAMILY, 14))
                .light_line_style(WHITE.mix(0.0))
                .draw())?;
            for (m, pts) in &panel.series {
                let (c, dashed) = style.get(m.as_str()).copied().unwrap_or((BLACK, false));
                let xy = pts.iter().map(|p| (p.0, p.1));
                let line = if dashed {
                    pe(chart.draw_series(DashedLineSeries::new(xy, 7, 4, c.stroke_width(2))))?
                } else {
                    pe(chart.draw_series(LineSeries::new(xy, c.stroke_width(2))))?
                };
                line.label(method_name(m)).legend(move |(x, y)| {
                    let mut v = vec![(x, y), (x + 18, y)];
                    if dashed {
                        v = vec![(x, y), (x + 7, y)];
                    }
                    PathElement::new(v, c.stroke_width(2))
                });
                if dashed {
                    pe(chart.draw_series(
                        pts.iter()
                            .map(|p| TriangleMarker::new((p.0, p.1), 4, c.filled())),
                    ))?;
                } else {
                    pe(chart
                        .draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 3, c.filled()))))?;
                }
                pe(chart.draw_series(pts.iter().filter_map(|p| {
                    p.2.map(|sd| {
                        PathElement::new(vec![(p.0, p.1 - sd), (p.0, p.1 + sd)], c.stroke_width(1))
                    })
                })))?;
            }
            pe(chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font((FAMILY, 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw())?;
        }
        Ok(())
    }
}
