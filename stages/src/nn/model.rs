//! The networks: an MLP (optionally over token embeddings), a small CNN, WRN-40-2
//! (Zagoruyko & Komodakis 2016, pre-activation; GLC's layout, or with `block: mlc_code`
//! the layout of the released MLC code's `meta_wrn.py`, see [`WrnBlock`]),
//! ResNet-18 and ResNet-50 (He et al. 2016; torchvision layout with the stride on the
//! 3×3 convolution of a bottleneck).
//!
//! A [`Network`] holds the architecture only (parameter indices); the values live in a
//! [`ParamSet`] and a [`Buffers`] passed to every forward, so the same network can run
//! with θ, with θ + εv, or with a look-ahead copy, and batch-norm statistics can be kept
//! frozen for the extra forwards of meta-learning ([`Mode::TrainFrozenBn`]).
//!
//! Stems: ResNets use the CIFAR stem (3×3 conv, stride 1, no max-pool) for inputs
//! smaller than 64 pixels and the ImageNet stem (7×7 conv stride 2, 3×3 max-pool stride
//! 2) otherwise. Initialisation: linear layers as PyTorch's default
//! (U(±1/√fan_in) for weight and bias), or for an MLP with `weight_init: normal` weights
//! from N(0, σ = 1/√fan_in) and zero biases (GLC's MNIST and Twitter scripts);
//! convolutions of WRN/ResNet He-normal with fan-out (std √(2/(k²·out)), as in the WRN
//! and torchvision code), without bias; the small CNN's and an `mlc_code` WRN's
//! convolutions as PyTorch's default; batch norm γ = 1, β = 0, running mean 0, running
//! variance 1.

use anyhow::{bail, Result};
use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::batch_norm::BN_MOMENTUM;
use super::device::{dev, Dev, Mat};
use super::ops::{
    batch_norm2d, conv2d, embedding, global_avg_pool, leaky_relu, linear, max_pool2d, mul_mask,
    BnMode, ConvGeom, Ops,
};
use super::params::{Buffers, ParamSet};
use crate::math::{cos, ln};

fn default_cnn_channels() -> Vec<usize> {
    vec![32, 64]
}
fn default_cnn_hidden() -> usize {
    128
}
fn default_wrn_depth() -> usize {
    40
}
fn default_wrn_widen() -> usize {
    2
}
fn default_wrn_dropout() -> f32 {
    0.3
}

/// Which network to build (`arch` tag in params). Input size and class count come from
/// the dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    /// Fully connected ReLU network: input -> hidden[0] -> ... -> classes.
    Mlp {
        /// Hidden layer widths, e.g. `[128, 128]` (GLC's MNIST net), `[256, 256]` (Twitter).
        hidden: Vec<usize>,
        /// Dropout probability after each hidden ReLU (default 0).
        #[serde(default)]
        dropout: f32,
        /// For token-id inputs: the embedding width (each of the example's tokens is
        /// embedded and the embeddings are concatenated). Required for tokens, refused
        /// otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        embed_dim: Option<usize>,
        /// How the fully connected layers are drawn: `uniform` (default, PyTorch's
        /// U(±1/√fan_in) for weights and biases) or `normal` (weights N(0, 1/fan_in),
        /// biases 0). Not written into `model.json` when it is the default.
        #[serde(default, skip_serializing_if = "LinearInit::is_uniform")]
        weight_init: LinearInit,
    },
    /// conv3×3(c0)-ReLU-conv3×3(c1)-ReLU-maxpool2-fc(hidden)-ReLU-fc(classes), no padding
    /// (the PyTorch MNIST example net for 28×28 inputs).
    SmallCnn {
        /// Channels of the two convolutions (default `[32, 64]`).
        #[serde(default = "default_cnn_channels")]
        channels: Vec<usize>,
        /// Width of the hidden fully connected layer (default 128).
        #[serde(default = "default_cnn_hidden")]
        hidden: usize,
    },
    /// Wide ResNet WRN-depth-widen with dropout between the convolutions of a block.
    Wrn {
        /// Depth (default 40; (depth − 4) must be divisible by 6).
        #[serde(default = "default_wrn_depth")]
        depth: usize,
        /// Widening factor (default 2).
        #[serde(default = "default_wrn_widen")]
        widen: usize,
        /// Dropout probability inside blocks (default 0.3).
        #[serde(default = "default_wrn_dropout")]
        dropout: f32,
        /// The nonlinearity after every batch norm: `relu` (default) or `leaky_relu`
        /// (slope 0.01, PyTorch's default, as `meta_wrn.py`). Not written into
        /// `model.json` when it is the default.
        #[serde(default, skip_serializing_if = "Activation::is_relu")]
        activation: Activation,
        /// The blocks' layout and initialisation: `glc` (default) or `mlc_code`
        /// ([`WrnBlock`]). Not written into `model.json` when it is the default.
        #[serde(default, skip_serializing_if = "WrnBlock::is_glc")]
        block: WrnBlock,
    },
    /// ResNet-18 (basic blocks [2, 2, 2, 2], widths 64…512).
    Resnet18,
    /// ResNet-50 (bottleneck blocks [3, 4, 6, 3], widths 64…512, expansion 4).
    Resnet50,
}

/// How an MLP's fully connected layers are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearInit {
    /// PyTorch's default: U(±1/√fan_in) for weights and biases.
    #[default]
    Uniform,
    /// Weights N(0, σ = 1/√fan_in), biases 0: GLC's MNIST and Twitter scripts
    /// (`MNIST_experiments_pytorch.py:85-91`, `Twitter_experiments_pytorch.py:111-117`).
    Normal,
}

impl LinearInit {
    pub fn is_uniform(&self) -> bool {
        *self == LinearInit::Uniform
    }
}

/// The nonlinearity of a WRN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    /// `x` where positive, `0.01·x` elsewhere ([`LEAKY_SLOPE`]).
    LeakyRelu,
}

/// The negative-side slope of [`Activation::LeakyRelu`] (PyTorch's `LeakyReLU()`).
pub const LEAKY_SLOPE: f32 = 0.01;

