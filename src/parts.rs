//! Detection results written as they are produced, one part file per shard, committed at
//! checkpoints, resumable, and merged into one COCO results file.
//!
//! A shard writes `part-IIIII-of-NNNNN.jsonl.partial`: a header line (the shard and the run's
//! settings: model, a SHA-256 of the weights and of the input list, thresholds, batch), then one
//! line per image in input order (`index` in the whole list, path, size, detections or the error),
//! and keeps `part-IIIII-of-NNNNN.state.json` beside it, which records how many bytes and images
//! of the part are committed. A checkpoint flushes and syncs the part, then replaces the state
//! file atomically (write, sync, rename). A shard killed at any moment leaves at most the lines
//! after its last checkpoint uncommitted; `--resume` cuts them off and continues after the last
//! committed image. At the end a footer line is added and the part is renamed to
//! `part-IIIII-of-NNNNN.jsonl`: a part under its final name is always complete.
//!
//! [`merge`] reads the parts of a folder in shard order, checks that every shard is there,
//! complete and from the same run, and streams the COCO results, byte for byte what one `mixdet
//! detect --json` over the whole list writes.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::shard::Shard;

/// Version of the part format.
pub const PART_FORMAT: u32 = 1;

/// What a part's results depend on; `--resume` and [`merge`] refuse parts whose settings differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Detector name or config path, as given.
    pub model: String,
    /// SHA-256 of the weights (the file given, or the built-in weights).
    pub weights_sha256: String,
    /// SHA-256 of the whole input list (paths, one per line, in order).
    pub inputs_sha256: String,
    /// Images in the whole list.
    pub inputs: usize,
    /// Number of shards the list is split into.
    pub num_shards: usize,
    /// Detections kept from this score (classes without a threshold of their own).
    pub score_threshold: f32,
    /// Per-class score thresholds, by label.
    #[serde(default)]
    pub class_thresholds: Vec<(usize, f32)>,
    /// The classes kept (`None`: all).
    #[serde(default)]
    pub classes: Option<Vec<usize>>,
    /// NMS IoU threshold.
    pub iou_threshold: f32,
    /// Detections kept per image.
    pub max_detections: usize,
    /// Images per forward pass.
    pub batch: usize,
    /// Device the shard runs on.
    pub device: String,
}

/// The first line of a part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartHeader {
    /// [`PART_FORMAT`].
    pub mixdet_part: u32,
    /// This part's shard index.
    pub shard: usize,
    /// Position of the shard's first image in the whole list.
    pub first: usize,
    /// Images in the shard.
    pub images: usize,
    /// The run's settings.
    pub settings: RunSettings,
}

/// One detection in a part: the COCO result fields without the image id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartDetection {
    /// Category id.
    pub category_id: i64,
    /// `[x, y, width, height]` in image pixels.
    pub bbox: [f64; 4],
    /// Score.
    pub score: f64,
}

/// One image in a part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    /// Position in the whole input list.
    pub index: usize,
    /// The image file.
    pub path: String,
    /// Width and height in pixels (0, 0 when it could not be read).
    pub size: [u32; 2],
    /// Detections above the score threshold, best first.
    pub detections: Vec<PartDetection>,
    /// Why the image could not be read, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The last line of a complete part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartFooter {
    /// Always true.
    pub done: bool,
    /// Image lines in the part.
    pub images: usize,
    /// Of which could not be read.
    pub failed: usize,
    /// Detections in the part.
    pub detections: usize,
}

/// The committed extent of a part being written.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct PartState {
    bytes: u64,
    images: usize,
    failed: usize,
    detections: usize,
}

/// One COCO result record, as `mixdet detect --json` and [`merge`] write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// Image id: from the ground truth's file names, else the 1-based position in the input list.
    pub image_id: i64,
    /// Category id.
    pub category_id: i64,
    /// `[x, y, width, height]`.
    pub bbox: [f64; 4],
    /// Score.
    pub score: f64,
    /// The image's file name, when ids are positions (no ground truth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

