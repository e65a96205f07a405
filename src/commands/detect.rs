//! `mixdet detect`: the main job. Detects objects in images, folders and globs; writes overlays,
//! COCO-format results and a per-image summary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;

use super::detector_args::DetectorArgs;
use mixdet::parts::{self, PartDetection, PartHeader, PartRecord, PartStart, PartWriter, ResultRecord, RunSettings};
use mixdet::shard::Shard;
use mixdet::viz::draw_detections;
use mixdet::DetectOptions;
use mixdet_detect::batch::{self as pipeline, Detected, ImageOutcome};

/// Arguments of `mixdet detect`.
#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    /// Image files, folders (add -r for subfolders) or glob patterns; JPEG, PNG, WebP, BMP.
    #[arg(required_unless_present = "manifest")]
    pub paths: Vec<PathBuf>,
    /// A text file of image paths, one per line (blank lines and `#` comments skipped), read
    /// instead of PATHs: the input list, in this order, of a sharded run.
    #[arg(long, value_name = "LIST.txt", conflicts_with = "paths")]
    pub manifest: Option<PathBuf>,
    /// Descend into subfolders.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub detector: DetectorArgs,
    /// Folder for the overlays (created if needed; inputs are never overwritten).
    #[arg(long, default_value = "runs/detect")]
    pub out: PathBuf,
    /// Keep detections scoring at least this (overlays, JSON and summary): a default and
    /// per-class values, `0.3`, `0.3,person=0.5` (class names or label indices).
    #[arg(long, default_value = "0.3", value_name = "T[,CLASS=T]...")]
    pub score_threshold: String,
    /// Keep only these classes (names or label indices, comma-separated), in every output.
    #[arg(long, value_name = "CLASS,..")]
    pub classes: Option<String>,
    /// NMS IoU threshold (default: the model's).
    #[arg(long)]
    pub iou_threshold: Option<f32>,
    /// Detections kept per image after NMS (default: the model's).
    #[arg(long)]
    pub max_detections: Option<usize>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Write the detections as a COCO results file (`[{image_id, category_id, bbox, score}]`).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// COCO instances file whose image ids (matched by file name) the JSON uses.
    #[arg(long, value_name = "FILE")]
    pub gt: Option<PathBuf>,
    /// Do not write overlay images.
    #[arg(long)]
    pub no_overlay: bool,
    /// Write one JSON line per image as soon as it is done (`-`: standard output, the per-image
    /// summary then goes to standard error): index, path, size, detections (box x1 y1 x2 y2 in
    /// pixels, score, label, name) or the error.
    #[arg(long, value_name = "FILE|-")]
    pub jsonl: Option<PathBuf>,
    /// Write YOLO-format labels per image into OUT/labels/<name>.txt (`class cx cy w h`,
    /// normalised; class = label index - 1, names in OUT/labels/classes.txt).
    #[arg(long)]
    pub save_txt: bool,
    /// Sliced inference for small objects: detect on overlapping SIZE x SIZE tiles (at least 32)
    /// and merge the tiles' detections by class-aware NMS.
    #[arg(long, value_name = "SIZE")]
    pub tile: Option<u32>,
    /// Fraction of a tile its neighbours overlap, in [0, 1).
    #[arg(long, value_name = "F", default_value_t = 0.2, requires = "tile")]
    pub tile_overlap: f32,
    /// With --tile, also detect on the whole image (for objects larger than a tile).
    #[arg(long, requires = "tile")]
    pub tile_full: bool,
    /// Save each detection's crop as DIR/<class>/<image stem>_<rank>.jpg.
    #[arg(long, value_name = "DIR")]
    pub save_crops: Option<PathBuf>,
    #[command(flatten)]
    pub sharding: ShardArgs,
}

