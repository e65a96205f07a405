//! The training loop: model set-up (initialisation or timm backbone), the loader thread, SSD loss,
//! optimiser and schedule, checkpoints, JSONL log, periodic COCO evaluation and plot; progress
//! goes to an [`Observer`] (the library draws nothing).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use mixdet_backbones::Architecture;
use mixdet_detect::{BoxCoder, DetectorConfig, Family, SsdLite};

use crate::checkpoint::{self, Position};
use crate::config::TrainConfig;
use crate::dataset::{Dataset, Issue, Sample};
use crate::error::{Result, TrainError};
use crate::evaluate::{evaluate_detector, EvalResult};
use crate::init::{initialise, is_running_stat, load_backbone};
use crate::loader::{self, Batch, LoaderSpec};
use crate::loss::{ssd_loss, ClassLoss};
use crate::optim::{Optimizer, Param};
use crate::plot::{write_plot, Curve};
use crate::schedule::Schedule;

/// Run-time choices that are not part of the experiment.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Continue from `output_dir/checkpoint.safetensors`.
    pub resume: bool,
    /// Stop after this many steps (overrides the config's `max_steps` when smaller).
    pub max_steps: Option<u64>,
    /// Where the model, the loss and the optimiser run (the data pipeline stays on the CPU).
    pub device: Device,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { resume: false, max_steps: None, device: Device::Cpu }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Optimiser steps at the end.
    pub steps: u64,
    /// Loss of the last step.
    pub last_loss: f32,
    /// The last evaluation, if a validation split was given.
    pub last_eval: Option<EvalResult>,
    /// Median images per second of the model step (forward, loss, backward, update).
    pub step_images_per_sec: f64,
    /// Images per second including waiting for data.
    pub wall_images_per_sec: f64,
    /// The weights file `mixdet detect` can load.
    pub weights: PathBuf,
    /// Records skipped in the data.
    pub issues: Vec<Issue>,
}

/// The statistics of one optimiser step.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// Total loss.
    pub loss: f32,
    /// Classification part.
    pub classification: f32,
    /// Regression part.
    pub regression: f32,
    /// Matched anchors.
    pub positives: usize,
}

/// One optimiser step as the run reports it.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// Steps done, this one included.
    pub step: u64,
    /// Zero-based epoch of the step's batch.
    pub epoch: u64,
    /// The step's losses and matched anchors.
    pub stats: StepStats,
    /// Learning rate of the step.
    pub lr: f64,
    /// Images per second including waiting for data.
    pub images_per_sec: f64,
}

/// What a training run tells its caller while it runs: the library reports, the caller decides
/// how to show it (the CLI draws a progress bar; [`train`] alone prints the messages to stderr).
pub trait Observer {
    /// The run will go up to step `last`, starting after step `first` (non-zero on a resume).
    fn start(&mut self, _first: u64, _last: u64) {}
    /// A line for the user: a skipped record, the weights loaded, an evaluation's AP.
    fn message(&mut self, line: &str) {
        eprintln!("{line}");
    }
    /// An optimiser step is done.
    fn step(&mut self, _report: &StepReport) {}
    /// The run is over.
    fn finish(&mut self) {}
}

/// Prints [`Observer::message`]s to stderr and nothing else.
#[derive(Debug, Default)]
pub struct Messages;

impl Observer for Messages {}

/// A detector with freshly initialised variables in a `VarMap` on `device`.
pub fn build_model(config: DetectorConfig, seed: u64, device: &Device) -> Result<(VarMap, SsdLite)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let model = SsdLite::load(config, vb)?;
    initialise(&varmap, seed)?;
    Ok((varmap, model))
}

/// The trainable parameters (running statistics excluded), sorted by name.
pub fn trainable_params(varmap: &VarMap, decay_norm_and_bias: bool) -> Result<Vec<Param>> {
    let data = varmap.data().lock().map_err(|_| TrainError::Invalid("variable map poisoned".into()))?;
    let mut params: Vec<Param> = data
        .iter()
        .filter(|(k, _)| !is_running_stat(k))
        .map(|(k, v)| Param { name: k.clone(), var: v.clone(), decay: decay_norm_and_bias || v.rank() > 1 })
        .collect();
    params.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(params)
}

