//! The reference case the team checked against pycocotools and faster-coco-eval by hand.

use mixdet_coco::{evaluate, parse_results, GroundTruth, Params};

const GT: &str = r#"{"images":[{"id":1,"width":100,"height":100},{"id":2,"width":100,"height":100},{"id":3,"width":50,"height":50}],
 "categories":[{"id":1,"name":"a"},{"id":2,"name":"b"},{"id":3,"name":"c"}],
 "annotations":[
  {"id":1,"image_id":1,"category_id":1,"bbox":[10,10,32,32],"area":1024.0,"iscrowd":0},
  {"id":2,"image_id":1,"category_id":1,"bbox":[50,50,40,40],"area":1500.0,"iscrowd":0},
  {"id":3,"image_id":1,"category_id":2,"bbox":[0,0,60,60],"area":3600.0,"iscrowd":1},
  {"id":4,"image_id":2,"category_id":2,"bbox":[20,20,10,10],"area":100.0,"iscrowd":0},
  {"id":5,"image_id":2,"category_id":1,"bbox":[5,5,90,90],"area":8000.0,"iscrowd":0},
  {"id":6,"image_id":3,"category_id":1,"bbox":[0,0,20,20],"area":400.0,"iscrowd":0}]}"#;

const DT: &str = r#"[{"image_id":1,"category_id":1,"bbox":[11,11,31,31],"score":0.9},
 {"image_id":1,"category_id":1,"bbox":[10,10,32,32],"score":0.9},
 {"image_id":1,"category_id":1,"bbox":[52,52,40,36],"score":0.6},
 {"image_id":1,"category_id":2,"bbox":[5,5,10,10],"score":0.8},
 {"image_id":1,"category_id":2,"bbox":[30,30,10,10],"score":0.7},
 {"image_id":2,"category_id":2,"bbox":[21,21,10,10],"score":0.5},
 {"image_id":2,"category_id":2,"bbox":[60,60,10,10],"score":0.95},
 {"image_id":2,"category_id":1,"bbox":[0,0,100,100],"score":0.3},
 {"image_id":2,"category_id":3,"bbox":[0,0,10,10],"score":0.99},
 {"image_id":3,"category_id":1,"bbox":[1,1,20,20],"score":0.4}]"#;

#[test]
fn golden_case_matches_pycocotools_exactly() {
    let gt = GroundTruth::from_slice(GT.as_bytes(), "gt").unwrap();
    let dets = parse_results(DT.as_bytes(), "dt").unwrap();
    let eval = evaluate(&gt, &dets, &Params::for_ground_truth(&gt)).unwrap();
    let expected = [
        0.4301980198019802,
        0.6757425742574258,
        0.42574257425742573,
        0.45536303630363034,
        0.68490099009901,
        -1.0,
        0.2875,
        0.5875,
        0.5875,
        0.625,
        0.7999999999999999,
        -1.0,
    ];
    assert_eq!(eval.stats().unwrap(), expected);
    // Category 3 has detections but no GT: all -1.
    let sh = eval.shape();
    let k3 = eval.category_ids().iter().position(|&c| c == 3).unwrap();
    for t in 0..sh.t {
        for r in 0..sh.r {
            for a in 0..sh.a {
                for m in 0..sh.m {
                    assert_eq!(eval.precision_at(t, r, k3, a, m), -1.0);
                }
            }
        }
    }
    let lines = eval.summary_lines().unwrap();
    assert_eq!(lines[0], " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.430");
    assert_eq!(lines[1], " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.676");
    assert_eq!(lines[5], " Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = -1.000");
    assert_eq!(lines[6], " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.287");
}
