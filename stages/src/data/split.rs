//! Seeded stratified selection: how many examples of each class to take so that the
//! selection keeps the class proportions, and which ones.
//!
//! Used for the fixed train/test split of the digits data and for the trusted subset of
//! `inject_noise`. All randomness comes from the caller's `ChaCha8Rng`; the shuffle is a
//! plain Fisher–Yates over `random_range`, so a seed gives the same selection on every
//! platform.

use anyhow::{ensure, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Examples per class, for labels in `0..k`.
pub fn class_counts(labels: &[u32], k: usize) -> Vec<usize> {
    let mut c = vec![0usize; k];
    for &y in labels {
        c[y as usize] += 1;
    }
    c
}

/// Splits `total` over classes in proportion to `counts` by the largest-remainder method:
/// each class gets `floor(total * n_c / N)`, and the units left go to the classes with the
/// largest remainders (ties to the lower class index). The result sums to `total` and
/// never exceeds `counts[c]`.
pub fn proportional_counts(counts: &[usize], total: usize) -> Vec<usize> {
    let n: usize = counts.iter().sum();
    assert!(total <= n, "cannot take {total} of {n}");
    if n == 0 {
        return vec![0; counts.len()];
    }
    let mut take: Vec<usize> = counts.iter().map(|&c| total * c / n).collect();
    let mut rem: Vec<(usize, usize)> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| (total * c % n, i))
        .collect();
    rem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let left = total - take.iter().sum::<usize>();
    for &(_, i) in rem.iter().take(left) {
        take[i] += 1;
    }
    take
}

/// Fisher–Yates shuffle driven by `rng`.
pub fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// Picks `take[c]` examples of each class `c` uniformly at random (seeded): the indices of
/// each class are shuffled and the first `take[c]` kept. Returns the picked indices sorted.
pub fn stratified_pick(labels: &[u32], take: &[usize], rng: &mut ChaCha8Rng) -> Result<Vec<usize>> {
    let k = take.len();
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &y) in labels.iter().enumerate() {
        ensure!(
            (y as usize) < k,
            "label {y} at index {i} out of range 0..{k}"
        );
        by_class[y as usize].push(i);
    }
    let mut out = Vec::new();
    for (c, idx) in by_class.iter_mut().enumerate() {
        ensure!(
            take[c] <= idx.len(),
            "class {c}: asked for {} examples but only {} exist",
            take[c],
            idx.len()
        );
        shuffle(idx, rng);
        out.extend_from_slice(&idx[..take[c]]);
    }
    out.sort_unstable();
    Ok(out)
}

/// The complement of sorted `picked` in `0..n`, in order.
pub fn complement(picked: &[usize], n: usize) -> Vec<usize> {
    let mut mask = vec![false; n];
    for &i in picked {
        mask[i] = true;
    }
    (0..n).filter(|&i| !mask[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn largest_remainder_sums_and_ties_break_low() {
        assert_eq!(proportional_counts(&[5, 5, 5], 2), vec![1, 1, 0]);
        assert_eq!(proportional_counts(&[10, 30], 8), vec![2, 6]);
        let digits = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];
        let t = proportional_counts(&digits, 500);
        assert_eq!(t.iter().sum::<usize>(), 500);
        assert_eq!(t, vec![50, 51, 49, 51, 50, 51, 50, 50, 48, 50]);
    }

    #[test]
    fn pick_is_stratified_and_seeded() {
        let labels: Vec<u32> = (0..100).map(|i| (i % 4) as u32).collect();
        let a =
            stratified_pick(&labels, &[2, 3, 0, 25], &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        let b =
            stratified_pick(&labels, &[2, 3, 0, 25], &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            class_counts(&a.iter().map(|&i| labels[i]).collect::<Vec<_>>(), 4),
            vec![2, 3, 0, 25]
        );
        let c =
            stratified_pick(&labels, &[2, 3, 0, 25], &mut ChaCha8Rng::seed_from_u64(4)).unwrap();
        assert_ne!(a, c);
        assert!(
            stratified_pick(&labels, &[26, 0, 0, 0], &mut ChaCha8Rng::seed_from_u64(3)).is_err()
        );
    }
}