/// Anchors of the detector's input size (grid sizes from a forward pass on zeros).
pub fn input_anchors(model: &SsdLite, device: &Device) -> Result<Arc<Vec<[f32; 4]>>> {
    let [h, w] = model.config().input_size;
    let out = model.forward_t(&Tensor::zeros((1, 3, h, w), DType::F32, device)?, false)?;
    Ok(model.anchors(&out.grid_sizes))
}

/// One optimiser step on a prepared batch, with the model on `device`.
pub fn train_step(
    model: &SsdLite,
    optimizer: &mut Optimizer,
    batch: &Batch,
    lr: f64,
    neg_to_pos: usize,
    device: &Device,
) -> Result<StepStats> {
    let [h, w] = model.config().input_size;
    let x = Tensor::from_slice(&batch.images, (batch.count, 3, h, w), device)?;
    let out = model.forward_t(&x, true)?;
    let class_loss = ClassLoss::for_family(model.config().family);
    let loss = ssd_loss(&out.cls_logits, &out.bbox_regression, &batch.targets, neg_to_pos, class_loss)?;
    let value = loss.total.to_scalar::<f32>()?;
    if !value.is_finite() {
        return Err(TrainError::Invalid(format!("loss is {value} (learning rate too high?)")));
    }
    let grads = loss.total.backward()?;
    optimizer.step(&grads, lr)?;
    Ok(StepStats {
        loss: value,
        classification: loss.classification,
        regression: loss.regression,
        positives: loss.num_positive,
    })
}

struct Log {
    file: std::fs::File,
    path: PathBuf,
}

impl Log {
    fn open(path: &Path, append: bool) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(path)
            .map_err(|source| TrainError::Io { path: path.display().to_string(), source })?;
        Ok(Self { file, path: path.to_path_buf() })
    }

    fn write(&mut self, v: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}").map_err(|source| TrainError::Io { path: self.path.display().to_string(), source })
    }
}

/// (step, value) points of one curve.
type Points = Vec<(f64, f64)>;

/// Loss and mAP points of earlier runs in the log, for the plot after a resume.
fn history(path: &Path, upto: u64) -> (Points, Points, Points) {
    let (mut loss, mut ap, mut ap50) = (Vec::new(), Vec::new(), Vec::new());
    let Ok(text) = std::fs::read_to_string(path) else { return (loss, ap, ap50) };
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let step = v["step"].as_u64().unwrap_or(u64::MAX);
        if step > upto {
            continue;
        }
        match v["type"].as_str() {
            Some("step") => loss.extend(v["loss"].as_f64().map(|l| (step as f64, l))),
            Some("eval") => {
                ap.extend(v["ap"].as_f64().map(|a| (step as f64, a)));
                ap50.extend(v["ap50"].as_f64().map(|a| (step as f64, a)));
            }
            _ => {}
        }
    }
    (loss, ap, ap50)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The state dict of `init_weights`: a weights file, or the name of a built-in detector with
/// built-in weights (`mixdet_detect::builtin_weights`) when no such file exists.
fn init_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        if let Some(sd) = path.to_str().and_then(mixdet_detect::builtin_weights::state_dict) {
            return Ok(sd?);
        }
    }
    Ok(mixdet_backbones::weights::read_state_dict(path)?)
}

