//! Loading PyTorch state dicts (`.safetensors`, `.pth`/`.pt`) by their own key names, strictly:
//! a file that does not match the model reports every missing key, unexpected key and shape
//! mismatch at once, and no model is returned (never half loaded).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

/// Why a weights file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read or parsed.
    #[error("{path}: cannot read weights: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file's extension is not one of ours.
    #[error("{0}: unknown weights format (expected .safetensors, .pth, .pt, .bin or .pb)")]
    UnknownFormat(PathBuf),
    /// The state dict does not match the model.
    #[error("{source_name}: weights do not match the model: {report}")]
    Mismatch {
        /// The file (or other source) name.
        source_name: String,
        /// What differs.
        report: MismatchReport,
    },
    /// The model could not be built for another reason.
    #[error("building the model: {0}")]
    Build(#[from] candle_core::Error),
}

/// Differences between a state dict and what a model expects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MismatchReport {
    /// Keys the model needs that the file lacks, with the expected shape.
    pub missing: Vec<(String, Vec<usize>)>,
    /// Keys in the file that the model does not use.
    pub unexpected: Vec<String>,
    /// Keys with the wrong shape: (key, shape in file, shape expected).
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl MismatchReport {
    /// True when the file matches.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

fn list<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    const MAX: usize = 8;
    let mut s: Vec<String> = items.iter().take(MAX).map(show).collect();
    if items.len() > MAX {
        s.push(format!("... and {} more", items.len() - MAX));
    }
    s.join(", ")
}

impl std::fmt::Display for MismatchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "{} missing keys [{}]",
                self.missing.len(),
                list(&self.missing, |(k, s)| format!("{k} {s:?}"))
            ));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected keys [{}]",
                self.unexpected.len(),
                list(&self.unexpected, |k| k.clone())
            ));
        }
        if !self.wrong_shape.is_empty() {
            parts.push(format!(
                "{} keys with the wrong shape [{}]",
                self.wrong_shape.len(),
                list(&self.wrong_shape, |(k, got, want)| format!("{k}: file {got:?}, model {want:?}"))
            ));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// Reads every tensor of a `.safetensors` or PyTorch pickle (`.pth`, `.pt`, `.bin`) file on the CPU.
/// Pickles that wrap the state dict under `state_dict` or `model` are unwrapped. A TensorFlow 1
/// frozen graph (`.pb`) gives its frozen variables (see [`crate::tf_graph`]).
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>, WeightsError> {
    let read_err = |e: candle_core::Error| WeightsError::Read { path: path.to_path_buf(), reason: e.to_string() };
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("safetensors") => candle_core::safetensors::load(path, &Device::Cpu).map_err(read_err),
        Some("pb") => crate::tf_graph::read_frozen_graph(path),
        Some("pth" | "pt" | "bin" | "ckpt") => {
            let mut last_err = None;
            for key in [None, Some("state_dict"), Some("model")] {
                match candle_core::pickle::read_all_with_key(path, key) {
                    Ok(v) if !v.is_empty() => return Ok(v.into_iter().collect()),
                    Ok(_) => {}
                    Err(e) => last_err = Some(e),
                }
            }
            Err(last_err.map(read_err).unwrap_or_else(|| WeightsError::Read {
                path: path.to_path_buf(),
                reason: "no tensors found (looked at the top level, `state_dict` and `model`)".into(),
            }))
        }
        _ => Err(WeightsError::UnknownFormat(path.to_path_buf())),
    }
}

#[derive(Default)]
struct Log {
    requested: BTreeSet<String>,
    missing: BTreeMap<String, Vec<usize>>,
    wrong_shape: BTreeMap<String, (Vec<usize>, Vec<usize>)>,
}

/// A `VarBuilder` backend over a state dict that records what the model asks for instead of
/// failing at the first problem, so that one load reports every problem.
#[derive(Clone)]
pub struct CheckedStateDict {
    tensors: Arc<HashMap<String, Tensor>>,
    log: Arc<Mutex<Log>>,
}

impl CheckedStateDict {
    /// Wraps a state dict.
    pub fn new(tensors: HashMap<String, Tensor>) -> Self {
        Self { tensors: Arc::new(tensors), log: Arc::default() }
    }

    /// A `VarBuilder` reading from this state dict.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// Compares what the model asked for with what the state dict holds. Keys under one of
    /// `ignored_prefixes` (e.g. a classifier a features-only model does not use) and BatchNorm's
    /// `num_batches_tracked` counters are not reported as unexpected.
    pub fn report(&self, ignored_prefixes: &[&str]) -> MismatchReport {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let mut unexpected: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| !log.requested.contains(*k))
            .filter(|k| !k.ends_with("num_batches_tracked"))
            .filter(|k| !ignored_prefixes.iter().any(|p| k.starts_with(p)))
            .cloned()
            .collect();
        unexpected.sort();
        MismatchReport {
            missing: log.missing.iter().map(|(k, s)| (k.clone(), s.clone())).collect(),
            unexpected,
            wrong_shape: log.wrong_shape.iter().map(|(k, (a, b))| (k.clone(), a.clone(), b.clone())).collect(),
        }
    }

    /// Total number of elements of the tensors the model requested (its parameter and buffer count).
    pub fn requested_numel(&self, filter: impl Fn(&str) -> bool) -> usize {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.requested.iter().filter(|k| filter(k)).filter_map(|k| self.tensors.get(k).map(|t| t.elem_count())).sum()
    }
}

impl SimpleBackend for CheckedStateDict {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.requested.insert(name.to_string());
        match self.tensors.get(name) {
            Some(t) if t.shape() == &s => t.to_dtype(dtype)?.to_device(dev),
            Some(t) => {
                log.wrong_shape.insert(name.to_string(), (t.dims().to_vec(), s.dims().to_vec()));
                Tensor::zeros(s, dtype, dev)
            }
            None => {
                log.missing.insert(name.to_string(), s.dims().to_vec());
                Tensor::zeros(s, dtype, dev)
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).requested.insert(name.to_string());
        match self.tensors.get(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("missing tensor {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// A `VarBuilder` backend that answers every request with zeros of the requested shape and
/// records the element counts: builds a model without weights to count its parameters.
#[derive(Clone, Default)]
pub struct ShapeRecorder {
    shapes: Arc<Mutex<BTreeMap<String, Vec<usize>>>>,
}

impl ShapeRecorder {
    /// A `VarBuilder` over this recorder.
    pub fn var_builder(&self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, device.clone())
    }

    /// Every requested key with its shape, sorted by key.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.shapes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.shapes.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), s.dims().to_vec());
        Tensor::zeros(s, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("shape recorder cannot answer an unchecked request for {name}")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}