impl Activation {
    pub fn is_relu(&self) -> bool {
        *self == Activation::Relu
    }
}

/// The layout of a WRN's blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WrnBlock {
    /// GLC's and Hendrycks' WRN (`wideresnet.py`): the stride on a block's first
    /// convolution; where the width changes, a 1×1 shortcut convolution of the
    /// pre-activated input; no convolution bias; He-normal fan-out convolutions, the
    /// classifier's bias zeroed; batch-norm momentum 0.1 everywhere.
    #[default]
    Glc,
    /// The released MLC code's `meta_wrn.py`: the stride on a block's second convolution;
    /// where the shape changes, a 1×1 shortcut convolution of the block's raw input; a
    /// bias on every convolution; PyTorch's default initialisation of every convolution
    /// and of the classifier (U(±1/√fan_in), weights and biases); momentum 0.9 on the
    /// final batch norm (PyTorch's convention: the running statistics take 0.9 of each
    /// batch's), 0.1 elsewhere.
    MlcCode,
}

impl WrnBlock {
    pub fn is_glc(&self) -> bool {
        *self == WrnBlock::Glc
    }
}

impl ModelSpec {
    /// A short label for metrics, e.g. `mlp-128-128`, `wrn-40-2`.
    pub fn label(&self) -> String {
        match self {
            ModelSpec::Mlp {
                hidden,
                weight_init,
                ..
            } => {
                let mut s = "mlp".to_string();
                for h in hidden {
                    s += &format!("-{h}");
                }
                if *weight_init == LinearInit::Normal {
                    s += "-normal_init";
                }
                s
            }
            ModelSpec::SmallCnn { channels, hidden } => format!(
                "cnn-{}-{hidden}",
                channels
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join("-")
            ),
            ModelSpec::Wrn {
                depth,
                widen,
                activation,
                block,
                ..
            } => {
                let mut s = format!("wrn-{depth}-{widen}");
                if *block == WrnBlock::MlcCode {
                    s += "-mlc_code";
                }
                if *activation == Activation::LeakyRelu {
                    s += "-leaky_relu";
                }
                s
            }
            ModelSpec::Resnet18 => "resnet18".into(),
            ModelSpec::Resnet50 => "resnet50".into(),
        }
    }
}

impl ModelSpec {
    /// The number of parameters (weights, biases, batch-norm γ and β; not the running
    /// statistics) the network has on `input` with `classes` outputs, computed from the
    /// spec alone, exactly as [`Network::new`] would create them. `None` when it does
    /// not fit in a `u128`.
    pub fn parameter_count(&self, input: &InputKind, classes: usize) -> Option<u128> {
        let n = |v: usize| v as u128;
        // Sum of products, checked.
        let mut total: u128 = 0;
        let mut add = |factors: &[usize]| -> Option<()> {
            let p = factors
                .iter()
                .try_fold(1u128, |acc, &f| acc.checked_mul(n(f)))?;
            total = total.checked_add(p)?;
            Some(())
        };
        let image = match input {
            InputKind::Dense(s) if s.len() == 3 => Some((s[0], s[1], s[2])),
            _ => None,
        };
        let out = |h: usize, k: usize, stride: usize, pad: usize| {
            (h + 2 * pad).saturating_sub(k) / stride + 1
        };
        match self {
            ModelSpec::Mlp {
                hidden, embed_dim, ..
            } => {
                let mut width = match (input, embed_dim) {
                    (InputKind::Tokens { len, vocab }, Some(d)) => {
                        add(&[*vocab, *d])?;
                        n(*len).checked_mul(n(*d))?
                    }
                    (InputKind::Dense(s), _) => {
                        s.iter().try_fold(1u128, |a, &x| a.checked_mul(n(x)))?
                    }
                    (InputKind::Tokens { len, .. }, None) => n(*len),
                };
                for &h in hidden.iter().chain(std::iter::once(&classes)) {
                    total = total.checked_add(width.checked_mul(n(h))?.checked_add(n(h))?)?;
                    width = n(h);
                }
            }
            ModelSpec::SmallCnn { channels, hidden } => {
                let (c, h, w) = image?;
                let (c0, c1) = (*channels.first()?, *channels.get(1)?);
                add(&[c0, c, 9])?;
                add(&[c0])?;
                add(&[c1, c0, 9])?;
                add(&[c1])?;
                let (ph, pw) = (
                    out(out(h, 3, 1, 0), 3, 1, 0) / 2,
                    out(out(w, 3, 1, 0), 3, 1, 0) / 2,
                );
                add(&[c1, ph, pw, *hidden])?;
                add(&[*hidden])?;
                add(&[*hidden, classes])?;
                add(&[classes])?;
            }
            ModelSpec::Wrn {
                depth,
                widen,
                block,
                ..
            } => {
                let (c, _, _) = image?;
                let biased = *block == WrnBlock::MlcCode;
                total = total.checked_add(wrn_parameters(c, *depth, *widen, biased, classes)?)?;
            }
            ModelSpec::Resnet18 | ModelSpec::Resnet50 => {
                let (c, h, _) = image?;
                let bottleneck = matches!(self, ModelSpec::Resnet50);
                total = total.checked_add(resnet_parameters(c, h, bottleneck, classes)?)?;
            }
        }
        Some(total)
    }