/// The run's resolved config (overrides applied), so that a run can be repeated from its own
/// folder: written beside the checkpoint, atomically.
fn write_resolved_config(cfg: &TrainConfig, path: &Path) -> Result<()> {
    let io = |source| TrainError::Io { path: path.display().to_string(), source };
    let text =
        serde_json::to_string_pretty(cfg).map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Trains as `cfg` says, printing messages to stderr ([`Messages`]).
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<RunSummary> {
    train_observed(cfg, opts, &mut Messages)
}

/// Trains as `cfg` says, reporting to `obs`: [`Run::setup`] then [`Run::fit`].
pub fn train_observed(cfg: &TrainConfig, opts: &RunOptions, obs: &mut dyn Observer) -> Result<RunSummary> {
    Run::setup(cfg, opts, obs)?.fit(obs)
}

/// What a run writes into its folder besides the checkpoint: the JSONL log (steps, evaluations,
/// skipped records) and the loss / AP plot.
struct RunRecord {
    log: Log,
    plot_path: PathBuf,
    loss: Points,
    ap: Points,
    ap50: Points,
    seen: HashSet<(String, String)>,
    issues: Vec<Issue>,
}

impl RunRecord {
    fn open(out_dir: &Path, append: bool) -> Result<Self> {
        Ok(Self {
            log: Log::open(&out_dir.join("log.jsonl"), append)?,
            plot_path: out_dir.join("plot.png"),
            loss: Vec::new(),
            ap: Vec::new(),
            ap50: Vec::new(),
            seen: HashSet::new(),
            issues: Vec::new(),
        })
    }

    /// Reports a skipped record once (to the observer and the log).
    fn issue(&mut self, issue: &Issue, obs: &mut dyn Observer) -> Result<()> {
        if self.seen.insert((issue.file.clone(), issue.record.clone())) {
            obs.message(&format!("warning: {issue}"));
            self.issues.push(issue.clone());
            self.log.write(serde_json::json!({
                "type": "issue", "file": issue.file, "record": issue.record, "message": issue.message,
            }))?;
        }
        Ok(())
    }

    fn step(&mut self, r: &StepReport, images: usize, step_s: f64, elapsed_s: f64) -> Result<()> {
        self.loss.push((r.step as f64, r.stats.loss as f64));
        self.log.write(serde_json::json!({
            "type": "step", "step": r.step, "epoch": r.epoch, "loss": r.stats.loss, "cls": r.stats.classification,
            "reg": r.stats.regression, "lr": r.lr, "positives": r.stats.positives, "images": images,
            "step_images_per_s": images as f64 / step_s, "images_per_s": r.images_per_sec, "elapsed_s": elapsed_s,
        }))
    }

    fn eval(&mut self, pos: Position, r: &EvalResult) -> Result<()> {
        self.ap.push((pos.step as f64, r.stats[0]));
        self.ap50.push((pos.step as f64, r.stats[1]));
        self.log.write(serde_json::json!({
            "type": "eval", "step": pos.step, "epoch": pos.epoch, "ap": r.stats[0], "ap50": r.stats[1],
            "stats": r.stats, "images": r.images, "detections": r.detections,
        }))
    }

    fn plot(&self, x_max: u64) -> Result<()> {
        write_plot(
            &self.plot_path,
            &[Curve { name: "loss".into(), points: self.loss.clone() }],
            &[
                Curve { name: "AP".into(), points: self.ap.clone() },
                Curve { name: "AP50".into(), points: self.ap50.clone() },
            ],
            x_max as f64,
        )
    }
}

/// A training run, set up and ready to [`fit`](Run::fit): the detector with its initial weights
/// (fresh, a timm backbone, `init_weights`, or the checkpoint on a resume), the optimiser, the
/// data sets and the run folder (resolved config, log, plot, checkpoint).
pub struct Run<'a> {
    cfg: &'a TrainConfig,
    opts: &'a RunOptions,
    det_cfg: DetectorConfig,
    varmap: VarMap,
    model: SsdLite,
    optimizer: Optimizer,
    pos: Position,
    train_samples: Vec<Sample>,
    val_set: Option<Dataset>,
    record: RunRecord,
    anchors: Arc<Vec<[f32; 4]>>,
}

