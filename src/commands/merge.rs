//! `mixdet merge`: joins the parts of a sharded `mixdet detect --parts` run into one COCO results
//! file, after checking that every shard is complete and from the same run; with `--gt`, image
//! ids come from the ground truth's file names and the results are evaluated.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use mixdet::parts;

use super::detect::ids_by_file_name;

/// Arguments of `mixdet merge`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// The folder the shards wrote their parts into (`detect --parts DIR`).
    pub dir: PathBuf,
    /// Where to write the COCO results (written atomically; never replaces the parts).
    #[arg(long, value_name = "FILE")]
    pub json: PathBuf,
    /// COCO instances file: image ids by file name (as `detect --gt`), then evaluate.
    #[arg(long, value_name = "FILE")]
    pub gt: Option<PathBuf>,
}

/// Runs `mixdet merge`.
pub fn run(args: MergeArgs) -> Result<ExitCode> {
    let gt = match &args.gt {
        Some(path) => {
            Some(mixdet_coco::GroundTruth::from_path(path).with_context(|| format!("{}: reading", path.display()))?)
        }
        None => None,
    };
    let ids = gt.as_ref().map(ids_by_file_name);
    let mut tmp = args.json.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut dets: Vec<mixdet_coco::Detection> = Vec::new();
    let result = (|| -> Result<parts::MergeSummary> {
        let file = std::fs::File::create(&tmp).with_context(|| format!("{}: cannot write", tmp.display()))?;
        let mut w = std::io::BufWriter::new(file);
        let summary = parts::merge(&args.dir, ids.as_ref(), &mut w, |r| {
            if gt.is_some() {
                dets.push(mixdet_coco::Detection {
                    image_id: r.image_id,
                    category_id: r.category_id,
                    bbox: r.bbox,
                    score: r.score,
                });
            }
        })?;
        w.flush().with_context(|| format!("{}: cannot write", tmp.display()))?;
        w.get_ref().sync_data().with_context(|| format!("{}: cannot write", tmp.display()))?;
        Ok(summary)
    })();
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &args.json).with_context(|| format!("{}: cannot write", args.json.display()))?;
    println!(
        "Merged {} shards: {} images ({} failed), {} detections written to {}",
        summary.shards,
        summary.images,
        summary.failed,
        summary.records,
        args.json.display()
    );
    if summary.missing_ids > 0 {
        eprintln!("warning: {} image(s) are not in the --gt file and were left out of the JSON", summary.missing_ids);
    }
    if let Some(gt) = &gt {
        let params = mixdet_coco::Params::for_ground_truth(gt);
        let eval = mixdet_coco::evaluate(gt, &dets, &params).context("evaluating")?;
        if let Some(lines) = eval.summary_lines() {
            lines.iter().for_each(|l| println!("{l}"));
        }
    }
    Ok(if summary.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
