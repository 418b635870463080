//! Figures, each written as SVG and PNG (`figures/<name>.svg`, `figures/<name>.png`) with
//! plotters:
//! * `error_curves`: test error (%) vs corruption strength per method, one panel per
//!   (dataset, corruption, trusted %), mean over seeds with ± std bars (GLC Figure 2 style);
//! * `t_vs_true_c`: heatmaps of a run's learned T (`t_final.json`, or `c_hat.json`) beside
//!   the true corruption matrix C of its noise input;
//! * `class_similarity`: heatmap of the class similarity of learned soft labels
//!   (`class_similarity.json`).
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (`fonts/DejaVuSans.ttf`, Bitstream
//! Vera licence with DejaVu changes in the public domain, see `fonts/LICENSE-DejaVu.txt`),
//! so PNGs render the same on a machine without any system font. SVGs name the family
//! `sans-serif` and leave the glyphs to the viewer.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

pub mod error_curves;
pub mod heatmap;

/// DejaVu Sans 2.37 (Debian package fonts-dejavu-core).
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// The font family every figure uses.
pub const FAMILY: &str = "sans-serif";

/// Registers the embedded font with plotters (once per process).
pub fn register_font() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .and_then(|_| plotters::style::register_font(FAMILY, FontStyle::Bold, FONT))
            .map_err(|_| "the embedded font DejaVuSans.ttf could not be read".to_string())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Which figure a `tables` stage draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FigureKind {
    ErrorCurves,
    TVsTrueC,
    ClassSimilarity,
}

/// Converts a plotters error to anyhow.
pub fn pe<T, E: std::fmt::Debug>(r: Result<T, E>) -> Result<T> {
    r.map_err(|e| anyhow!("drawing: {e:?}"))
}

/// A figure drawn on any plotters backend.
pub trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Writes `dir/<name>.svg` and `dir/<name>.png`.
pub fn write_svg_png(fig: &impl Figure, dir: &Path, name: &str) -> Result<()> {
    register_font()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let svg = dir.join(format!("{name}.svg"));
    {
        let root = SVGBackend::new(&svg, fig.size()).into_drawing_area();
        fig.draw(&root)
            .with_context(|| format!("drawing {}", svg.display()))?;
        pe(root.present()).with_context(|| format!("writing {}", svg.display()))?;
    }
    let png = dir.join(format!("{name}.png"));
    {
        let root = BitMapBackend::new(&png, fig.size()).into_drawing_area();
        fig.draw(&root)
            .with_context(|| format!("drawing {}", png.display()))?;
        pe(root.present()).with_context(|| format!("writing {}", png.display()))?;
    }
    Ok(())
}

/// Colours in [`palette`] before it cycles.
pub const PALETTE_LEN: usize = 8;

/// A fixed palette (colour-blind safe, Okabe–Ito), cycled.
pub fn palette(i: usize) -> RGBColor {
    const P: [RGBColor; PALETTE_LEN] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(0, 0, 0),
        RGBColor(240, 228, 66),
    ];
    P[i % P.len()]
}