impl<'a> Run<'a> {
    /// Creates the run folder and writes the resolved config there, reads the data sets
    /// (reporting skipped records), builds the detector and loads its starting weights.
    pub fn setup(cfg: &'a TrainConfig, opts: &'a RunOptions, obs: &mut dyn Observer) -> Result<Self> {
        let det_cfg = DetectorConfig::resolve(&cfg.detector)?;
        let out_dir = &cfg.output_dir;
        std::fs::create_dir_all(out_dir)
            .map_err(|source| TrainError::Io { path: out_dir.display().to_string(), source })?;
        write_resolved_config(cfg, &out_dir.join("config.json"))?;
        let train_set = Dataset::load(&cfg.train.annotations, &cfg.train.images, det_cfg.num_classes)?;
        if train_set.samples.is_empty() {
            return Err(TrainError::Invalid(format!("{}: no usable training images", cfg.train.annotations.display())));
        }
        let val_set = match &cfg.val {
            Some(v) => Some(Dataset::load(&v.annotations, &v.images, det_cfg.num_classes)?),
            None => None,
        };
        let (varmap, model) = build_model(det_cfg.clone(), cfg.seed, &opts.device)?;
        let mut record = RunRecord::open(out_dir, opts.resume)?;
        for issue in train_set.issues.iter().chain(val_set.iter().flat_map(|v| v.issues.iter())) {
            record.issue(issue, obs)?;
        }
        if !opts.resume {
            if let Some(path) = &cfg.backbone_weights {
                load_backbone_weights(&varmap, &det_cfg, path, obs)?;
            }
            if let Some(path) = &cfg.init_weights {
                load_init_weights(&varmap, &det_cfg, cfg, path, obs)?;
            }
        }
        let anchors = input_anchors(&model, &opts.device)?;
        let params = trainable_params(&varmap, cfg.decay_norm_and_bias)?;
        let mut optimizer = Optimizer::new(cfg.optimizer, params);
        let mut pos = Position::default();
        if opts.resume {
            let ckpt_path = out_dir.join("checkpoint.safetensors");
            if !ckpt_path.is_file() {
                return Err(TrainError::Invalid(format!("--resume: {} does not exist", ckpt_path.display())));
            }
            pos = checkpoint::load(&varmap, &mut optimizer, &ckpt_path)?;
            obs.message(&format!(
                "resumed at step {} (epoch {}, batch {})",
                pos.step,
                pos.epoch + 1,
                pos.batch_in_epoch
            ));
            (record.loss, record.ap, record.ap50) = history(&out_dir.join("log.jsonl"), pos.step);
        }
        Ok(Self {
            cfg,
            opts,
            det_cfg,
            varmap,
            model,
            optimizer,
            pos,
            train_samples: train_set.samples,
            val_set,
            record,
            anchors,
        })
    }

    /// The detector being trained.
    pub fn model(&self) -> &SsdLite {
        &self.model
    }

    /// One optimiser step on a prepared batch at learning rate `lr`.
    pub fn step(&mut self, batch: &Batch, lr: f64) -> Result<StepStats> {
        train_step(&self.model, &mut self.optimizer, batch, lr, self.cfg.neg_to_pos, &self.opts.device)
    }

    /// Evaluates the detector on the validation split (none: `Ok(None)`), logging the result and
    /// reporting images that could not be read.
    pub fn evaluate(&mut self, obs: &mut dyn Observer) -> Result<Option<EvalResult>> {
        let Some(val) = &self.val_set else { return Ok(None) };
        let r =
            evaluate_detector(&self.model, &self.opts.device, val, self.cfg.batch_size, self.cfg.eval_score_threshold)?;
        self.record.eval(self.pos, &r)?;
        for issue in &r.issues {
            self.record.issue(issue, obs)?;
        }
        Ok(Some(r))
    }

    fn checkpoint(&self) -> Result<()> {
        let dir = &self.cfg.output_dir;
        checkpoint::save(
            &self.varmap,
            &self.optimizer,
            self.pos,
            &dir.join("model.safetensors"),
            &dir.join("checkpoint.safetensors"),
        )
    }

