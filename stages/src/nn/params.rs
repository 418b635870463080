//! The parameters of a network as a flat, ordered list of named tensors, and its
//! non-trained buffers (batch-norm running statistics).
//!
//! Every parameter is a 1-D dfdx tensor (its logical shape is recorded beside it, in
//! PyTorch's layout), so code that meta-learns can treat parameters uniformly:
//! clone them ([`ParamSet::clone`] shares storage and ids; [`ParamSet::deep_clone`]
//! gives new ids), form θ + c·v ([`ParamSet::axpy`]), and read the gradient of each
//! parameter out of a dfdx [`Gradients`] ([`ParamSet::grads`]).
//!
//! Gradients are looked up by tensor id: a backward pass through a forward that used
//! *this* set yields gradients for *this* set (and for its `clone()`s, which share ids).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use dfdx::prelude::*;
use safetensors::tensor::{Dtype, TensorView};

use super::device::{dev, grad_host, host, Dev, Vector};

#[derive(Clone, Debug)]
pub struct ParamSet {
    pub names: Vec<String>,
    /// Logical shapes (PyTorch layout, e.g. `[out, in]`, `[out, in, k, k]`).
    pub shapes: Vec<Vec<usize>>,
    pub tensors: Vec<Vector>,
}

impl ParamSet {
    pub fn new() -> ParamSet {
        ParamSet {
            names: vec![],
            shapes: vec![],
            tensors: vec![],
        }
    }

    /// Appends a parameter; returns its index.
    pub fn push(&mut self, dev: &Dev, name: String, shape: Vec<usize>, values: Vec<f32>) -> usize {
        let n: usize = shape.iter().product();
        assert_eq!(
            values.len(),
            n,
            "parameter {name}: {} values for shape {shape:?}",
            values.len()
        );
        assert!(
            !self.names.contains(&name),
            "duplicate parameter name {name}"
        );
        self.names.push(name);
        self.shapes.push(shape);
        self.tensors.push(dev.tensor_from_vec(values, (n,)));
        self.names.len() - 1
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
    /// Total number of scalars.
    pub fn numel(&self) -> usize {
        self.tensors.iter().map(|t| t.shape().0).sum()
    }
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Host copies of every parameter, in order.
    pub fn to_host(&self) -> Vec<Vec<f32>> {
        self.tensors.iter().map(host).collect()
    }

    /// Overwrites parameter `i` (keeps its id, so existing gradients still refer to it).
    pub fn set(&mut self, i: usize, values: &[f32]) {
        self.tensors[i].copy_from(values);
    }

    /// Copies with fresh storage and fresh tensor ids.
    pub fn deep_clone(&self) -> ParamSet {
        let dev = self.device();
        ParamSet {
            names: self.names.clone(),
            shapes: self.shapes.clone(),
            tensors: self
                .tensors
                .iter()
                .map(|t| dev.tensor_from_vec(host(t), (t.shape().0,)))
                .collect(),
        }
    }

    /// θ + c·v as a new set (fresh ids); `v[i]` has the length of parameter `i`.
    pub fn axpy(&self, c: f32, v: &[Vec<f32>]) -> ParamSet {
        assert_eq!(
            v.len(),
            self.len(),
            "axpy: {} directions for {} parameters",
            v.len(),
            self.len()
        );
        let dev = self.device();
        let tensors = self
            .tensors
            .iter()
            .zip(v)
            .map(|(t, vi)| {
                let mut h = host(t);
                assert_eq!(h.len(), vi.len(), "axpy: direction length");
                h.iter_mut().zip(vi).for_each(|(a, b)| *a += c * b);
                dev.tensor_from_vec(h, (vi.len(),))
            })
            .collect();
        ParamSet {
            names: self.names.clone(),
            shapes: self.shapes.clone(),
            tensors,
        }
    }

    /// The gradient of every parameter (zeros for one the backward pass did not reach).
    pub fn grads(&self, grads: &mut Gradients<f32, Dev>) -> Vec<Vec<f32>> {
        self.tensors.iter().map(|t| grad_host(grads, t)).collect()
    }

    fn device(&self) -> Dev {
        self.tensors
            .first()
            .map(|t| t.device().clone())
            .unwrap_or_else(dev)
    }
}

impl Default for ParamSet {
    fn default() -> Self {
        ParamSet::new()
    }
}

/// Named host buffers that are state but not trained (batch-norm running mean/var).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buffers {
    pub names: Vec<String>,
    pub values: Vec<Vec<f32>>,
}

