//! The only numbers in the tables not computed from metrics files: quotes from the papers,
//! each with its source.
//!
//! GLC Table 1 (Hendrycks, Mazeika, Wilson, Gimpel, "Using Trusted Data to Train Deep
//! Networks on Labels Corrupted by Severe Noise", NeurIPS 2018): vision results, test error
//! (%) averaged over the 11 corruption strengths 0, 0.1, ..., 1.0 ("area under the error
//! curve"), lower is better, one run per setting. Read from the image
//! `glc_vision_results.png` in the authors' repository mmazeika/glc (commit 5b456a0), which
//! reproduces the paper's Table 1. The paper's "Distillation Correction" column is not
//! quoted (no stage here runs that method).
//!
//! MNIST caveat: the table prints 5 / 10 / 25 % trusted for MNIST, but the authors' MNIST
//! script uses trusted fractions 0.001 / 0.01 / 0.05, and the paper's Figure 2 ("MNIST,
//! Flip, 1% trusted") integrates to the row printed 10 %. The MNIST quotes are therefore
//! matched to runs with fractions 0.001 / 0.01 / 0.05 (`trusted_fraction` below) and keep
//! the printed percentage in `printed_trusted_percent`.
//!
//! Learning Soft Labels via Meta Learning (Vyas et al., 2020): the only quotable result is
//! "+2.1%" (accuracy gain of learned labels over one-hot, ResNet18 on CIFAR-100).

/// The methods of GLC Table 1 that stages here run, in the table's column order, with the
/// column name GLC prints.
pub const GLC_METHODS: [(&str, &str); 6] = [
    ("trusted_only", "Trusted Only"),
    ("ce", "No Correction"),
    ("forward", "Forward Correction"),
    ("forward_gold", "Forward Gold"),
    ("confusion", "Confusion Matrix"),
    ("glc", "GLC"),
];

/// One row of GLC Table 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GlcRow {
    pub dataset: &'static str,
    pub corruption: &'static str,
    /// The trusted fraction of the runs this row is compared with.
    pub trusted_fraction: f64,
    pub printed_trusted_percent: f64,
    /// Trusted Only, No Correction, Forward, Forward Gold, Confusion Matrix, GLC.
    pub errors: [f64; 6],
}

const fn row(d: &'static str, c: &'static str, frac: f64, printed: f64, e: [f64; 6]) -> GlcRow {
    GlcRow {
        dataset: d,
        corruption: c,
        trusted_fraction: frac,
        printed_trusted_percent: printed,
        errors: e,
    }
}

/// GLC Table 1, rows as printed (Distillation column left out).
pub const GLC_TABLE1: [GlcRow; 21] = [
    row(
        "mnist",
        "uniform",
        0.001,
        5.0,
        [37.6, 12.9, 14.5, 13.5, 21.8, 10.3],
    ),
    row(
        "mnist",
        "uniform",
        0.01,
        10.0,
        [12.9, 12.3, 13.9, 12.3, 15.1, 6.3],
    ),
    row(
        "mnist",
        "uniform",
        0.05,
        25.0,
        [6.6, 9.3, 11.8, 9.2, 11.0, 4.7],
    ),
    row(
        "mnist",
        "flip",
        0.001,
        5.0,
        [37.6, 50.1, 51.7, 41.4, 11.7, 3.4],
    ),
    row(
        "mnist",
        "flip",
        0.01,
        10.0,
        [12.9, 51.1, 48.8, 36.4, 5.6, 2.9],
    ),
    row(
        "mnist",
        "flip",
        0.05,
        25.0,
        [6.6, 47.7, 50.2, 37.1, 3.8, 2.6],
    ),
    row(
        "cifar10",
        "uniform",
        0.05,
        5.0,
        [39.6, 31.9, 9.1, 27.8, 22.4, 9.0],
    ),
    row(
        "cifar10",
        "uniform",
        0.10,
        10.0,
        [31.3, 31.9, 8.6, 20.6, 22.7, 6.9],
    ),
    row(
        "cifar10",
        "uniform",
        0.25,
        25.0,
        [17.4, 32.7, 7.7, 27.1, 16.7, 6.4],
    ),
    row(
        "cifar10",
        "flip",
        0.05,
        5.0,
        [39.6, 53.3, 38.6, 47.8, 8.1, 6.6],
    ),
    row(
        "cifar10",
        "flip",
        0.10,
        10.0,
        [31.3, 53.2, 36.5, 51.0, 8.2, 6.2],
    ),
    row(
        "cifar10",
        "flip",
        0.25,
        25.0,
        [17.4, 52.7, 37.6, 49.5, 7.1, 6.1],
    ),
    row(
        "cifar100",
        "uniform",
        0.05,
        5.0,
        [82.4, 48.8, 47.7, 49.6, 53.6, 42.4],
    ),
    row(
        "cifar100",
        "uniform",
        0.10,
        10.0,
        [67.3, 48.4, 47.2, 48.9, 49.7, 33.9],
    ),
    row(
        "cifar100",
        "uniform",
        0.25,
        25.0,
        [52.2, 45.4, 43.6, 46.0, 39.6, 27.3],
    ),
    row(
        "cifar100",
        "flip",
        0.05,
        5.0,
        [82.4, 62.1, 61.6, 62.6, 28.6, 27.1],
    ),
    row(
        "cifar100",
        "flip",
        0.10,
        10.0,
        [67.3, 61.9, 61.0, 62.2, 26.9, 25.8],
    ),
    row(
        "cifar100",
        "flip",
        0.25,
        25.0,
        [52.2, 59.6, 57.5, 61.4, 25.1, 24.7],
    ),
    row(
        "cifar100",
        "hierarchical",
        0.05,
        5.0,
        [82.4, 50.9, 51.0, 52.4, 45.8, 34.8],
    ),
    row(
        "cifar100",
        "hierarchical",
        0.10,
        10.0,
        [67.3, 51.9, 50.5, 52.1, 38.8, 30.2],
    ),
    row(
        "cifar100",
        "hierarchical",
        0.25,
        25.0,
        [52.2, 54.3, 47.0, 51.1, 29.7, 25.4],
    ),
];