    /// Refuses, when params are validated, widths, depths and a parameter count on the
    /// smallest input beyond the limits of [`crate::bounds`], for the params field `field`
    /// (`model`).
    pub fn check_bounds(&self, field: &str) -> Result<(), String> {
        use crate::bounds::{at_most, MAX_LAYERS, MAX_PARAMETERS, MAX_WIDTH};
        let m = self;
        let wide = |sub: &str, v: usize| at_most(&format!("{field}.{sub}"), v, MAX_WIDTH, "units");
        let (smallest, counted_field) = match m {
            ModelSpec::Mlp {
                hidden, embed_dim, ..
            } => {
                at_most(
                    &format!("{field}.hidden"),
                    hidden.len(),
                    MAX_LAYERS,
                    "hidden layers",
                )?;
                for &h in hidden {
                    wide("hidden", h)?;
                }
                match embed_dim {
                    Some(d) => {
                        wide("embed_dim", *d)?;
                        (InputKind::Tokens { len: 1, vocab: 1 }, "hidden")
                    }
                    None => (InputKind::Dense(vec![1]), "hidden"),
                }
            }
            ModelSpec::SmallCnn { channels, hidden } => {
                for &c in channels {
                    wide("channels", c)?;
                }
                wide("hidden", *hidden)?;
                (InputKind::Dense(vec![1, 8, 8]), "")
            }
            ModelSpec::Wrn { depth, widen, .. } => {
                at_most(&format!("{field}.depth"), *depth, MAX_LAYERS, "layers")?;
                at_most(&format!("{field}.widen"), *widen, MAX_WIDTH / 64, "times")?;
                (InputKind::Dense(vec![1, 8, 8]), "")
            }
            ModelSpec::Resnet18 | ModelSpec::Resnet50 => (InputKind::Dense(vec![1, 8, 8]), ""),
        };
        let n = m.parameter_count(&smallest, 2);
        if n.is_none_or(|n| n > MAX_PARAMETERS) {
            let name = if counted_field.is_empty() {
                field.to_string()
            } else {
                format!("{field}.{counted_field}")
            };
            return Err(format!(
                "field `{name}`: network {} has {} parameters even on a one-feature input with \
                 two classes, more than the limit of {MAX_PARAMETERS} (4 GiB as f32)",
                m.label(),
                n.map_or("too many to count".to_string(), |n| format!("at least {n}"))
            ));
        }
        Ok(())
    }

    /// Refuses, before anything is allocated, a network larger than
    /// [`crate::bounds::MAX_PARAMETERS`] or (on a CPU build, where the parameters live in
    /// host memory) one whose training state — weights, gradients and two optimizer
    /// moments, 16 bytes per parameter — exceeds the memory this process may still take:
    /// the machine's, its own limits and its control group's, whichever is least
    /// ([`crate::memory`]). The message names the params field `model` and the limit.
    pub fn check_fits(&self, input: &InputKind, classes: usize) -> Result<()> {
        let count = self.parameter_count(input, classes);
        let max = crate::bounds::MAX_PARAMETERS;
        let Some(count) = count.filter(|&c| c <= max) else {
            bail!(
                "params field `model`: network {} has {} parameters on this dataset's input \
                 ({input:?}, {classes} classes), more than the limit of {max}",
                self.label(),
                count.map_or("too many to count".to_string(), |c| c.to_string())
            );
        };
        // With `cuda` the training state lives in device memory, not in the host's.
        if cfg!(feature = "cuda") {
            return Ok(());
        }
        if let Some(room) = crate::memory::headroom() {
            let need = count * 16;
            if need > room.bytes as u128 {
                let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
                bail!(
                    "params field `model`: network {} has {count} parameters on this dataset's \
                     input; training them needs about {:.1} GiB (weights, gradients and two \
                     optimizer moments in f32) but {:.1} GiB of memory is available: {}",
                    self.label(),
                    gib(need),
                    gib(room.bytes as u128),
                    room.limit
                );
            }
        }
        Ok(())
    }
}

/// A checked sum of products of layer sizes.
#[derive(Default)]
struct Count(u128);

impl Count {
    fn add(&mut self, factors: &[usize]) -> Option<()> {
        let p = factors
            .iter()
            .try_fold(1u128, |acc, &f| acc.checked_mul(f as u128))?;
        self.0 = self.0.checked_add(p)?;
        Some(())
    }
}

/// Parameters of [`ModelSpec::Wrn`] on `c` input channels, with a bias on every
/// convolution when `biased` (see [`Builder::wrn`]).
fn wrn_parameters(
    c: usize,
    depth: usize,
    widen: usize,
    biased: bool,
    classes: usize,
) -> Option<u128> {
    let mut sum = Count::default();
    let blocks = depth.saturating_sub(4) / 6;
    let widths = [
        16,
        16usize.checked_mul(widen)?,
        32usize.checked_mul(widen)?,
        64usize.checked_mul(widen)?,
    ];
    let bias = usize::from(biased);
    sum.add(&[widths[0], c, 9])?;
    sum.add(&[bias, widths[0]])?;
    let mut cur = widths[0];
    for &o in &widths[1..] {
        for _ in 0..blocks {
            sum.add(&[2, cur])?;
            sum.add(&[cur, o, 9])?;
            sum.add(&[2, o])?;
            sum.add(&[o, o, 9])?;
            sum.add(&[bias * 2, o])?;
            if cur != o {
                sum.add(&[cur, o])?;
                sum.add(&[bias, o])?;
            }
            cur = o;
        }
    }
    sum.add(&[2, cur])?;
    sum.add(&[cur, classes])?;
    sum.add(&[classes])?;
    Some(sum.0)
}

/// Parameters of ResNet-18 or, with `bottleneck`, ResNet-50 on `c` channels of height `h`
/// (see [`Builder::resnet`]).
fn resnet_parameters(c: usize, h: usize, bottleneck: bool, classes: usize) -> Option<u128> {
    let mut sum = Count::default();
    let (counts, expansion) = if bottleneck {
        ([3, 4, 6, 3], 4)
    } else {
        ([2, 2, 2, 2], 1)
    };
    let k = if h >= 64 { 7 } else { 3 };
    sum.add(&[64, c, k, k])?;
    sum.add(&[2, 64])?;
    let mut cur = 64;
    for (li, &count) in counts.iter().enumerate() {
        let planes = 64 << li;
        let o = planes * expansion;
        for i in 0..count {
            let stride = if i == 0 && li > 0 { 2 } else { 1 };
            if stride != 1 || cur != o {
                sum.add(&[cur, o])?;
                sum.add(&[2, o])?;
            }
            if bottleneck {
                sum.add(&[cur, planes])?;
                sum.add(&[2, planes])?;
                sum.add(&[planes, planes, 9])?;
                sum.add(&[2, planes])?;
                sum.add(&[planes, o])?;
                sum.add(&[2, o])?;
            } else {
                sum.add(&[cur, planes, 9])?;
                sum.add(&[2, planes])?;
                sum.add(&[planes, planes, 9])?;
                sum.add(&[2, planes])?;
            }
            cur = o;
        }
    }
    sum.add(&[cur, classes])?;
    sum.add(&[classes])?;
    Some(sum.0)
}

