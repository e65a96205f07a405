//! ONNX for mixdet: the protobuf messages of an `.onnx` file (written and read with prost) and
//! [`Graph`], a builder that names values, stores constants as initializers and checks every
//! operator against the opset the model declares. The models themselves are exported by the
//! crates that define them (`mixdet_backbones::onnx`, `mixdet_detect::onnx`).

mod graph;
pub mod proto;

pub use graph::{decode, encode, Attr, Dim, ElemType, Graph, MAX_OPSET, MIN_OPSET};

/// What can go wrong building or reading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The opset asked for is outside what mixdet writes.
    #[error("opset {opset} is not supported: mixdet writes opsets {min} to {max}")]
    Opset {
        /// Asked for.
        opset: i64,
        /// Lowest supported.
        min: i64,
        /// Highest supported.
        max: i64,
    },
    /// An operator needs a later opset than the one asked for.
    #[error("{op} needs opset {needs} or later; the export asked for opset {opset}")]
    OpNeedsOpset {
        /// The operator.
        op: String,
        /// Its first opset in the form mixdet writes.
        needs: i64,
        /// The opset asked for.
        opset: i64,
    },
    /// An operator mixdet does not write (a bug in an exporter).
    #[error("operator {0} is not one mixdet writes")]
    UnknownOp(String),
    /// A constant whose values do not fill its shape, or a layer that cannot be expressed.
    #[error("{0}")]
    Shape(String),
    /// A file that is not an ONNX model.
    #[error("not an ONNX model: {0}")]
    Decode(String),
}

/// How a model is exported: opset, batch and input size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// The opset to write ([`MIN_OPSET`]..=[`MAX_OPSET`]).
    pub opset: i64,
    /// The batch size of the graph, or `None` for a dimension named `batch`.
    pub batch: Option<usize>,
    /// The input `[height, width]`.
    pub input_size: [usize; 2],
    /// Store the layers' weights as float16 (see [`Graph::with_half_weights`]).
    pub half_weights: bool,
}

impl ExportOptions {
    /// Opset 17, batch 1, the given input size.
    pub fn new(input_size: [usize; 2]) -> Self {
        Self { opset: 17, batch: Some(1), input_size, half_weights: false }
    }

    /// With another opset.
    pub fn with_opset(mut self, opset: i64) -> Self {
        self.opset = opset;
        self
    }

    /// With a fixed batch size (`None`: dynamic).
    pub fn with_batch(mut self, batch: Option<usize>) -> Self {
        self.batch = batch;
        self
    }

    /// With the layers' weights stored as float16.
    pub fn with_half_weights(mut self, half: bool) -> Self {
        self.half_weights = half;
        self
    }

    /// A graph for these options.
    pub fn graph(&self, name: &str) -> Result<Graph, Error> {
        Ok(Graph::new(name, self.opset)?.with_half_weights(self.half_weights))
    }

    /// The batch dimension of inputs and outputs.
    pub fn batch_dim(&self) -> Dim {
        match self.batch {
            Some(n) => Dim::Fixed(n),
            None => Dim::Named("batch".into()),
        }
    }
}
