//! Times the phases of one evaluation (reading the GT, reading the results, evaluate +
//! accumulate, summarize): `cargo run --release -p mixdet-coco --example eval_phases -- GT DT`.

use std::time::Instant;

use mixdet_coco::{evaluate, load_results, GroundTruth, Params};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, gt_path, dt_path] = args.as_slice() else {
        return Err("usage: eval_phases GT.json RESULTS.json".into());
    };
    let t = Instant::now();
    let gt = GroundTruth::from_path(gt_path)?;
    let t_gt = t.elapsed();
    let t = Instant::now();
    let dets = load_results(dt_path)?;
    let t_dt = t.elapsed();
    let t = Instant::now();
    let eval = evaluate(&gt, &dets, &Params::for_ground_truth(&gt))?;
    let t_eval = t.elapsed();
    let t = Instant::now();
    let stats = eval.stats().ok_or("no stats")?;
    let t_sum = t.elapsed();
    println!(
        "gt {:.3} s, results {:.3} s, evaluate+accumulate {:.3} s, summarize {:.3} s; AP {:.4}",
        t_gt.as_secs_f64(),
        t_dt.as_secs_f64(),
        t_eval.as_secs_f64(),
        t_sum.as_secs_f64(),
        stats[0]
    );
    Ok(())
}