/// What a network reads.
#[derive(Clone, Debug, PartialEq)]
pub enum InputKind {
    /// Dense values with this example shape (`[C, H, W]` for images, `[D]` for features).
    Dense(Vec<usize>),
    /// `len` token ids per example from a vocabulary of `vocab`.
    Tokens { len: usize, vocab: usize },
}

/// A batch given to [`Network::forward`] (untaped: the forward starts the tape).
#[derive(Clone)]
pub enum Input {
    /// `batch x features`.
    Dense(Mat),
    /// `batch x len` token ids, row-major.
    Tokens { ids: Vec<u32>, batch: usize },
}

/// How a forward pass treats batch norm and dropout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: batch statistics, running statistics updated, dropout on.
    Train,
    /// Training-mode forward that leaves the running statistics untouched (look-ahead
    /// forwards of meta-learning); dropout on.
    TrainFrozenBn,
    /// Evaluation: running statistics, no dropout.
    Eval,
}

#[derive(Clone, Debug)]
struct Lin {
    w: usize,
    b: Option<usize>,
    out: usize,
}

#[derive(Clone, Debug)]
struct Conv {
    w: usize,
    b: Option<usize>,
    g: ConvGeom,
}

#[derive(Clone, Debug)]
struct Bn {
    gamma: usize,
    beta: usize,
    /// Buffer index of the running mean; the running variance is the next buffer.
    mean: usize,
    c: usize,
    hw: usize,
    /// Weight of a batch's statistics in the running ones.
    momentum: f64,
}

#[derive(Clone, Debug)]
enum Block {
    /// WRN pre-activation block.
    Wide {
        bn1: Bn,
        conv1: Conv,
        bn2: Bn,
        conv2: Conv,
        shortcut: Option<Conv>,
        /// The shortcut convolution takes the block's raw input ([`WrnBlock::MlcCode`])
        /// rather than its pre-activated one.
        raw_shortcut: bool,
        dropout: f32,
    },
    /// ResNet basic block (post-activation).
    Basic {
        conv1: Conv,
        bn1: Bn,
        conv2: Conv,
        bn2: Bn,
        shortcut: Option<(Conv, Bn)>,
    },
    /// ResNet bottleneck block.
    Bottleneck {
        conv1: Conv,
        bn1: Bn,
        conv2: Conv,
        bn2: Bn,
        conv3: Conv,
        bn3: Bn,
        shortcut: Option<(Conv, Bn)>,
    },
}

#[derive(Clone, Debug)]
enum Arch {
    Mlp {
        embed: Option<(usize, usize)>,
        layers: Vec<Lin>,
        dropout: f32,
    },
    Cnn {
        conv1: Conv,
        conv2: Conv,
        pool_c: usize,
        pool_h: usize,
        pool_w: usize,
        fc1: Lin,
        fc2: Lin,
    },
    Res {
        stem: Conv,
        /// Batch norm after the stem (ResNets; WRN has none: its blocks pre-activate).
        stem_bn: Option<Bn>,
        /// ImageNet-stem max-pool geometry: (C, H, W) of its input.
        stem_pool: Option<(usize, usize, usize)>,
        blocks: Vec<Block>,
        /// WRN's final batch norm + activation.
        final_bn: Option<Bn>,
        /// The nonlinearity of a WRN's blocks and final batch norm (ResNets: ReLU).
        act: Activation,
        final_c: usize,
        final_hw: usize,
        fc: Lin,
    },
}

/// An architecture bound to its parameter and buffer indices.
#[derive(Clone, Debug)]
pub struct Network {
    pub spec: ModelSpec,
    pub input: InputKind,
    pub classes: usize,
    /// Which implementation of the operators the forward passes run (default: the host
    /// kernels in a CPU build, the portable ones in a `cuda` build; see [`Ops`]).
    pub ops: Ops,
    arch: Arch,
}

struct Builder<'a> {
    dev: Dev,
    params: ParamSet,
    buffers: Buffers,
    rng: &'a mut ChaCha8Rng,
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    // Box–Muller from two uniforms in (0, 1].
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * ln(u1)).sqrt() * cos(2.0 * std::f64::consts::PI * u2)) as f32
}

#[derive(Clone, Copy)]
enum ConvInit {
    /// U(±1/√fan_in) for weight and bias (PyTorch default).
    Default,
    /// N(0, 2/(k²·out)), no bias.
    HeFanOut,
}

