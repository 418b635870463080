//! `Heatmaps`: K×K matrices drawn side by side on one colour scale (white = 0 to dark blue
//! = the largest entry, at least 1), with a colour bar; rows = true class (top = class 0),
//! columns = observed class. Entries are printed in the cells when K ≤ 12. Used for a
//! learned T beside the true C, and for the class similarity of learned labels.

use anyhow::{ensure, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::noise::Matrix;
use crate::report::figures::{pe, Figure, FAMILY};

#[derive(Clone, Debug, PartialEq)]
pub struct Heatmaps {
    /// Panels (title, matrix), laid out `cols` per row.
    pub panels: Vec<(String, Matrix)>,
    pub cols: usize,
    pub x_desc: String,
    pub y_desc: String,
}

/// Colour of `v` on the scale [0, vmax]: white to dark blue.
pub fn colour(v: f64, vmax: f64) -> RGBColor {
    let t = if vmax > 0.0 {
        (v / vmax).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(255.0, 8.0), lerp(255.0, 48.0), lerp(255.0, 107.0))
}

impl Heatmaps {
    pub fn new(panels: Vec<(String, Matrix)>, cols: usize) -> Result<Heatmaps> {
        ensure!(
            !panels.is_empty(),
            "a heatmap figure needs at least one matrix"
        );
        Ok(Heatmaps {
            panels,
            cols: cols.max(1),
            x_desc: "observed class".into(),
            y_desc: "true class".into(),
        })
    }

    fn grid(&self) -> (usize, usize) {
        let cols = self.cols.min(self.panels.len());
        (self.panels.len().div_ceil(cols), cols)
    }

    pub fn vmax(&self) -> f64 {
        self.panels
            .iter()
            .flat_map(|(_, m)| m.data.iter().copied())
            .fold(1.0, f64::max)
    }
}

impl Figure for Heatmaps {
    fn size(&self) -> (u32, u32) {
        let (r, c) = self.grid();
        (c as u32 * 460 + 90, r as u32 * 470)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        pe(root.fill(&WHITE))?;
        let vmax = self.vmax();
        let (w, _) = root.dim_in_pixel();
        let (maps, bar) = root.split_horizontally(w as i32 - 90);
        for ((title, m), area) in self
            .panels
            .iter()
            .zip(maps.split_evenly(self.grid()).iter())
        {
            let k = m.k as f64;
            let kk = m.k;
            let mut chart = pe(ChartBuilder::on(area)
                .caption(title, (FAMILY, 16))
                .margin(12)
                .x_label_area_size(42)
                .y_label_area_size(48)
                .build_cartesian_2d(-0.5f64..k - 0.5, -0.5f64..k - 0.5))?;
            let ticks = kk.min(11);
            let yfmt = move |y: &f64| format!("{:.0}", (kk as f64 - 1.0 - y.round()).max(0.0));
            pe(chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(ticks)
                .y_labels(ticks)
                .x_label_formatter(&|x| format!("{:.0}", x.round()))
                .y_label_formatter(&yfmt)
                .x_desc(self.x_desc.as_str())
                .y_desc(self.y_desc.as_str())
                .label_style((FAMILY, 12))
                .axis_desc_style((FAMILY, 13))
                .draw())?;
            let cells = (0..kk).flat_map(|i| (0..kk).map(move |j| (i, j)));
            pe(chart.draw_series(cells.clone().map(|(i, j)| {
                let y = (kk - 1 - i) as f64;
                let x = j as f64;
                Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    colour(m.at(i, j), vmax).filled(),
                )
            })))?;
            if kk <= 12 {
                let size = if kk <= 6 { 14 } else { 11 };
                pe(chart.draw_series(cells.map(|(i, j)| {
                    let v = m.at(i, j);
                    let fg: &'static RGBColor = if v / vmax > 0.55 { &WHITE } else { &BLACK };
                    let font =
                        FontDesc::new(FontFamily::Name(FAMILY), size as f64, FontStyle::Normal);
                    let style = TextStyle::from(font)
                        .color(fg)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    Text::new(format!("{v:.2}"), (j as f64, (kk - 1 - i) as f64), style)
                })))?;
            }
        }
        // Colour bar.
        let mut cb = pe(ChartBuilder::on(&bar)
            .margin_top(40)
            .margin_bottom(55)
            .margin_right(10)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..1f64, 0f64..vmax))?;
        pe(cb
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
            .y_label_formatter(&|v| format!("{v:.1}"))
            .label_style((FAMILY, 12))
            .draw())?;
        let steps = 100;
        pe(cb.draw_series((0..steps).map(|s| {
            let a = vmax * s as f64 / steps as f64;
            let b = vmax * (s + 1) as f64 / steps as f64;
            Rectangle::new([(0.0, a), (1.0, b)], colour((a + b) / 2.0, vmax).filled())
        })))?;
        Ok(())
    }
}