/// Splitting one job over many processes (`mixdet detect`, then `mixdet merge`).
#[derive(clap::Args, Debug, Clone)]
pub struct ShardArgs {
    /// This process's shard (0-based) of `--num-shards`; without it, taken from the scheduler's
    /// environment (MIXDET_SHARD, SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, RANK; see the README).
    #[arg(long, value_name = "I")]
    pub shard: Option<usize>,
    /// Number of shards the input list is split into (contiguous, balanced by count).
    #[arg(long, value_name = "N")]
    pub num_shards: Option<usize>,
    /// Write results as they are produced to DIR/part-IIIII-of-NNNNN.jsonl (committed at
    /// checkpoints; `mixdet merge DIR` writes the COCO results file).
    #[arg(long, value_name = "DIR")]
    pub parts: Option<PathBuf>,
    /// Continue this shard's interrupted part (or skip it when complete); refuses a part of
    /// another run (model, weights, inputs or settings).
    #[arg(long, requires = "parts")]
    pub resume: bool,
    /// Commit the part every this many images (and at least once a minute).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub checkpoint_every: usize,
}

impl ShardArgs {
    /// This process's shard: from the flags, else the scheduler's environment ([`Shard::resolve`]).
    pub fn shard(&self) -> Result<Option<Shard>> {
        Ok(Shard::resolve(self.shard, self.num_shards, |k| std::env::var(k).ok())?)
    }
}

/// Image ids by file name from a COCO instances file.
pub fn image_ids_by_file_name(gt: &Path) -> Result<HashMap<String, i64>> {
    Ok(ids_by_file_name(&mixdet_coco::GroundTruth::from_path(gt)?))
}

/// Image ids by file name of ground truth already read.
pub fn ids_by_file_name(gt: &mixdet_coco::GroundTruth) -> HashMap<String, i64> {
    gt.images.iter().filter_map(|i| i.file_name.as_ref().map(|f| (file_name_key(Path::new(f)), i.id))).collect()
}