impl Builder<'_> {
    fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.rng.random::<f32>() * 2.0 - 1.0) * bound)
            .collect()
    }
    fn lin(&mut self, name: &str, inp: usize, out: usize, init: LinearInit) -> Lin {
        let bound = 1.0 / (inp as f32).sqrt();
        let (wv, bv) = match init {
            LinearInit::Uniform => {
                let wv = self.uniform(out * inp, bound);
                (wv, self.uniform(out, bound))
            }
            LinearInit::Normal => {
                let wv = (0..out * inp).map(|_| normal(self.rng) * bound).collect();
                (wv, vec![0.0; out])
            }
        };
        let w = self
            .params
            .push(&self.dev, format!("{name}.weight"), vec![out, inp], wv);
        let b = self
            .params
            .push(&self.dev, format!("{name}.bias"), vec![out], bv);
        Lin { w, b: Some(b), out }
    }
    fn conv(&mut self, name: &str, g: ConvGeom, init: ConvInit) -> Conv {
        let n = g.out_c * g.in_c * g.k * g.k;
        let shape = vec![g.out_c, g.in_c, g.k, g.k];
        match init {
            ConvInit::Default => {
                let bound = 1.0 / ((g.in_c * g.k * g.k) as f32).sqrt();
                let wv = self.uniform(n, bound);
                let bv = self.uniform(g.out_c, bound);
                let w = self
                    .params
                    .push(&self.dev, format!("{name}.weight"), shape, wv);
                let b = self
                    .params
                    .push(&self.dev, format!("{name}.bias"), vec![g.out_c], bv);
                Conv { w, b: Some(b), g }
            }
            ConvInit::HeFanOut => {
                let std = (2.0 / (g.k * g.k * g.out_c) as f32).sqrt();
                let wv = (0..n).map(|_| normal(self.rng) * std).collect();
                let w = self
                    .params
                    .push(&self.dev, format!("{name}.weight"), shape, wv);
                Conv { w, b: None, g }
            }
        }
    }
    fn bn(&mut self, name: &str, c: usize, hw: usize) -> Bn {
        let gamma = self
            .params
            .push(&self.dev, format!("{name}.weight"), vec![c], vec![1.0; c]);
        let beta = self
            .params
            .push(&self.dev, format!("{name}.bias"), vec![c], vec![0.0; c]);
        let mean = self
            .buffers
            .push(format!("{name}.running_mean"), vec![0.0; c]);
        self.buffers
            .push(format!("{name}.running_var"), vec![1.0; c]);
        Bn {
            gamma,
            beta,
            mean,
            c,
            hw,
            momentum: BN_MOMENTUM,
        }
    }
}