    /// Trains to the end of the schedule (or `max_steps`): the loader thread prepares batches one
    /// ahead, the run logs, checkpoints, evaluates every `eval_every_epochs` and at the end, and
    /// redraws the plot after each evaluation.
    pub fn fit(mut self, obs: &mut dyn Observer) -> Result<RunSummary> {
        let (cfg, opts) = (self.cfg, self.opts);
        let spec = LoaderSpec {
            samples: Arc::new(std::mem::take(&mut self.train_samples)),
            batch_size: cfg.batch_size,
            input_size: self.det_cfg.input_size,
            mean: self.det_cfg.image_mean,
            std: self.det_cfg.image_std,
            augment: cfg.augment,
            anchors: self.anchors.clone(),
            coder: BoxCoder::for_family(self.det_cfg.family),
            iou_threshold: cfg.iou_threshold,
            seed: cfg.seed,
            epochs: cfg.epochs,
            start: (self.pos.epoch, self.pos.batch_in_epoch),
        };
        let total_steps = spec.batches_per_epoch() * cfg.epochs;
        let stop_at =
            [Some(total_steps), cfg.max_steps, opts.max_steps].into_iter().flatten().min().unwrap_or(total_steps);
        let schedule = Schedule {
            base_lr: cfg.lr,
            min_lr: cfg.min_lr,
            warmup_steps: cfg.warmup_steps,
            warmup_factor: cfg.warmup_factor,
            total_steps,
        };
        obs.start(self.pos.step, stop_at);
        let mut last_eval = None;
        let mut last_loss = f32::NAN;
        let (mut step_rates, mut wall_rates) = (Vec::new(), Vec::new());
        let started = Instant::now();
        let (rx, producer) = loader::spawn(spec, cfg.prefetch_batches);
        let mut waited = Instant::now();
        while self.pos.step < stop_at {
            let Ok(batch) = rx.recv() else { break };
            for issue in &batch.issues {
                self.record.issue(issue, obs)?;
            }
            let epoch_end = batch.batch_in_epoch + 1 == batch.batches_in_epoch;
            let next = if epoch_end {
                Position { step: self.pos.step, epoch: batch.epoch + 1, batch_in_epoch: 0 }
            } else {
                Position { step: self.pos.step, epoch: batch.epoch, batch_in_epoch: batch.batch_in_epoch + 1 }
            };
            if batch.count > 0 {
                let lr = schedule.lr(self.pos.step);
                let t0 = Instant::now();
                // Not on a pool worker (`mixdet_detect::on_worker`): while waiting for a stolen
                // half of a parallel loop, a worker would pick up the loader's image decoding
                // and delay the step.
                let stats = self.step(&batch, lr)?;
                let step_s = t0.elapsed().as_secs_f64();
                let wall_s = waited.elapsed().as_secs_f64();
                waited = Instant::now();
                step_rates.push(batch.count as f64 / step_s);
                wall_rates.push(batch.count as f64 / wall_s);
                last_loss = stats.loss;
                self.pos = Position { step: self.pos.step + 1, ..next };
                let report = StepReport {
                    step: self.pos.step,
                    epoch: batch.epoch,
                    stats,
                    lr,
                    images_per_sec: batch.count as f64 / wall_s,
                };
                obs.step(&report);
                if self.pos.step.is_multiple_of(cfg.log_every_steps) || self.pos.step == 1 {
                    self.record.step(&report, batch.count, step_s, started.elapsed().as_secs_f64())?;
                }
                if self.pos.step.is_multiple_of(cfg.checkpoint_every_steps) {
                    self.checkpoint()?;
                }
            } else {
                self.pos = next;
            }
            let eval_due = epoch_end && cfg.eval_every_epochs > 0 && (batch.epoch + 1) % cfg.eval_every_epochs == 0;
            if eval_due && self.pos.step < stop_at {
                if let Some(r) = self.evaluate(obs)? {
                    obs.message(&format!("epoch {}: AP {:.4} AP50 {:.4}", batch.epoch + 1, r.stats[0], r.stats[1]));
                    last_eval = Some(r);
                }
                self.record.plot(stop_at)?;
            }
        }
        drop(rx);
        // The producer ends once the channel is closed; its panic would be a bug, not a data error.
        if producer.join().is_err() {
            return Err(TrainError::Invalid("the data loader thread panicked".into()));
        }
        self.checkpoint()?;
        if let Some(r) = self.evaluate(obs)? {
            obs.message(&format!("final: AP {:.4} AP50 {:.4}", r.stats[0], r.stats[1]));
            last_eval = Some(r);
        }
        self.record.plot(stop_at)?;
        obs.finish();
        let mut issues = std::mem::take(&mut self.record.issues);
        issues.sort_by(|a, b| (&a.file, &a.record).cmp(&(&b.file, &b.record)));
        Ok(RunSummary {
            steps: self.pos.step,
            last_loss,
            last_eval,
            step_images_per_sec: median(&mut step_rates),
            wall_images_per_sec: median(&mut wall_rates),
            weights: cfg.output_dir.join("model.safetensors"),
            issues,
        })
    }
}

