//! NumPy's legacy random generator (`np.random.seed` / `RandomState`), as far as GLC's flip
//! matrix needs it: the MT19937 generator and the legacy bounded-integer draw behind
//! `np.random.choice(a)`.
//!
//! Why: GLC's `flip_labels_C(corruption_prob, num_classes, seed=1)` (Hendrycks et al.
//! 2018, `mmazeika/glc`) calls `np.random.seed(1)` and then, for each class i in order,
//! `np.random.choice(row_indices[row_indices != i])`, so every run of a dataset shares one
//! flip matrix. Drawing the same targets as GLC's code means drawing the same numbers as
//! NumPy; [`glc_flip_targets`] does, and the `noise_generators` tests hold it to target
//! lists computed with NumPy itself.
//!
//! What NumPy does (legacy `RandomState`, unchanged since NumPy 1.17's rewrite):
//! * `seed(s)` with an integer `s < 2^32` is MT19937's `init_genrand(s)`:
//!   `mt[0] = s`, `mt[i] = 1812433253·(mt[i−1] ⊕ (mt[i−1] >> 30)) + i` (mod 2^32).
//! * `choice(a)` without `p` is `randint(0, len(a))`, a draw in `[0, len(a) − 1]` by the
//!   masked rejection sampler on 32-bit outputs (the range is below 2^32): with `mask`
//!   the smallest `2^b − 1 ≥ max`, take `next_u32() & mask` (the low bits) until it is
//!   `≤ max`. A range of one value (`max = 0`) consumes no output.
//! * The 32-bit output is MT19937's tempered `genrand_int32`.

/// MT19937 state size (words).
const N: usize = 624;
/// MT19937 twist offset.
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// The 32-bit Mersenne Twister (Matsumoto & Nishimura 1998), seeded as `np.random.seed`
/// seeds it from an integer.
#[derive(Clone)]
pub struct Mt19937 {
    mt: [u32; N],
    /// Next word of `mt` to temper; `N` means the state must be twisted first.
    index: usize,
}

impl Mt19937 {
    /// `init_genrand(seed)`, what `np.random.seed(seed)` does for an integer seed.
    pub fn new(seed: u32) -> Mt19937 {
        let mut mt = [0u32; N];
        mt[0] = seed;
        for i in 1..N {
            let prev = mt[i - 1];
            mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { mt, index: N }
    }

    /// Regenerates all `N` words. Words past `N − M` read words this pass already renewed,
    /// as the reference implementation does.
    fn twist(&mut self) {
        for k in 0..N {
            let y = (self.mt[k] & UPPER_MASK) | (self.mt[(k + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.mt[k] = self.mt[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The next tempered 32-bit output (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform integer in `0..=max` (`max < 2^32`) by NumPy's legacy masked rejection
    /// sampler: `randint(0, max + 1)` of a seeded `RandomState`.
    pub fn bounded(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }
}

/// The class each class sends its flipped mass to in GLC's `flip_labels_C(p, k, seed)`:
/// NumPy seeded with `seed`, then for each class i in order one `choice` among the other
/// classes in increasing order (`k ≥ 2`). GLC's code always passes `seed = 1`.
pub fn glc_flip_targets(k: usize, seed: u32) -> Vec<usize> {
    assert!(k >= 2, "flip noise needs at least 2 classes");
    let mut rng = Mt19937::new(seed);
    (0..k)
        .map(|i| {
            // `row_indices[row_indices != i]` holds k − 1 classes; position j skips i.
            let j = rng.bounded((k - 2) as u32) as usize;
            if j >= i {
                j + 1
            } else {
                j
            }
        })
        .collect()
}
