//! `Stat` (mean ± sample std with n) and the aggregation over seeds, done with polars
//! (`group_by` + mean / std / count).
//!
//! polars is built without its lazy engine (which roughly triples its build time), so the
//! eager `GroupBy` aggregations are used; polars marks them deprecated in favour of the lazy
//! API, but they are the same group kernels.

use std::collections::BTreeMap;

use anyhow::Result;
use polars::prelude::*;

/// Mean and sample standard deviation (ddof = 1; `None` when n < 2) of `n` values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

/// One observation: group key (several string fields) and a value.
pub type Obs = (Vec<String>, f64);

/// Groups the observations by key and returns mean, std (ddof 1) and count per key.
/// `key_names` name the key fields (they become the polars column names).
pub fn group_stats(key_names: &[&str], obs: &[Obs]) -> Result<BTreeMap<Vec<String>, Stat>> {
    let mut out = BTreeMap::new();
    if obs.is_empty() {
        return Ok(out);
    }
    let mut cols: Vec<Column> = key_names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Column::new(
                (*name).into(),
                obs.iter().map(|(k, _)| k[i].as_str()).collect::<Vec<_>>(),
            )
        })
        .collect();
    cols.push(Column::new(
        "value".into(),
        obs.iter().map(|(_, v)| *v).collect::<Vec<f64>>(),
    ));
    let df = anyhow::Context::context(
        DataFrame::new_infer_height(cols),
        "building the observations frame",
    )?;
    let g = anyhow::Context::context(
        df.group_by_stable(key_names.iter().copied()),
        "grouping observations",
    )?;
    #[allow(deprecated)]
    let (mean, std) = (
        g.clone().select(["value"]).mean()?,
        g.clone().select(["value"]).std(1)?,
    );
    let count = g.select(["value"]).count()?;
    let col_f64 = |df: &DataFrame, name: &str| -> Result<Vec<Option<f64>>> {
        let s = df
            .column(name)?
            .as_materialized_series()
            .cast(&DataType::Float64)?;
        let ca = s.f64()?;
        Ok((0..ca.len()).map(|i| ca.get(i)).collect())
    };
    let means = col_f64(&mean, "value_mean")?;
    let stds = col_f64(&std, "value_agg_std")?;
    let counts = col_f64(&count, "value_count")?;
    let keys: Vec<Vec<Option<String>>> = key_names
        .iter()
        .map(|n| -> Result<Vec<Option<String>>> {
            let ca = mean.column(n)?.as_materialized_series().str()?.clone();
            Ok((0..ca.len())
                .map(|i| ca.get(i).map(str::to_string))
                .collect())
        })
        .collect::<Result<_>>()?;
    for row in 0..mean.height() {
        let key: Vec<String> = keys
            .iter()
            .map(|c| c[row].clone().unwrap_or_default())
            .collect();
        let n = counts[row].unwrap_or(0.0) as usize;
        let m = means[row].ok_or_else(|| anyhow::anyhow!("mean of a group is null"))?;
        let std = if n >= 2 {
            stds[row].filter(|s| s.is_finite())
        } else {
            None
        };
        out.insert(key, Stat { mean: m, std, n });
    }
    Ok(out)
}

/// Key text for a number (e.g. a strength): rounded to 6 decimals, shortest form.
pub fn num_key(x: f64) -> String {
    let r = (x * 1e6).round() / 1e6;
    let s = format!("{r}");
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_count_per_group() {
        let obs: Vec<Obs> = vec![
            (vec!["a".into()], 1.0),
            (vec!["b".into()], 5.0),
            (vec!["a".into()], 2.0),
            (vec!["a".into()], 6.0),
        ];
        let s = group_stats(&["k"], &obs).unwrap();
        let a = s[&vec!["a".to_string()]];
        assert_eq!(a.n, 3);
        assert!((a.mean - 3.0).abs() < 1e-12);
        // sample variance of 1, 2, 6 = ((−2)² + (−1)² + 3²) / 2 = 7
        assert!((a.std.unwrap() - 7f64.sqrt()).abs() < 1e-12);
        let b = s[&vec!["b".to_string()]];
        assert_eq!((b.n, b.mean, b.std), (1, 5.0, None));
    }

    #[test]
    fn number_keys_are_stable() {
        assert_eq!(num_key(0.1 + 0.2), "0.3");
        assert_eq!(num_key(1.0), "1");
        assert_eq!(num_key(-0.0), "0");
    }
}