/// Loads a timm backbone checkpoint into the detector's trunk.
fn load_backbone_weights(varmap: &VarMap, det_cfg: &DetectorConfig, path: &Path, obs: &mut dyn Observer) -> Result<()> {
    let spec = SsdLite::backbone_spec(det_cfg).map_err(|e| TrainError::Invalid(e.to_string()))?;
    if det_cfg.family == Family::TfOdApi {
        return Err(TrainError::Invalid(
            "backbone_weights: a tf_od_api detector's variables have TF names; start it from a whole \
             detector with init_weights (a built-in name, a converted .safetensors or the .pb)"
                .into(),
        ));
    }
    if !matches!(spec.architecture, Architecture::EfficientNet(_)) {
        return Err(TrainError::Invalid(
            "backbone_weights: only timm (EfficientNet-family) trunks are supported; torchvision MobileNetV3 \
             weights load through the detector's own key layout"
                .into(),
        ));
    }
    let sd = mixdet_backbones::weights::read_state_dict(path)?;
    let r = load_backbone(varmap, &sd, "backbone.body.", path)?;
    if r.loaded == 0 {
        return Err(TrainError::Invalid(format!(
            "{}: no tensor matches the {} trunk",
            path.display(),
            det_cfg.backbone
        )));
    }
    obs.message(&format!(
        "backbone: {} tensors from {} ({} unused, {} left initialised)",
        r.loaded,
        path.display(),
        r.unused.len(),
        r.missing.len()
    ));
    Ok(())
}

/// Loads whole-detector weights (`init_weights`, renamed by `init_rename`, `init_new` left fresh).
fn load_init_weights(
    varmap: &VarMap,
    det_cfg: &DetectorConfig,
    cfg: &TrainConfig,
    path: &Path,
    obs: &mut dyn Observer,
) -> Result<()> {
    let mut sd: HashMap<String, Tensor> = HashMap::new();
    for (k, t) in init_state_dict(path)? {
        let renamed = cfg.init_key(&k);
        // Two keys renamed onto one name would silently drop a tensor.
        if sd.insert(renamed.clone(), t).is_some() {
            return Err(TrainError::Invalid(format!(
                "{}: init_rename maps two keys onto {renamed} (rename every level that shifts)",
                path.display()
            )));
        }
    }
    // A single-kernel checkpoint for a MixConv detector: its kernels are centred in the larger
    // ones (a no-op when the layouts already agree).
    let sd = mixdet_detect::mixconv_init::embed_depthwise_kernels(det_cfg, &sd)?;
    let mut r = load_backbone(varmap, &sd, "", path)?;
    let missing_before = r.missing.len();
    r.missing.retain(|m| !cfg.init_new.iter().any(|p| m.starts_with(p.as_str())));
    let fresh = missing_before - r.missing.len();
    if !r.missing.is_empty() || !r.unused.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: not a {} detector's weights ({} of its variables missing, e.g. {:?}; {} unknown keys, e.g. {:?}); init_rename and init_new adapt a related layout",
            path.display(),
            det_cfg.backbone,
            r.missing.len(),
            r.missing.first(),
            r.unused.len(),
            r.unused.first()
        )));
    }
    obs.message(&format!(
        "initial weights: {} tensors from {} ({fresh} new left initialised)",
        r.loaded,
        path.display()
    ));
    Ok(())
}