fn geom(
    in_c: usize,
    out_c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvGeom {
    ConvGeom {
        in_c,
        out_c,
        h,
        w,
        k,
        stride,
        pad,
    }
}

/// The four architectures, each drawn in a fixed parameter order from the builder's rng.
impl Builder<'_> {
    /// An MLP: optional embedding of token inputs, then `hidden` fully connected layers
    /// and the output layer.
    fn mlp(
        &mut self,
        input: &InputKind,
        hidden: &[usize],
        dropout: f32,
        embed_dim: &Option<usize>,
        init: LinearInit,
        classes: usize,
    ) -> Result<Arch> {
        let (embed, mut width) = match (input, embed_dim) {
            (InputKind::Dense(s), None) => (None, s.iter().product()),
            (InputKind::Tokens { len, vocab }, Some(dim)) => {
                let bound = 1.0;
                let v = self.uniform(vocab * dim, bound);
                let idx = self.params.push(
                    &self.dev.clone(),
                    "embedding.weight".into(),
                    vec![*vocab, *dim],
                    v,
                );
                (Some((idx, *dim)), len * dim)
            }
            (InputKind::Dense(_), Some(_)) => {
                bail!("model mlp: embed_dim is only for token inputs")
            }
            (InputKind::Tokens { .. }, None) => {
                bail!("model mlp: token inputs need embed_dim")
            }
        };
        let mut layers = Vec::new();
        for (i, &h) in hidden.iter().chain(std::iter::once(&classes)).enumerate() {
            layers.push(self.lin(&format!("fc{}", i + 1), width, h, init));
            width = h;
        }
        if !(0.0..1.0).contains(&dropout) {
            bail!("model mlp: dropout {dropout} outside [0, 1)");
        }
        Ok(Arch::Mlp {
            embed,
            layers,
            dropout,
        })
    }

    /// The small CNN on a `c x h x w` image.
    fn small_cnn(
        &mut self,
        (c, h, w): (usize, usize, usize),
        channels: &[usize],
        hidden: usize,
        classes: usize,
    ) -> Result<Arch> {
        if channels.len() != 2 {
            bail!("model small_cnn: channels must list 2 widths, got {channels:?}");
        }
        let g1 = geom(c, channels[0], h, w, 3, 1, 0);
        let conv1 = self.conv("conv1", g1, ConvInit::Default);
        let g2 = geom(channels[0], channels[1], g1.out_h(), g1.out_w(), 3, 1, 0);
        let conv2 = self.conv("conv2", g2, ConvInit::Default);
        let (ph, pw) = (g2.out_h() / 2, g2.out_w() / 2);
        let fc1 = self.lin("fc1", channels[1] * ph * pw, hidden, LinearInit::Uniform);
        let fc2 = self.lin("fc2", hidden, classes, LinearInit::Uniform);
        Ok(Arch::Cnn {
            conv1,
            conv2,
            pool_c: channels[1],
            pool_h: g2.out_h(),
            pool_w: g2.out_w(),
            fc1,
            fc2,
        })
    }

    /// A wide ResNet (Zagoruyko & Komodakis 2016) on a `c x h x w` image, in
    /// Hendrycks' layout or the released MLC code's ([`WrnBlock`]).
    #[allow(clippy::too_many_arguments)]
    fn wrn(
        &mut self,
        (c, h, w): (usize, usize, usize),
        depth: usize,
        widen: usize,
        dropout: f32,
        act: Activation,
        layout: WrnBlock,
        classes: usize,
    ) -> Result<Arch> {
        if depth < 10 || (depth - 4) % 6 != 0 {
            bail!("model wrn: depth {depth} must be 6n + 4 with n >= 1");
        }
        let n = (depth - 4) / 6;
        let widths = [16, 16 * widen, 32 * widen, 64 * widen];
        let mlc = layout == WrnBlock::MlcCode;
        let init = if mlc {
            ConvInit::Default
        } else {
            ConvInit::HeFanOut
        };
        let stem = self.conv("conv1", geom(c, widths[0], h, w, 3, 1, 1), init);
        let (mut cur_c, mut cur_h, mut cur_w) = (widths[0], h, w);
        let mut blocks = Vec::new();
        for group in 0..3 {
            for i in 0..n {
                let stride = if i == 0 && group > 0 { 2 } else { 1 };
                let out_c = widths[group + 1];
                let name = format!("block{}.layer{i}", group + 1);
                // The stride sits on the first convolution (GLC) or the second (MLC code).
                let (s1, s2) = if mlc { (1, stride) } else { (stride, 1) };
                let bn1 = self.bn(&format!("{name}.bn1"), cur_c, cur_h * cur_w);
                let g1 = geom(cur_c, out_c, cur_h, cur_w, 3, s1, 1);
                let conv1 = self.conv(&format!("{name}.conv1"), g1, init);
                let bn2 = self.bn(&format!("{name}.bn2"), out_c, g1.out_h() * g1.out_w());
                let g2 = geom(out_c, out_c, g1.out_h(), g1.out_w(), 3, s2, 1);
                let conv2 = self.conv(&format!("{name}.conv2"), g2, init);
                let (oh, ow) = (g2.out_h(), g2.out_w());
                let shortcut = (cur_c != out_c || (mlc && stride != 1)).then(|| {
                    self.conv(
                        &format!("{name}.shortcut"),
                        geom(cur_c, out_c, cur_h, cur_w, 1, stride, 0),
                        init,
                    )
                });
                if shortcut.is_none() && stride != 1 {
                    bail!("model wrn: identity shortcut with stride {stride}");
                }
                blocks.push(Block::Wide {
                    bn1,
                    conv1,
                    bn2,
                    conv2,
                    shortcut,
                    raw_shortcut: mlc,
                    dropout,
                });
                (cur_c, cur_h, cur_w) = (out_c, oh, ow);
            }
        }
        let mut final_bn = self.bn("bn_final", cur_c, cur_h * cur_w);
        let fc = self.lin("fc", cur_c, classes, LinearInit::Uniform);
        if mlc {
            final_bn.momentum = 0.9;
        } else {
            let zeros = vec![0.0; classes];
            self.params.set(fc.b.unwrap(), &zeros);
        }
        Ok(Arch::Res {
            stem,
            stem_bn: None,
            stem_pool: None,
            blocks,
            final_bn: Some(final_bn),
            act,
            final_c: cur_c,
            final_hw: cur_h * cur_w,
            fc,
        })
    }

    /// Convolution `{name}.conv{i}` with geometry `g` (He fan-out initialisation), then
    /// batch norm `{name}.bn{i}` over its output: the unit of the ResNet blocks.
    fn conv_bn(&mut self, name: &str, i: usize, g: ConvGeom) -> (Conv, Bn) {
        let conv = self.conv(&format!("{name}.conv{i}"), g, ConvInit::HeFanOut);
        let bn = self.bn(&format!("{name}.bn{i}"), g.out_c, g.out_h() * g.out_w());
        (conv, bn)
    }

    /// ResNet-18 (basic blocks) or, with `bottleneck`, ResNet-50 on a `c x h x w` image.
    fn resnet(
        &mut self,
        (c, h, w): (usize, usize, usize),
        bottleneck: bool,
        classes: usize,
    ) -> Result<Arch> {
        let counts = if bottleneck {
            [3, 4, 6, 3]
        } else {
            [2, 2, 2, 2]
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let imagenet = h >= 64;
        let stem_g = if imagenet {
            geom(c, 64, h, w, 7, 2, 3)
        } else {
            geom(c, 64, h, w, 3, 1, 1)
        };
        let stem = self.conv("conv1", stem_g, ConvInit::HeFanOut);
        let stem_bn = Some(self.bn("bn1", 64, stem_g.out_h() * stem_g.out_w()));
        let (mut cur_h, mut cur_w) = (stem_g.out_h(), stem_g.out_w());
        let stem_pool = if imagenet {
            let p = (64, cur_h, cur_w);
            cur_h = (cur_h + 2 - 3) / 2 + 1;
            cur_w = (cur_w + 2 - 3) / 2 + 1;
            Some(p)
        } else {
            None
        };
        let mut cur_c = 64;
        let mut blocks = Vec::new();
        for (li, &count) in counts.iter().enumerate() {
            let planes = 64 << li;
            for i in 0..count {
                let stride = if i == 0 && li > 0 { 2 } else { 1 };
                let name = format!("layer{}.{i}", li + 1);
                let out_c = planes * expansion;
                let (oh, ow) = ((cur_h - 1) / stride + 1, (cur_w - 1) / stride + 1);
                let shortcut = (stride != 1 || cur_c != out_c).then(|| {
                    let g = geom(cur_c, out_c, cur_h, cur_w, 1, stride, 0);
                    let conv = self.conv(&format!("{name}.downsample.0"), g, ConvInit::HeFanOut);
                    let bn = self.bn(
                        &format!("{name}.downsample.1"),
                        out_c,
                        g.out_h() * g.out_w(),
                    );
                    (conv, bn)
                });
                if bottleneck {
                    let (conv1, bn1) =
                        self.conv_bn(&name, 1, geom(cur_c, planes, cur_h, cur_w, 1, 1, 0));
                    let (conv2, bn2) =
                        self.conv_bn(&name, 2, geom(planes, planes, cur_h, cur_w, 3, stride, 1));
                    let (conv3, bn3) = self.conv_bn(&name, 3, geom(planes, out_c, oh, ow, 1, 1, 0));
                    blocks.push(Block::Bottleneck {
                        conv1,
                        bn1,
                        conv2,
                        bn2,
                        conv3,
                        bn3,
                        shortcut,
                    });
                } else {
                    let (conv1, bn1) =
                        self.conv_bn(&name, 1, geom(cur_c, planes, cur_h, cur_w, 3, stride, 1));
                    let (conv2, bn2) =
                        self.conv_bn(&name, 2, geom(planes, planes, oh, ow, 3, 1, 1));
                    blocks.push(Block::Basic {
                        conv1,
                        bn1,
                        conv2,
                        bn2,
                        shortcut,
                    });
                }
                (cur_c, cur_h, cur_w) = (out_c, oh, ow);
            }
        }
        let fc = self.lin("fc", cur_c, classes, LinearInit::Uniform);
        Ok(Arch::Res {
            stem,
            stem_bn,
            stem_pool,
            blocks,
            final_bn: None,
            act: Activation::Relu,
            final_c: cur_c,
            final_hw: cur_h * cur_w,
            fc,
        })
    }
}

impl Network {
    /// Builds the network and its freshly initialised parameters and buffers
    /// (deterministic in `seed`).
    pub fn new(
        spec: &ModelSpec,
        input: &InputKind,
        classes: usize,
        seed: u64,
    ) -> Result<(Network, ParamSet, Buffers)> {
        spec.check_fits(input, classes)?;
        #[cfg(not(feature = "cuda"))]
        super::kernels::tune_allocator();
        super::device::open()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut b = Builder {
            dev: dev(),
            params: ParamSet::new(),
            buffers: Buffers::default(),
            rng: &mut rng,
        };
        let image = |input: &InputKind| -> Result<(usize, usize, usize)> {
            match input {
                InputKind::Dense(s) if s.len() == 3 => Ok((s[0], s[1], s[2])),
                other => bail!(
                    "model {} needs image inputs [C, H, W], got {other:?}",
                    spec.label()
                ),
            }
        };
        let arch = match spec {
            ModelSpec::Mlp {
                hidden,
                dropout,
                embed_dim,
                weight_init,
            } => b.mlp(input, hidden, *dropout, embed_dim, *weight_init, classes)?,
            ModelSpec::SmallCnn { channels, hidden } => {
                b.small_cnn(image(input)?, channels, *hidden, classes)?
            }
            ModelSpec::Wrn {
                depth,
                widen,
                dropout,
                activation,
                block,
            } => b.wrn(
                image(input)?,
                *depth,
                *widen,
                *dropout,
                *activation,
                *block,
                classes,
            )?,
            ModelSpec::Resnet18 | ModelSpec::Resnet50 => {
                let bottleneck = matches!(spec, ModelSpec::Resnet50);
                b.resnet(image(input)?, bottleneck, classes)?
            }
        };
        let net = Network {
            spec: spec.clone(),
            input: input.clone(),
            classes,
            ops: Ops::default(),
            arch,
        };
        Ok((net, b.params, b.buffers))
    }

    /// Logits (`batch x classes`) of `x` under `params`. `T` is [`NoneTape`] for
    /// evaluation and [`super::device::Tp`] for training; the tape starts here.
    /// `rng` drives dropout and is required when the model has dropout and `mode` is not
    /// [`Mode::Eval`].
    pub fn forward<T: Tape<f32, Dev>>(
        &self,
        params: &ParamSet,
        buffers: &mut Buffers,
        x: Input,
        mode: Mode,
        rng: Option<&mut ChaCha8Rng>,
    ) -> Mat<T> {
        let mut f = Fwd {
            params,
            buffers,
            mode,
            rng,
            ops: self.ops,
            act: Activation::Relu,
        };
        match &self.arch {
            Arch::Mlp {
                embed,
                layers,
                dropout,
            } => {
                let mut h: Mat<T> = match (x, embed) {
                    (Input::Dense(x), None) => x.put_tape(T::default()),
                    (Input::Tokens { ids, batch }, Some((w, dim))) => embedding(
                        self.ops,
                        &dev(),
                        &ids,
                        batch,
                        &params.tensors[*w],
                        *dim,
                        T::default(),
                    ),
                    _ => panic!("mlp: input kind does not match the network"),
                };
                let first_grad = embed.is_some();
                let last = layers.len() - 1;
                for (i, l) in layers.iter().enumerate() {
                    h = f.lin(l, h, i > 0 || first_grad);
                    if i < last {
                        h = h.relu();
                        if *dropout > 0.0 {
                            h = f.dropout(h, *dropout);
                        }
                    }
                }
                h
            }
            Arch::Cnn {
                conv1,
                conv2,
                pool_c,
                pool_h,
                pool_w,
                fc1,
                fc2,
            } => {
                let x = dense(x).put_tape(T::default());
                let h = f.conv(conv1, x, false).relu();
                let h = f.conv(conv2, h, true).relu();
                let (h, _, _) = max_pool2d(f.ops, h, *pool_c, *pool_h, *pool_w, 2, 2, 0);
                let h = f.lin(fc1, h, true).relu();
                f.lin(fc2, h, true)
            }
            Arch::Res {
                stem,
                stem_bn,
                stem_pool,
                blocks,
                final_bn,
                act,
                final_c,
                final_hw,
                fc,
            } => {
                f.act = *act;
                let x = dense(x).put_tape(T::default());
                let mut h = f.conv(stem, x, false);
                if let Some(bn) = stem_bn {
                    h = f.bn(bn, h).relu();
                }
                if let Some((c, ph, pw)) = stem_pool {
                    h = max_pool2d(f.ops, h, *c, *ph, *pw, 3, 2, 1).0;
                }
                for blk in blocks {
                    h = f.block(blk, h);
                }
                if let Some(bn) = final_bn {
                    let o = f.bn(bn, h);
                    h = f.activate(o);
                }
                let h = global_avg_pool(f.ops, h, *final_c, *final_hw);
                f.lin(fc, h, true)
            }
        }
    }
}

fn dense(x: Input) -> Mat {
    match x {
        Input::Dense(x) => x,
        Input::Tokens { .. } => panic!("this network reads dense inputs, not token ids"),
    }
}

/// Uses a taped activation twice: the tape stays with the first copy, the second starts
/// an empty one; gradients of both meet by tensor id when the tapes merge downstream.
fn fork<T: Tape<f32, Dev>>(x: Mat<T>) -> (Mat<T>, Mat<T>) {
    let (x, tape) = x.split_tape();
    (x.clone().put_tape(tape), x.put_tape(T::default()))
}

struct Fwd<'a> {
    params: &'a ParamSet,
    buffers: &'a mut Buffers,
    mode: Mode,
    rng: Option<&'a mut ChaCha8Rng>,
    ops: Ops,
    /// The nonlinearity of WRN blocks ([`Fwd::activate`]).
    act: Activation,
}