/// What went wrong with parts.
#[derive(Debug, thiserror::Error)]
pub enum PartsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A part or state file is not what this version writes.
    #[error("{path}: line {line}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line (0: the file as a whole).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A part of another run (or shard layout).
    #[error("{path}: written by another run ({what}); results of different runs are not mixed")]
    Mismatch {
        /// The part.
        path: PathBuf,
        /// Which setting differs, with both values.
        what: String,
    },
    /// The part exists already.
    #[error("{path}: {message}")]
    Exists {
        /// The file.
        path: PathBuf,
        /// What to do.
        message: String,
    },
    /// Not every shard is complete.
    #[error("{dir}: {message}")]
    Incomplete {
        /// The parts folder.
        dir: PathBuf,
        /// Which shards are missing or partial.
        message: String,
    },
}

type Result<T> = std::result::Result<T, PartsError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PartsError + '_ {
    move |source| PartsError::Io { path: path.to_path_buf(), source }
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of a file's contents, hex, read in blocks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// SHA-256 of an input list (each path and a newline, in order).
pub fn sha256_paths(paths: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    for p in paths {
        h.update(p.as_os_str().as_encoded_bytes());
        h.update(b"\n");
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// File names of a shard's part.
pub fn part_paths(dir: &Path, shard: Shard) -> (PathBuf, PathBuf, PathBuf) {
    let stem = format!("part-{}", shard.tag());
    (
        dir.join(format!("{stem}.jsonl")),
        dir.join(format!("{stem}.jsonl.partial")),
        dir.join(format!("{stem}.state.json")),
    )
}

fn compare(path: &Path, ours: &PartHeader, theirs: &PartHeader) -> Result<()> {
    let mismatch = |what: String| Err(PartsError::Mismatch { path: path.to_path_buf(), what });
    if theirs.mixdet_part != ours.mixdet_part {
        return mismatch(format!("part format {} vs {}", theirs.mixdet_part, ours.mixdet_part));
    }
    let (a, b) = (serde_json::to_value(&theirs.settings), serde_json::to_value(&ours.settings));
    if let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) {
        for (k, v) in &b {
            if a.get(k) != Some(v) {
                return mismatch(format!("{k}: {} there, {v} here", a.get(k).unwrap_or(&serde_json::Value::Null)));
            }
        }
    }
    if (theirs.shard, theirs.first, theirs.images) != (ours.shard, ours.first, ours.images) {
        return mismatch(format!(
            "shard {} with images {}..{} there, shard {} with {}..{} here",
            theirs.shard,
            theirs.first,
            theirs.first + theirs.images,
            ours.shard,
            ours.first,
            ours.first + ours.images
        ));
    }
    Ok(())
}

fn read_header(path: &Path, line: &str) -> Result<PartHeader> {
    serde_json::from_str(line).map_err(|e| PartsError::Corrupt {
        path: path.to_path_buf(),
        line: 1,
        message: format!("not a mixdet part header: {e}"),
    })
}

fn first_line(path: &Path) -> Result<String> {
    let mut line = String::new();
    BufReader::new(File::open(path).map_err(io(path))?).read_line(&mut line).map_err(io(path))?;
    Ok(line)
}

/// Writes one shard's part; see the module documentation.
pub struct PartWriter {
    file: BufWriter<File>,
    partial: PathBuf,
    state_path: PathBuf,
    final_path: PathBuf,
    state: PartState,
    written: u64,
    pending: (usize, usize, usize),
}

/// How a part starts: fresh, continued, or already complete.
pub enum PartStart {
    /// Write the shard's images, skipping the first `done` (committed by an earlier run).
    Write(PartWriter, usize),
    /// The part is complete; nothing to do.
    Complete(PathBuf),
}

impl PartWriter {
    /// Starts the part of `header.shard` in `dir`: a new one, or with `resume` the committed
    /// prefix of an interrupted one (or nothing, when it is complete). Without `resume`, an
    /// existing part (complete or not) is an error: results are never overwritten.
    pub fn start(dir: &Path, header: &PartHeader, resume: bool) -> Result<PartStart> {
        let shard = Shard { index: header.shard, count: header.settings.num_shards };
        let (final_path, partial, state_path) = part_paths(dir, shard);
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        if final_path.exists() {
            if !resume {
                return Err(PartsError::Exists {
                    path: final_path,
                    message: "this shard is complete; --resume skips it, or delete the part to redo it".into(),
                });
            }
            compare(&final_path, header, &read_header(&final_path, &first_line(&final_path)?)?)?;
            return Ok(PartStart::Complete(final_path));
        }
        if partial.exists() {
            if !resume {
                return Err(PartsError::Exists {
                    path: partial,
                    message: "an interrupted part: --resume continues it, or delete it to start over".into(),
                });
            }
            compare(&partial, header, &read_header(&partial, &first_line(&partial)?)?)?;
            let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
            let state: PartState = serde_json::from_str(&text).map_err(|e| PartsError::Corrupt {
                path: state_path.clone(),
                line: 0,
                message: e.to_string(),
            })?;
            let file = OpenOptions::new().read(true).write(true).open(&partial).map_err(io(&partial))?;
            let len = file.metadata().map_err(io(&partial))?.len();
            if len < state.bytes {
                return Err(PartsError::Corrupt {
                    path: partial,
                    line: 0,
                    message: format!("{len} bytes, but {} were committed", state.bytes),
                });
            }
            // Lines after the last checkpoint were never committed: cut them off.
            file.set_len(state.bytes).map_err(io(&partial))?;
            let mut file = file;
            file.seek(SeekFrom::End(0)).map_err(io(&partial))?;
            let writer = Self {
                file: BufWriter::new(file),
                partial,
                state_path,
                final_path,
                state,
                written: state.bytes,
                pending: (0, 0, 0),
            };
            return Ok(PartStart::Write(writer, state.images));
        }
        let file = File::create(&partial).map_err(io(&partial))?;
        let mut w = Self {
            file: BufWriter::new(file),
            partial,
            state_path,
            final_path,
            state: PartState { bytes: 0, images: 0, failed: 0, detections: 0 },
            written: 0,
            pending: (0, 0, 0),
        };
        w.line(header)?;
        w.checkpoint()?;
        Ok(PartStart::Write(w, 0))
    }

    fn line<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let mut text = serde_json::to_vec(value).map_err(|e| PartsError::Corrupt {
            path: self.partial.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        text.push(b'\n');
        self.file.write_all(&text).map_err(io(&self.partial))?;
        self.written += text.len() as u64;
        Ok(())
    }

    /// Appends one image's line (committed at the next [`checkpoint`](Self::checkpoint)).
    pub fn append(&mut self, record: &PartRecord) -> Result<()> {
        self.line(record)?;
        self.pending.0 += 1;
        self.pending.1 += usize::from(record.error.is_some());
        self.pending.2 += record.detections.len();
        Ok(())
    }

    /// Images committed so far.
    pub fn committed(&self) -> usize {
        self.state.images
    }

    /// Makes everything appended so far durable and records it as committed.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.file.flush().map_err(io(&self.partial))?;
        self.file.get_ref().sync_data().map_err(io(&self.partial))?;
        let state = PartState {
            bytes: self.written,
            images: self.state.images + self.pending.0,
            failed: self.state.failed + self.pending.1,
            detections: self.state.detections + self.pending.2,
        };
        let tmp = self.state_path.with_extension("json.tmp");
        let text = serde_json::to_string(&state).map_err(|e| PartsError::Corrupt {
            path: tmp.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(text.as_bytes()).map_err(io(&tmp))?;
            f.sync_data().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &self.state_path).map_err(io(&self.state_path))?;
        self.state = state;
        self.pending = (0, 0, 0);
        Ok(())
    }

    /// Adds the footer and gives the part its final name; returns the footer.
    pub fn finish(mut self) -> Result<PartFooter> {
        self.checkpoint()?;
        let footer = PartFooter {
            done: true,
            images: self.state.images,
            failed: self.state.failed,
            detections: self.state.detections,
        };
        self.line(&footer)?;
        self.file.flush().map_err(io(&self.partial))?;
        self.file.get_ref().sync_data().map_err(io(&self.partial))?;
        std::fs::rename(&self.partial, &self.final_path).map_err(io(&self.final_path))?;
        std::fs::remove_file(&self.state_path).map_err(io(&self.state_path))?;
        Ok(footer)
    }
}

/// Reads a complete part: its header, then each image's record through `each`; checks the footer.
pub fn read_part(path: &Path, mut each: impl FnMut(PartRecord) -> Result<()>) -> Result<(PartHeader, PartFooter)> {
    let reader = BufReader::new(File::open(path).map_err(io(path))?);
    let corrupt = |line: usize, message: String| PartsError::Corrupt { path: path.to_path_buf(), line, message };
    let mut lines = reader.lines().enumerate();
    let header = match lines.next() {
        Some((_, l)) => read_header(path, &l.map_err(io(path))?)?,
        None => return Err(corrupt(1, "empty file".into())),
    };
    let mut footer = None;
    let mut images = 0;
    let mut next = header.first;
    for (i, line) in lines {
        let line = line.map_err(io(path))?;
        if footer.is_some() {
            return Err(corrupt(i + 1, "a line after the footer".into()));
        }
        if line.starts_with("{\"done\"") {
            footer = Some(serde_json::from_str::<PartFooter>(&line).map_err(|e| corrupt(i + 1, e.to_string()))?);
            continue;
        }
        let record: PartRecord = serde_json::from_str(&line).map_err(|e| corrupt(i + 1, e.to_string()))?;
        if record.index != next {
            return Err(corrupt(i + 1, format!("image {} where {next} was expected", record.index)));
        }
        next += 1;
        images += 1;
        each(record)?;
    }
    let footer = footer.ok_or_else(|| corrupt(0, "no footer: the part is not complete".into()))?;
    if footer.images != images || images != header.images {
        return Err(corrupt(
            0,
            format!("{images} image lines, footer says {}, header {}", footer.images, header.images),
        ));
    }
    Ok((header, footer))
}

/// The complete parts of `dir`, in shard order, after checking that every shard of one run is
/// there: missing and interrupted shards are named.
pub fn find_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut complete: HashMap<(usize, usize), PathBuf> = HashMap::new();
    let mut partial: Vec<(usize, usize)> = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(rest) = name.strip_prefix("part-") else { continue };
        let (tag, is_partial) = if let Some(t) = rest.strip_suffix(".jsonl") {
            (t, false)
        } else if let Some(t) = rest.strip_suffix(".jsonl.partial") {
            (t, true)
        } else {
            continue;
        };
        let Some((i, n)) = tag.split_once("-of-").and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?))) else {
            continue;
        };
        if is_partial {
            partial.push((i, n));
        } else {
            complete.insert((i, n), path);
        }
    }
    let counts: std::collections::BTreeSet<usize> =
        complete.keys().map(|k| k.1).chain(partial.iter().map(|k| k.1)).collect();
    let incomplete = |message: String| Err(PartsError::Incomplete { dir: dir.to_path_buf(), message });
    let n = match counts.len() {
        0 => return incomplete("no part files (part-IIIII-of-NNNNN.jsonl)".into()),
        1 => counts.into_iter().next().unwrap_or(0),
        _ => return incomplete(format!("parts of different shard counts ({counts:?}): one run per folder")),
    };
    let missing: Vec<usize> = (0..n).filter(|i| !complete.contains_key(&(*i, n))).collect();
    if !missing.is_empty() {
        let interrupted: Vec<usize> = missing.iter().copied().filter(|i| partial.contains(&(*i, n))).collect();
        let absent: Vec<usize> = missing.iter().copied().filter(|i| !interrupted.contains(i)).collect();
        return incomplete(format!(
            "{} of {n} shards are not complete: missing {absent:?}, interrupted (resume them) {interrupted:?}",
            missing.len()
        ));
    }
    Ok((0..n).filter_map(|i| complete.remove(&(i, n))).collect())
}