fn file_name_key(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `cat.jpg: 1 cat, 2 dog` counts, in label order.
fn summary(det: &Detected, labels: &[String]) -> String {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for &l in &det.detections.labels {
        *counts.entry(l).or_default() += 1;
    }
    if counts.is_empty() {
        return "no detections".into();
    }
    counts
        .iter()
        .map(|(&l, &n)| format!("{n} {}", labels.get(l as usize).map_or("?", String::as_str)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Draws `found` on `img` and saves it as `input`'s overlay in `out`; the error names the file.
fn save_overlay(
    img: &mut image::RgbImage,
    found: &[mixdet::Detection],
    out: &Path,
    input: &Path,
    used: &mut HashSet<PathBuf>,
    inputs: &HashSet<PathBuf>,
) -> std::result::Result<(), String> {
    draw_detections(img, found);
    let path = overlay_path(out, input, used, inputs);
    img.save(&path).map_err(|e| format!("{}: cannot write overlay: {e}", path.display()))
}

/// Picks `out/<name>` (or `<stem>_<n>.<ext>` on a clash), never one of the inputs.
fn overlay_path(out: &Path, input: &Path, used: &mut HashSet<PathBuf>, inputs: &HashSet<PathBuf>) -> PathBuf {
    let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let ext = match input.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some(e @ ("jpg" | "jpeg" | "png" | "bmp")) => e.to_string(),
        _ => "png".into(),
    };
    unique_path(out, &stem, &ext, used, inputs)
}

/// A shard of `mixdet eval --images`: the data set's images (by id) with the model's own
/// post-processing thresholds (low, for a complete precision-recall curve), no overlays.
pub fn run_shard_of(
    detector: &super::detector_args::DetectorArgs,
    batch: usize,
    files: Vec<PathBuf>,
    shard: Option<Shard>,
    sharding: &ShardArgs,
    parts: &Path,
) -> Result<ExitCode> {
    let config = mixdet_detect::DetectorConfig::resolve(&detector.model)?;
    let args = DetectArgs {
        paths: Vec::new(),
        manifest: None,
        recursive: false,
        detector: detector.clone(),
        out: PathBuf::from("runs/detect"),
        score_threshold: config.postprocess.score_thresh.clamp(0.0, 1.0).to_string(),
        classes: None,
        jsonl: None,
        save_txt: false,
        save_crops: None,
        tile: None,
        tile_overlap: 0.2,
        tile_full: false,
        iou_threshold: None,
        max_detections: None,
        batch,
        json: None,
        gt: None,
        no_overlay: true,
        sharding: sharding.clone(),
    };
    run_shard(&args, files, shard.unwrap_or(Shard { index: 0, count: 1 }), parts)
}

/// The detector with the command line's thresholds and classes (checked against its labels).
fn load_detector(args: &DetectArgs) -> Result<mixdet::Detector> {
    let detector = args.detector.load()?;
    let labels = detector.labels().to_vec();
    let mut options =
        DetectOptions::default().with_score_spec(&args.score_threshold, &labels).context("--score-threshold")?;
    if let Some(classes) = &args.classes {
        options = options.with_class_spec(classes, &labels).context("--classes")?;
    }
    if let Some(t) = args.iou_threshold {
        options = options.with_iou_threshold(t).context("--iou-threshold")?;
    }
    if let Some(m) = args.max_detections {
        options = options.with_max_detections(m).context("--max-detections")?;
    }
    Ok(detector.with_options(options))
}

/// SHA-256 of the weights a run uses: the file given, else the built-in ones.
fn weights_fingerprint(args: &DetectArgs) -> Result<String> {
    match &args.detector.weights {
        Some(path) => Ok(parts::sha256_file(path)?),
        None => match mixdet_detect::builtin_weights::raw_bytes(&args.detector.model) {
            Some(bytes) => Ok(parts::sha256_hex(bytes)),
            None => bail!("{}: no weights to fingerprint (pass --weights)", args.detector.model),
        },
    }
}

/// One shard of a sharded run: the shard's share of `files`, results streamed into its part.
fn run_shard(args: &DetectArgs, files: Vec<PathBuf>, shard: Shard, dir: &Path) -> Result<ExitCode> {
    let range = shard.range(files.len());
    let detector = load_detector(args)?;
    let (model, device) = (detector.model(), detector.device());
    let post = detector.options().postprocess(&model.config().postprocess);
    let header = PartHeader {
        mixdet_part: parts::PART_FORMAT,
        shard: shard.index,
        first: range.start,
        images: range.len(),
        settings: RunSettings {
            model: args.detector.model.clone(),
            weights_sha256: weights_fingerprint(args)?,
            inputs_sha256: parts::sha256_paths(&files),
            inputs: files.len(),
            num_shards: shard.count,
            score_threshold: detector.options().score_threshold(),
            class_thresholds: detector.options().class_score_thresholds().to_vec(),
            classes: detector.options().classes().map(<[usize]>::to_vec),
            iou_threshold: post.nms_thresh,
            max_detections: post.detections_per_img,
            batch: args.batch,
            device: args.detector.device.clone(),
        },
    };
    let name = format!("shard {}/{}", shard.index, shard.count);
    let (mut writer, done) = match PartWriter::start(dir, &header, args.sharding.resume)? {
        PartStart::Complete(path) => {
            eprintln!("{name}: complete already ({}), nothing to do", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        PartStart::Write(w, done) => (w, done),
    };
    if done > 0 {
        eprintln!("{name}: resuming after {done} committed images of {}", range.len());
    }
    let todo = &files[range.start + done..range.end];
    let offset = range.start + done;
    let out = args.out.join(format!("part-{}", shard.tag()));
    if !args.no_overlay && !todo.is_empty() {
        std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create folder", out.display()))?;
    }
    let inputs: HashSet<PathBuf> = todo.iter().filter_map(|f| std::fs::canonicalize(f).ok()).collect();
    let labels = model.config().labels.clone();
    let started = std::time::Instant::now();
    let mut last_commit = std::time::Instant::now();
    let mut used = HashSet::new();
    // Outcomes arrive per batch, failures first: lines go out in input order.
    let mut pending: BTreeMap<usize, PartRecord> = BTreeMap::new();
    let mut next = offset;
    let mut since_commit = 0usize;
    // Unreadable images are recorded in the part and counted by `merge`; they do not fail the
    // shard (a scheduler would retry it for nothing). Overlays that cannot be written do.
    let mut overlay_failures = 0usize;
    let mut error: Option<anyhow::Error> = None;
    let every = args.sharding.checkpoint_every.max(1);
    let total = range.len();
    let timings = pipeline::run(model, device, todo, args.batch, &post, !args.no_overlay, |o: ImageOutcome| {
        if error.is_some() {
            return;
        }
        let index = offset + o.index;
        let path = o.path.display().to_string();
        let record = match o.result {
            Err(e) => {
                eprintln!("error: {e:#}");
                PartRecord { index, path, size: [0, 0], detections: Vec::new(), error: Some(e.reason()) }
            }
            Ok(mut det) => {
                detector.options().retain(&mut det.detections);
                println!("{path}: {} ({:.1} ms)", summary(&det, &labels), o.total_ms);
                if let Some(img) = det.image.as_mut() {
                    if let Err(e) =
                        save_overlay(img, &detector.detections(&det.detections), &out, &o.path, &mut used, &inputs)
                    {
                        overlay_failures += 1;
                        eprintln!("error: {e}");
                    }
                }
                let found: Vec<PartDetection> = det
                    .detections
                    .coco_boxes()
                    .map(|(category_id, bbox, score)| PartDetection { category_id, bbox, score })
                    .collect();
                PartRecord { index, path, size: det.size, detections: found, error: None }
            }
        };
        pending.insert(index, record);
        while let Some(r) = pending.remove(&next) {
            if let Err(e) = writer.append(&r) {
                error = Some(e.into());
                return;
            }
            next += 1;
            since_commit += 1;
        }
        if since_commit >= every || last_commit.elapsed().as_secs() >= 60 {
            if let Err(e) = writer.checkpoint() {
                error = Some(e.into());
                return;
            }
            since_commit = 0;
            last_commit = std::time::Instant::now();
            let finished = writer.committed();
            let rate = (finished - done) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let eta = (total - finished) as f64 / rate.max(1e-9);
            eprintln!(
                "{name}: {finished}/{total} images ({:.1} %), {rate:.1} images/s, eta {eta:.0} s",
                100.0 * finished as f64 / total.max(1) as f64
            );
        }
    })?;
    if let Some(e) = error {
        return Err(e.context(format!("{name}: writing the part in {}", dir.display())));
    }
    let footer = writer.finish()?;
    let (final_path, _, _) = parts::part_paths(dir, shard);
    eprintln!(
        "{name} done: {} images ({done} resumed), {} failed, {} detections, {:.1} s ({:.1} images/s), inference {:.1} ms/image; part {}",
        footer.images,
        footer.failed,
        footer.detections,
        started.elapsed().as_secs_f64(),
        (footer.images - done) as f64 / started.elapsed().as_secs_f64().max(1e-9),
        timings.inference_ms / timings.images.max(1) as f64,
        final_path.display()
    );
    Ok(if overlay_failures > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Runs `mixdet detect`.
pub fn run(args: DetectArgs) -> Result<ExitCode> {
    let stdin = args.manifest.is_none() && args.paths.len() == 1 && args.paths[0].as_os_str() == "-";
    let files = match &args.manifest {
        Some(m) => crate::inputs::read_manifest(m)?,
        None if stdin => Vec::new(),
        None => crate::inputs::expand(&args.paths, args.recursive)?,
    };
    let shard = args.sharding.shard()?;
    if let Some(parts) = &args.sharding.parts {
        if stdin {
            bail!("detect - with --parts: shards split a list known in advance; pass it as --manifest LIST.txt");
        }
        let unsupported: Vec<&str> = [
            (args.jsonl.is_some(), "--jsonl"),
            (args.save_txt, "--save-txt"),
            (args.save_crops.is_some(), "--save-crops"),
            (args.tile.is_some(), "--tile"),
        ]
        .into_iter()
        .filter_map(|(on, flag)| on.then_some(flag))
        .collect();
        if !unsupported.is_empty() {
            bail!("{} with --parts: a sharded run writes its results as parts only", unsupported.join(", "));
        }
        if args.json.is_some() {
            bail!(
                "--json and --parts: a sharded run writes parts; `mixdet merge {} --json FILE` writes the results file",
                parts.display()
            );
        }
        return run_shard(&args, files, shard.unwrap_or(Shard { index: 0, count: 1 }), parts);
    }
    if let Some(shard) = shard {
        bail!(
            "shard {} of {} (from the flags or the scheduler's environment) needs --parts DIR: each shard writes its part, \
             then `mixdet merge DIR --json FILE` joins them",
            shard.index,
            shard.count
        );
    }
    run_streams(&args, files, stdin)
}

/// Where a plain (unsharded) run writes, image by image.
struct Outputs<'a> {
    args: &'a DetectArgs,
    detector: &'a mixdet::Detector,
    ids: Option<HashMap<String, i64>>,
    inputs: HashSet<PathBuf>,
    used: HashSet<PathBuf>,
    records: Vec<(usize, Vec<ResultRecord>)>,
    jsonl: Option<Box<dyn std::io::Write>>,
    summaries_to_stderr: bool,
    failures: usize,
    missing_ids: usize,
    images: usize,
}

impl Outputs<'_> {
    fn image(&mut self, index: usize, o: ImageOutcome, progress: &ProgressBar) -> Result<()> {
        self.images += 1;
        let name = o.path.display().to_string();
        let mut det = match o.result {
            Ok(d) => d,
            Err(e) => {
                self.failures += 1;
                progress.suspend(|| eprintln!("error: {e:#}"));
                if let Some(w) = self.jsonl.as_mut() {
                    let line = serde_json::json!({"index": index, "path": name, "error": e.reason()});
                    writeln!(w, "{line}").and_then(|_| w.flush()).context("writing --jsonl")?;
                }
                return Ok(());
            }
        };
        self.detector.options().retain(&mut det.detections);
        let labels = self.detector.labels();
        let line = format!("{name}: {} ({:.1} ms)", summary(&det, labels), o.total_ms);
        if self.summaries_to_stderr {
            progress.suspend(|| eprintln!("{line}"));
        } else {
            progress.suspend(|| println!("{line}"));
        }
        let found = self.detector.detections(&det.detections);
        if let Some(w) = self.jsonl.as_mut() {
            let dets: Vec<serde_json::Value> = found
                .iter()
                .map(|d| serde_json::json!({"bbox": d.bbox, "score": d.score, "label": d.label, "name": d.name}))
                .collect();
            let line = serde_json::json!({"index": index, "path": name, "size": det.size, "detections": dets});
            writeln!(w, "{line}").and_then(|_| w.flush()).context("writing --jsonl")?;
        }
        let stem = o.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
        if self.args.save_txt {
            let [w, h] = det.size.map(|v| v.max(1) as f32);
            let text: String = found
                .iter()
                .map(|d| {
                    let b = d.bbox;
                    let (cx, cy) = ((b[0] + b[2]) / 2.0 / w, (b[1] + b[3]) / 2.0 / h);
                    let (bw, bh) = ((b[2] - b[0]) / w, (b[3] - b[1]) / h);
                    format!("{} {cx:.6} {cy:.6} {bw:.6} {bh:.6}\n", d.label.saturating_sub(1))
                })
                .collect();
            let path = unique_path(&self.args.out.join("labels"), &stem, "txt", &mut self.used, &self.inputs);
            crate::output::write_bytes(&path, text.as_bytes())?;
        }
        if let (Some(dir), Some(img)) = (&self.args.save_crops, det.image.as_ref()) {
            for (rank, d) in found.iter().enumerate() {
                let b = d.bbox;
                let (x0, y0) = (b[0].floor().max(0.0) as u32, b[1].floor().max(0.0) as u32);
                let (x1, y1) =
                    (b[2].ceil().min(img.width() as f32) as u32, b[3].ceil().min(img.height() as f32) as u32);
                if x1 <= x0 || y1 <= y0 {
                    continue;
                }
                let crop = image::imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image();
                let class_dir = dir.join(d.name.replace(['/', '\\'], "_"));
                std::fs::create_dir_all(&class_dir)
                    .with_context(|| format!("{}: cannot create folder", class_dir.display()))?;
                let path = unique_path(&class_dir, &format!("{stem}_{rank}"), "jpg", &mut self.used, &self.inputs);
                if let Err(e) = crop.save(&path) {
                    self.failures += 1;
                    progress.suspend(|| eprintln!("error: {}: cannot write crop: {e}", path.display()));
                }
            }
        }
        if !self.args.no_overlay {
            if let Some(img) = det.image.as_mut() {
                if let Err(e) = save_overlay(img, &found, &self.args.out, &o.path, &mut self.used, &self.inputs) {
                    self.failures += 1;
                    progress.suspend(|| eprintln!("error: {e}"));
                }
            }
        }
        if self.args.json.is_some() {
            let file_name = file_name_key(&o.path);
            let image_id = match &self.ids {
                Some(map) => match map.get(&file_name) {
                    Some(&id) => id,
                    None => {
                        self.missing_ids += 1;
                        return Ok(());
                    }
                },
                None => index as i64 + 1,
            };
            let recs = det
                .detections
                .coco_boxes()
                .map(|(category_id, bbox, score)| ResultRecord {
                    image_id,
                    category_id,
                    bbox,
                    score,
                    file_name: self.ids.is_none().then(|| file_name.clone()),
                })
                .collect();
            self.records.push((index, recs));
        }
        Ok(())
    }
}

/// `out/<stem>.<ext>`, or `<stem>_<n>.<ext>` when that name was used in this run or is an input.
fn unique_path(dir: &Path, stem: &str, ext: &str, used: &mut HashSet<PathBuf>, inputs: &HashSet<PathBuf>) -> PathBuf {
    for n in 0.. {
        let name = if n == 0 { format!("{stem}.{ext}") } else { format!("{stem}_{n}.{ext}") };
        let p = dir.join(name);
        let canonical = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if !used.contains(&p) && !inputs.contains(&canonical) {
            used.insert(p.clone());
            return p;
        }
    }
    unreachable!("an unbounded counter always finds a free name")
}

/// Paths from standard input, a block at a time (so that memory does not grow with the count).
fn stdin_block(lines: &mut impl Iterator<Item = std::io::Result<String>>, max: usize) -> Result<Vec<PathBuf>> {
    let mut block = Vec::new();
    for line in lines.by_ref() {
        let line = line.context("reading paths from standard input")?;
        let line = line.trim();
        if !line.is_empty() {
            block.push(PathBuf::from(line));
        }
        if block.len() == max {
            break;
        }
    }
    Ok(block)
}

/// A plain run over `files`, or over the paths read from standard input when `stdin`.
fn run_streams(args: &DetectArgs, files: Vec<PathBuf>, stdin: bool) -> Result<ExitCode> {
    let tiles = match args.tile {
        Some(size) => Some(
            mixdet::detect::TileOptions::new(size)
                .and_then(|t| t.with_overlap(args.tile_overlap))
                .map(|t| t.with_full_image(args.tile_full))
                .context("--tile")?,
        ),
        None => None,
    };
    let detector = load_detector(args)?;
    let (model, device) = (detector.model(), detector.device());
    let post = detector.options().postprocess(&model.config().postprocess);
    let ids = match &args.gt {
        Some(gt) => Some(image_ids_by_file_name(gt).with_context(|| format!("{}: reading image ids", gt.display()))?),
        None => None,
    };
    if !args.no_overlay {
        std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create folder", args.out.display()))?;
    }
    if args.save_txt {
        let dir = args.out.join("labels");
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
        let names: String = detector.labels().iter().skip(1).map(|l| format!("{l}\n")).collect();
        crate::output::write_bytes(&dir.join("classes.txt"), names.as_bytes())?;
    }
    let to_stdout = args.jsonl.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let jsonl: Option<Box<dyn std::io::Write>> = match &args.jsonl {
        None => None,
        Some(_) if to_stdout => Some(Box::new(std::io::stdout())),
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("{}: cannot write", path.display()))?,
        ))),
    };
    let mut outputs = Outputs {
        args,
        detector: &detector,
        ids,
        inputs: files.iter().filter_map(|f| std::fs::canonicalize(f).ok()).collect(),
        used: HashSet::new(),
        records: Vec::new(),
        jsonl,
        summaries_to_stderr: to_stdout,
        failures: 0,
        missing_ids: 0,
        images: 0,
    };
    let progress = if files.len() > 4 { super::image_progress(files.len()) } else { ProgressBar::hidden() };
    let keep_images = !args.no_overlay || args.save_crops.is_some();
    let mut timings = pipeline::Timings::default();
    let mut error: Option<anyhow::Error> = None;
    let mut run_block = |block: &[PathBuf], offset: usize, outputs: &mut Outputs| -> Result<()> {
        if let Some(tiles) = &tiles {
            for (i, path) in block.iter().enumerate() {
                progress.inc(1);
                let start = std::time::Instant::now();
                let result = match mixdet_detect::load_rgb(path) {
                    Ok(img) => {
                        let found = detector.detect_tiled(&img, tiles)?;
                        let mut d = mixdet_detect::Detections::default();
                        for f in &found {
                            d.boxes.push(f.bbox);
                            d.scores.push(f.score);
                            d.labels.push(f.label as i64);
                        }
                        let size = [img.width(), img.height()];
                        Ok(pipeline::Detected { detections: d, image: keep_images.then_some(img), size })
                    }
                    Err(e) => Err(e),
                };
                let total_ms = start.elapsed().as_secs_f64() * 1e3;
                timings.inference_ms += total_ms;
                timings.images += 1;
                let o = ImageOutcome { index: i, path: path.clone(), result, total_ms };
                outputs.image(offset + i, o, &progress)?;
            }
            return Ok(());
        }
        let t = pipeline::run(model, device, block, args.batch, &post, keep_images, |o: ImageOutcome| {
            progress.inc(1);
            if error.is_none() {
                if let Err(e) = outputs.image(offset + o.index, o, &progress) {
                    error = Some(e);
                }
            }
        })?;
        if let Some(e) = error.take() {
            return Err(e);
        }
        timings.preprocess_ms += t.preprocess_ms;
        timings.inference_ms += t.inference_ms;
        timings.postprocess_ms += t.postprocess_ms;
        timings.images += t.images;
        Ok(())
    };
    if stdin {
        // Blocks of paths: the pipeline's prefetch restarts per block, memory stays bounded.
        let mut lines = std::io::stdin().lock().lines();
        let mut offset = 0;
        loop {
            let block = stdin_block(&mut lines, 512)?;
            if block.is_empty() {
                break;
            }
            run_block(&block, offset, &mut outputs)?;
            offset += block.len();
        }
    } else {
        run_block(&files, 0, &mut outputs)?;
    }
    progress.finish_and_clear();
    let say = |line: String| if to_stdout { eprintln!("{line}") } else { println!("{line}") };
    if let Some(path) = &args.json {
        outputs.records.sort_by_key(|(i, _)| *i);
        let all: Vec<&ResultRecord> = outputs.records.iter().flat_map(|(_, r)| r).collect();
        crate::output::write_json(path, &all)?;
        say(format!("Results: {} detections written to {}", all.len(), path.display()));
        if outputs.missing_ids > 0 {
            eprintln!(
                "warning: {} image(s) are not in the --gt file and were left out of the JSON",
                outputs.missing_ids
            );
        }
    }
    let n = timings.images.max(1) as f64;
    let [h, w] = model.config().input_size;
    say(format!(
        "Speed: {:.1}ms preprocess, {:.1}ms inference, {:.1}ms postprocess per image at shape ({}, 3, {h}, {w})",
        timings.preprocess_ms / n,
        timings.inference_ms / n,
        timings.postprocess_ms / n,
        args.batch
    ));
    if !args.no_overlay {
        say(format!("Overlays saved to {}", args.out.display()));
    }
    if outputs.failures > 0 {
        eprintln!("{} of {} images failed", outputs.failures, outputs.images);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