impl Fwd<'_> {
    fn activate<T: Tape<f32, Dev>>(&self, x: Mat<T>) -> Mat<T> {
        match self.act {
            Activation::Relu => x.relu(),
            Activation::LeakyRelu => leaky_relu(self.ops, x, LEAKY_SLOPE),
        }
    }
    fn lin<T: Tape<f32, Dev>>(&mut self, l: &Lin, x: Mat<T>, input_grad: bool) -> Mat<T> {
        let p = &self.params.tensors;
        linear(self.ops, x, &p[l.w], l.b.map(|b| &p[b]), l.out, input_grad)
    }
    fn conv<T: Tape<f32, Dev>>(&mut self, c: &Conv, x: Mat<T>, input_grad: bool) -> Mat<T> {
        let p = &self.params.tensors;
        conv2d(self.ops, x, &p[c.w], c.b.map(|b| &p[b]), c.g, input_grad)
    }
    fn bn<T: Tape<f32, Dev>>(&mut self, b: &Bn, x: Mat<T>) -> Mat<T> {
        let mode = match self.mode {
            Mode::Train => BnMode::TrainUpdate,
            Mode::TrainFrozenBn => BnMode::TrainFrozen,
            Mode::Eval => BnMode::Eval,
        };
        let p = &self.params.tensors;
        let running = self.buffers.pair_mut(b.mean, b.mean + 1);
        batch_norm2d(
            self.ops,
            x,
            &p[b.gamma],
            &p[b.beta],
            running,
            b.c,
            b.hw,
            mode,
            b.momentum,
        )
    }
    /// `bn(conv(x))`, the unit of the ResNet blocks.
    fn conv_bn<T: Tape<f32, Dev>>(&mut self, c: &Conv, b: &Bn, x: Mat<T>) -> Mat<T> {
        let h = self.conv(c, x, true);
        self.bn(b, h)
    }
    /// A ResNet block's shortcut: `bn(conv(x))` when the block projects, else `x`.
    fn projection<T: Tape<f32, Dev>>(&mut self, sc: &Option<(Conv, Bn)>, x: Mat<T>) -> Mat<T> {
        match sc {
            Some((c, bn)) => self.conv_bn(c, bn, x),
            None => x,
        }
    }
    fn dropout<T: Tape<f32, Dev>>(&mut self, x: Mat<T>, p: f32) -> Mat<T> {
        if self.mode == Mode::Eval || p == 0.0 {
            return x;
        }
        let rng = self
            .rng
            .as_deref_mut()
            .expect("a training forward with dropout needs an rng");
        let n = x.shape().0 * x.shape().1;
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..n)
            .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
            .collect();
        mul_mask(self.ops, x, mask)
    }
    fn block<T: Tape<f32, Dev>>(&mut self, blk: &Block, x: Mat<T>) -> Mat<T> {
        match blk {
            Block::Wide {
                bn1,
                conv1,
                bn2,
                conv2,
                shortcut,
                raw_shortcut,
                dropout,
            } => {
                // Hendrycks' WRN: with equal widths the shortcut is x itself, otherwise a
                // 1×1 convolution of the pre-activated act(bn1(x)); the MLC code's takes
                // the raw x.
                let (body_in, skip) = match shortcut {
                    Some(sc) if !*raw_shortcut => {
                        let o = self.bn(bn1, x);
                        let (a, b) = fork(self.activate(o));
                        (a, self.conv(sc, b, true))
                    }
                    _ => {
                        let (a, b) = fork(x);
                        let o = self.bn(bn1, a);
                        let skip = match shortcut {
                            Some(sc) => self.conv(sc, b, true),
                            None => b,
                        };
                        (self.activate(o), skip)
                    }
                };
                let h = self.conv(conv1, body_in, true);
                let h = self.bn(bn2, h);
                let h = self.activate(h);
                let h = self.dropout(h, *dropout);
                let h = self.conv(conv2, h, true);
                h + skip
            }
            Block::Basic {
                conv1,
                bn1,
                conv2,
                bn2,
                shortcut,
            } => {
                let (a, b) = fork(x);
                let h = self.conv_bn(conv1, bn1, a).relu();
                let h = self.conv_bn(conv2, bn2, h);
                let s = self.projection(shortcut, b);
                (h + s).relu()
            }
            Block::Bottleneck {
                conv1,
                bn1,
                conv2,
                bn2,
                conv3,
                bn3,
                shortcut,
            } => {
                let (a, b) = fork(x);
                let h = self.conv_bn(conv1, bn1, a).relu();
                let h = self.conv_bn(conv2, bn2, h).relu();
                let h = self.conv_bn(conv3, bn3, h);
                let s = self.projection(shortcut, b);
                (h + s).relu()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameter_count_matches_the_built_network() {
        let img = InputKind::Dense(vec![3, 32, 32]);
        let cases = [
            (
                json!({"arch": "mlp", "hidden": [7, 5]}),
                InputKind::Dense(vec![4, 3]),
            ),
            (
                json!({"arch": "mlp", "hidden": [6], "embed_dim": 3}),
                InputKind::Tokens { len: 4, vocab: 11 },
            ),
            (
                json!({"arch": "small_cnn", "channels": [4, 6], "hidden": 9}),
                InputKind::Dense(vec![1, 12, 10]),
            ),
            (
                json!({"arch": "wrn", "depth": 10, "widen": 1, "dropout": 0.0}),
                img.clone(),
            ),
            (json!({"arch": "resnet18"}), img.clone()),
            (
                json!({"arch": "resnet50"}),
                InputKind::Dense(vec![3, 64, 64]),
            ),
        ];
        for (spec, input) in cases {
            let m: ModelSpec = serde_json::from_value(spec).unwrap();
            let (_, params, _) = Network::new(&m, &input, 10, 0).unwrap();
            assert_eq!(
                m.parameter_count(&input, 10),
                Some(params.numel() as u128),
                "{}",
                m.label()
            );
        }
    }

    #[test]
    fn network_too_large_for_its_input_is_refused_before_allocation() {
        // Allowed at load (one feature in), but 785 M + 1 G weights on 784 features: the
        // check runs before the 7 GB of weights would be drawn.
        let m: ModelSpec =
            serde_json::from_value(json!({"arch": "mlp", "hidden": [1000000, 1000]})).unwrap();
        m.check_bounds("model").unwrap();
        let e = Network::new(&m, &InputKind::Dense(vec![784]), 10, 0).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("params field `model`"), "{e}");
        assert!(e.contains("more than the limit"), "{e}");
    }
}