impl Buffers {
    pub fn push(&mut self, name: String, values: Vec<f32>) -> usize {
        assert!(!self.names.contains(&name), "duplicate buffer name {name}");
        self.names.push(name);
        self.values.push(values);
        self.values.len() - 1
    }
    /// Two distinct buffers borrowed mutably at once (`i < j`).
    pub fn pair_mut(&mut self, i: usize, j: usize) -> (&mut [f32], &mut [f32]) {
        assert!(i < j);
        let (a, b) = self.values.split_at_mut(j);
        (&mut a[i], &mut b[0])
    }
}

/// A named f32 tensor for safetensors files.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Writes f32 tensors (and string metadata) to a safetensors file; names must be unique.
/// The byte layout depends only on the names, shapes and values.
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: Option<BTreeMap<String, String>>,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            Ok((
                t.name.clone(),
                TensorView::new(Dtype::F32, t.shape.clone(), b)?,
            ))
        })
        .collect::<Result<_>>()?;
    let meta = metadata.map(|m| m.into_iter().collect());
    let tmp = path.with_extension("tmp");
    safetensors::serialize_to_file(views, meta, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(())
}

/// Reads every tensor of a safetensors file (all must be F32) and its metadata.
pub fn read_safetensors(
    path: &Path,
) -> Result<(BTreeMap<String, NamedTensor>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("parsing {}", path.display()))?;
    let meta: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("parsing {}", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            bail!(
                "{}: tensor {name} has dtype {:?}, expected F32",
                path.display(),
                view.dtype()
            );
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.insert(
            name.clone(),
            NamedTensor {
                name,
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok((out, meta))
}

impl ParamSet {
    /// Parameters then buffers, as named tensors with their logical shapes.
    pub fn named(&self, buffers: &Buffers) -> Vec<NamedTensor> {
        let mut v: Vec<NamedTensor> = self
            .names
            .iter()
            .zip(&self.shapes)
            .zip(&self.tensors)
            .map(|((n, s), t)| NamedTensor {
                name: n.clone(),
                shape: s.clone(),
                data: host(t),
            })
            .collect();
        for (n, b) in buffers.names.iter().zip(&buffers.values) {
            v.push(NamedTensor {
                name: n.clone(),
                shape: vec![b.len()],
                data: b.clone(),
            });
        }
        v
    }

    /// Loads parameter and buffer values by name from tensors read with
    /// [`read_safetensors`]; every name must be present with the right shape.
    pub fn load_named(
        &mut self,
        buffers: &mut Buffers,
        src: &BTreeMap<String, NamedTensor>,
        what: &str,
    ) -> Result<()> {
        for i in 0..self.len() {
            let name = &self.names[i];
            let t = src
                .get(name)
                .with_context(|| format!("{what}: parameter {name} missing"))?;
            ensure!(
                t.shape == self.shapes[i],
                "{what}: parameter {name} has shape {:?}, expected {:?}",
                t.shape,
                self.shapes[i]
            );
            let data = t.data.clone();
            self.set(i, &data);
        }
        for (name, b) in buffers.names.iter().zip(buffers.values.iter_mut()) {
            let t = src
                .get(name)
                .with_context(|| format!("{what}: buffer {name} missing"))?;
            ensure!(
                t.data.len() == b.len(),
                "{what}: buffer {name} has {} values, expected {}",
                t.data.len(),
                b.len()
            );
            b.copy_from_slice(&t.data);
        }
        Ok(())
    }
}