/// What [`merge`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeSummary {
    /// Shards merged.
    pub shards: usize,
    /// Images in the parts.
    pub images: usize,
    /// Images that could not be read.
    pub failed: usize,
    /// Result records written.
    pub records: usize,
    /// Images left out because the ground truth has no such file name.
    pub missing_ids: usize,
}

/// Streams the results of the complete parts of `dir` to `out` as a COCO results JSON array (the
/// bytes `serde_json` writes for the whole `Vec<ResultRecord>`), with image ids from `ids`
/// (file name → id) when given, else the 1-based position in the input list with the file name.
/// `each` sees every record (to evaluate them). Checks that all parts come from the same run.
pub fn merge(
    dir: &Path,
    ids: Option<&HashMap<String, i64>>,
    out: &mut dyn Write,
    mut each: impl FnMut(&ResultRecord),
) -> Result<MergeSummary> {
    let parts = find_parts(dir)?;
    let mut summary = MergeSummary { shards: parts.len(), ..Default::default() };
    let mut first_header: Option<PartHeader> = None;
    let out_err = |e: std::io::Error| PartsError::Io { path: PathBuf::from("<results>"), source: e };
    out.write_all(b"[").map_err(out_err)?;
    let mut next_index = 0;
    for path in &parts {
        let (header, footer) = read_part(path, |record| {
            if record.error.is_some() {
                return Ok(());
            }
            let file_name =
                Path::new(&record.path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let (image_id, file_name) = match ids {
                Some(map) => match map.get(&file_name) {
                    Some(&id) => (id, None),
                    None => {
                        summary.missing_ids += 1;
                        return Ok(());
                    }
                },
                None => (record.index as i64 + 1, Some(file_name)),
            };
            for d in record.detections {
                let r = ResultRecord {
                    image_id,
                    category_id: d.category_id,
                    bbox: d.bbox,
                    score: d.score,
                    file_name: file_name.clone(),
                };
                if summary.records > 0 {
                    out.write_all(b",").map_err(out_err)?;
                }
                serde_json::to_writer(&mut *out, &r).map_err(|e| out_err(std::io::Error::other(e)))?;
                each(&r);
                summary.records += 1;
            }
            Ok(())
        })?;
        match &first_header {
            None => {
                if header.shard != 0 || header.settings.num_shards != parts.len() {
                    return Err(PartsError::Mismatch {
                        path: path.clone(),
                        what: format!("shard {} of {}", header.shard, header.settings.num_shards),
                    });
                }
                first_header = Some(header.clone());
            }
            Some(h) => {
                let expected =
                    PartHeader { shard: header.shard, first: header.first, images: header.images, ..h.clone() };
                compare(path, &expected, &header)?;
            }
        }
        if header.first != next_index {
            return Err(PartsError::Corrupt {
                path: path.clone(),
                line: 1,
                message: format!("starts at image {} where {next_index} was expected", header.first),
            });
        }
        next_index = header.first + header.images;
        summary.images += footer.images;
        summary.failed += footer.failed;
    }
    if let Some(h) = &first_header {
        if next_index != h.settings.inputs {
            return Err(PartsError::Incomplete {
                dir: dir.to_path_buf(),
                message: format!("the parts hold {next_index} of the run's {} images", h.settings.inputs),
            });
        }
    }
    out.write_all(b"]").map_err(out_err)?;
    Ok(summary)
}