/// GLC Table 1's "Mean" row per dataset (same column order).
pub const GLC_TABLE1_MEAN: [(&str, [f64; 6]); 3] = [
    ("mnist", [19.0, 30.6, 31.8, 25.0, 11.5, 5.0]),
    ("cifar10", [29.4, 42.6, 23.0, 37.3, 14.2, 6.9]),
    ("cifar100", [67.3, 53.7, 51.9, 54.0, 37.5, 30.2]),
];

/// The source, for captions.
pub const GLC_TABLE1_SOURCE: &str = "GLC paper Table 1 (Hendrycks et al., NeurIPS 2018), as reproduced in glc_vision_results.png of the authors' repository mmazeika/glc";

/// GLC Table 1's number for `method` in the row (dataset, corruption, trusted fraction).
pub fn glc_table1(
    dataset: &str,
    corruption: &str,
    trusted_fraction: f64,
    method: &str,
) -> Option<f64> {
    let m = GLC_METHODS.iter().position(|(k, _)| *k == method)?;
    GLC_TABLE1
        .iter()
        .find(|r| {
            r.dataset == dataset
                && r.corruption == corruption
                && (r.trusted_fraction - trusted_fraction).abs() < 1e-9
        })
        .map(|r| r.errors[m])
}

/// GLC Table 1's mean row for `dataset` and `method`.
pub fn glc_table1_mean(dataset: &str, method: &str) -> Option<f64> {
    let m = GLC_METHODS.iter().position(|(k, _)| *k == method)?;
    GLC_TABLE1_MEAN
        .iter()
        .find(|(d, _)| *d == dataset)
        .map(|(_, e)| e[m])
}

/// Soft-labels paper: accuracy gain (percentage points) of learned labels over one-hot
/// labels, ResNet18 on CIFAR-100 ("+2.1%"). The only number of that paper quoted here.
pub const SOFT_LABELS_CIFAR100_RESNET18_GAIN: f64 = 2.1;

/// The quoted soft-labels gain for (dataset, model), if the paper gives one.
pub fn soft_labels_gain(dataset: &str, model: &str) -> Option<f64> {
    let m = model.to_ascii_lowercase().replace(['-', '_'], "");
    (dataset == "cifar100" && m == "resnet18").then_some(SOFT_LABELS_CIFAR100_RESNET18_GAIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_rows_match_the_printed_rows() {
        // GLC's mean row is the mean of its rows, to the printed precision.
        for (d, means) in GLC_TABLE1_MEAN {
            let rows: Vec<&GlcRow> = GLC_TABLE1.iter().filter(|r| r.dataset == d).collect();
            for m in 0..6 {
                let avg = rows.iter().map(|r| r.errors[m]).sum::<f64>() / rows.len() as f64;
                assert!(
                    (avg - means[m]).abs() <= 0.1,
                    "{d} column {m}: {avg} vs {}",
                    means[m]
                );
            }
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(glc_table1("cifar10", "flip", 0.1, "glc"), Some(6.2));
        assert_eq!(glc_table1("mnist", "flip", 0.01, "glc"), Some(2.9));
        assert_eq!(glc_table1("mnist", "flip", 0.1, "glc"), None);
        assert_eq!(glc_table1("cifar10", "flip", 0.1, "mlc"), None);
        assert_eq!(glc_table1_mean("cifar100", "glc"), Some(30.2));
        assert_eq!(soft_labels_gain("cifar100", "ResNet-18"), Some(2.1));
        assert_eq!(soft_labels_gain("cifar10", "resnet18"), None);
    }
}
