//! ONNX export of a detector: the network ([`SsdLite::head_to_onnx`]), then the box decoding
//! and scores of its family as graph operators, and with `nms` the family's post-processing
//! (per-class `NonMaxSuppression`, the best `detections_per_img` per image) in a fixed layout
//! that works for any batch size.
//!
//! Outputs: `boxes` `(N, A, 4)` `[x1, y1, x2, y2]` in network-input pixels, clipped to the input;
//! `scores` `(N, A, K)` per-class scores (column 0 the background: softmax for the torchvision
//! family, sigmoid for the TF family); the head's raw `cls_logits` `(N, A, K)` and
//! `bbox_regression` `(N, A, 4)` (as `mixdet forward` writes them). With `nms`: `det_boxes` `(N, D, 4)`, `det_scores` `(N, D)`
//! (rows past `num_dets` hold -1), `det_labels` `(N, D)` (class indices, 1..), `num_dets` `(N,)`.

use candle_core::Result;
use mixdet_backbones::onnx::{wrap, OnnxValue};
use mixdet_onnx::proto::ModelProto;
use mixdet_onnx::{Attr, Dim, ElemType, ExportOptions, Graph};

use crate::box_coder::BBOX_XFORM_CLIP;
use crate::config::{AnchorGenerator, Family};
use crate::SsdLite;

/// A column pair `[from, from + 2)` of the last axis of an `(N, A, 4)` value.
fn pair(g: &mut Graph, x: &str, from: i64) -> Result<String> {
    let s = g.i64_vec("starts", &[from]).map_err(wrap)?;
    let e = g.i64_vec("ends", &[from + 2]).map_err(wrap)?;
    let a = g.i64_vec("axes", &[2]).map_err(wrap)?;
    g.op("Slice", &[x, &s, &e, &a], &[]).map_err(wrap)
}

fn op2(g: &mut Graph, op: &str, a: &str, b: &str) -> Result<String> {
    g.op(op, &[a, b], &[]).map_err(wrap)
}

/// Per-anchor `(A, 2)` constants from anchors: `f(anchor) -> [v0, v1]`.
fn anchor_pairs(g: &mut Graph, hint: &str, anchors: &[[f32; 4]], f: impl Fn(&[f32; 4]) -> [f32; 2]) -> Result<String> {
    let v: Vec<f32> = anchors.iter().flat_map(f).collect();
    g.f32s(hint, &[anchors.len(), 2], &v).map_err(wrap)
}

/// Decoded, clipped boxes `(N, A, 4)` in input pixels, the boxes NMS compares (the TF family's
/// unclipped ones) and the per-class scores `(N, A, K)`.
fn decode(
    model: &SsdLite,
    g: &mut Graph,
    cls: &str,
    reg: &str,
    grids: &[[usize; 2]],
) -> Result<(String, String, String)> {
    let cfg = model.config();
    let [h, w] = cfg.input_size;
    let (hf, wf) = (h as f32, w as f32);
    let lo = g.f32_scalar("zero", 0.0).map_err(wrap)?;
    match (&cfg.family, &cfg.anchors) {
        (Family::TfOdApi, AnchorGenerator::TfMultipleGrid(tf)) => {
            // (ty, tx, th, tw) against normalised [ymin, xmin, ymax, xmax] anchors, in the order of
            // operations of `tf_od_api::postprocess::decode`.
            let anchors = crate::tf_od_api::anchors::generate_normalized(tf, grids, cfg.input_size);
            let size = anchor_pairs(g, "anchor_hw", &anchors, |a| [a[2] - a[0], a[3] - a[1]])?;
            let centre = anchor_pairs(g, "anchor_centre", &anchors, |a| {
                [a[0] + (a[2] - a[0]) / 2.0, a[1] + (a[3] - a[1]) / 2.0]
            })?;
            let t_yx = pair(g, reg, 0)?;
            let t_hw = pair(g, reg, 2)?;
            let ten = g.f32s("scale", &[2], &[10.0, 10.0]).map_err(wrap)?;
            let five = g.f32s("scale", &[2], &[5.0, 5.0]).map_err(wrap)?;
            let t_yx = op2(g, "Div", &t_yx, &ten)?;
            let t_hw = op2(g, "Div", &t_hw, &five)?;
            let e = g.op("Exp", &[&t_hw], &[]).map_err(wrap)?;
            let hw = op2(g, "Mul", &e, &size)?;
            let c = op2(g, "Mul", &t_yx, &size)?;
            let c = op2(g, "Add", &c, &centre)?;
            let two = g.f32_scalar("two", 2.0).map_err(wrap)?;
            let half = op2(g, "Div", &hw, &two)?;
            let yx0 = op2(g, "Sub", &c, &half)?;
            let yx1 = op2(g, "Add", &c, &half)?;
            // To [x, y] pixels.
            let swap = g.i64_vec("swap", &[1, 0]).map_err(wrap)?;
            let to_pixels = g.f32s("size", &[2], &[wf, hf]).map_err(wrap)?;
            let one = g.f32_scalar("one", 1.0).map_err(wrap)?;
            let mut raw = Vec::new();
            let mut clipped = Vec::new();
            for v in [yx0, yx1] {
                let xy = g.op("Gather", &[&v, &swap], &[("axis", Attr::Int(2))]).map_err(wrap)?;
                raw.push(op2(g, "Mul", &xy, &to_pixels)?);
                let cl = g.op("Clip", &[&xy, &lo, &one], &[]).map_err(wrap)?;
                clipped.push(op2(g, "Mul", &cl, &to_pixels)?);
            }
            let raw = g.op("Concat", &[&raw[0], &raw[1]], &[("axis", Attr::Int(2))]).map_err(wrap)?;
            let boxes = g.op("Concat", &[&clipped[0], &clipped[1]], &[("axis", Attr::Int(2))]).map_err(wrap)?;
            let scores = g.op("Sigmoid", &[cls], &[]).map_err(wrap)?;
            Ok((boxes, raw, scores))
        }
        _ => {
            // torchvision's `decode_single` on (dx, dy, dw, dh) / (10, 10, 5, 5), then clipping.
            let anchors = model.anchors(grids);
            let size = anchor_pairs(g, "anchor_wh", &anchors, |a| [a[2] - a[0], a[3] - a[1]])?;
            let centre = anchor_pairs(g, "anchor_centre", &anchors, |a| {
                let (aw, ah) = (a[2] - a[0], a[3] - a[1]);
                [a[0] + 0.5 * aw, a[1] + 0.5 * ah]
            })?;
            let [wx, wy, ww, wh] = crate::BoxCoder::default().weights;
            let d_xy = pair(g, reg, 0)?;
            let d_wh = pair(g, reg, 2)?;
            let wxy = g.f32s("weights", &[2], &[wx, wy]).map_err(wrap)?;
            let wwh = g.f32s("weights", &[2], &[ww, wh]).map_err(wrap)?;
            let clip = g.f32_scalar("clip", BBOX_XFORM_CLIP).map_err(wrap)?;
            let d_xy = op2(g, "Div", &d_xy, &wxy)?;
            let d_wh = op2(g, "Div", &d_wh, &wwh)?;
            let d_wh = op2(g, "Min", &d_wh, &clip)?;
            let c = op2(g, "Mul", &d_xy, &size)?;
            let c = op2(g, "Add", &c, &centre)?;
            let e = g.op("Exp", &[&d_wh], &[]).map_err(wrap)?;
            let pwh = op2(g, "Mul", &e, &size)?;
            let half_c = g.f32_scalar("half", 0.5).map_err(wrap)?;
            let half = op2(g, "Mul", &pwh, &half_c)?;
            let p0 = op2(g, "Sub", &c, &half)?;
            let p1 = op2(g, "Add", &c, &half)?;
            let b = g.op("Concat", &[&p0, &p1], &[("axis", Attr::Int(2))]).map_err(wrap)?;
            let hi = g.f32s("size", &[4], &[wf, hf, wf, hf]).map_err(wrap)?;
            let b = op2(g, "Min", &b, &hi)?;
            let boxes = op2(g, "Max", &b, &lo)?;
            let scores = g.op("Softmax", &[cls], &[("axis", Attr::Int(2))]).map_err(wrap)?;
            Ok((boxes.clone(), boxes, scores))
        }
    }
}

/// The family's post-processing: per-class NMS (after the per-class top-k candidates for the
/// torchvision family), then the best `detections_per_img` of each image by score (ties: lower
/// class, then lower anchor first, as both references order them).
fn nms(
    model: &SsdLite,
    g: &mut Graph,
    boxes: &str,
    nms_boxes: &str,
    scores: &str,
    anchors: usize,
) -> Result<[String; 4]> {
    let cfg = model.config();
    let post = &cfg.postprocess;
    let k = cfg.num_classes;
    if k < 2 {
        candle_core::bail!("{}: NMS needs at least one class besides the background", cfg.name);
    }
    let c = (k - 1) as i64;
    let a = anchors as i64;
    let i64c = |g: &mut Graph, hint: &str, v: &[i64]| g.i64_vec(hint, v).map_err(wrap);
    // (N, C, A): the scores of every class but the background.
    let t = g.op("Transpose", &[scores], &[("perm", Attr::Ints(vec![0, 2, 1]))]).map_err(wrap)?;
    let (s1, ek, ax) = (i64c(g, "starts", &[1])?, i64c(g, "ends", &[k as i64])?, i64c(g, "axes", &[1])?);
    let s = g.op("Slice", &[&t, &s1, &ek, &ax], &[]).map_err(wrap)?;
    let iou = g.f32s("iou_threshold", &[1], &[post.nms_thresh]).map_err(wrap)?;
    let thresh = g.f32s("score_threshold", &[1], &[post.score_thresh]).map_err(wrap)?;
    let per_class = post.topk_candidates.min(anchors) as i64;
    let max_out = i64c(g, "max_output_boxes_per_class", &[per_class])?;
    let col = |g: &mut Graph, sel: &str, i: i64| -> Result<String> {
        let (st, en, ax) = (i64c(g, "starts", &[i])?, i64c(g, "ends", &[i + 1])?, i64c(g, "axes", &[1])?);
        g.op("Slice", &[sel, &st, &en, &ax], &[]).map_err(wrap)
    };
    // (M, 3) indices [image, class - 1, anchor] of the boxes kept, and their scores (M,).
    let (indices, kept_scores) = match cfg.family {
        Family::TfOdApi => {
            let sel = g.op("NonMaxSuppression", &[nms_boxes, &s, &max_out, &iou, &thresh], &[]).map_err(wrap)?;
            let kept = g.op("GatherND", &[&s, &sel], &[]).map_err(wrap)?;
            (sel, kept)
        }
        Family::Torchvision => {
            // Per class, the top-k candidates; NMS on each (image, class) row as its own batch.
            let kk = i64c(g, "k", &[per_class])?;
            let top = g.op_n("TopK", &[&s, &kk], &[("axis", Attr::Int(2))], 2).map_err(wrap)?;
            let (vals, idx) = (&top[0], &top[1]);
            let flat_idx_shape = i64c(g, "shape", &[0, -1, 1])?;
            let flat_idx = g.op("Reshape", &[idx, &flat_idx_shape], &[]).map_err(wrap)?;
            let cand = g.op("GatherND", &[nms_boxes, &flat_idx], &[("batch_dims", Attr::Int(1))]).map_err(wrap)?;
            let cand_shape = i64c(g, "shape", &[-1, per_class, 4])?;
            let cand = g.op("Reshape", &[&cand, &cand_shape], &[]).map_err(wrap)?;
            let score_shape = i64c(g, "shape", &[-1, 1, per_class])?;
            let cand_scores = g.op("Reshape", &[vals, &score_shape], &[]).map_err(wrap)?;
            let sel = g.op("NonMaxSuppression", &[&cand, &cand_scores, &max_out, &iou, &thresh], &[]).map_err(wrap)?;
            let row = col(g, &sel, 0)?;
            let j = col(g, &sel, 2)?;
            let rj = g.op("Concat", &[&row, &j], &[("axis", Attr::Int(1))]).map_err(wrap)?;
            let rows_shape = i64c(g, "shape", &[-1, per_class])?;
            let idx2 = g.op("Reshape", &[idx, &rows_shape], &[]).map_err(wrap)?;
            let vals2 = g.op("Reshape", &[vals, &rows_shape], &[]).map_err(wrap)?;
            let anchor = g.op("GatherND", &[&idx2, &rj], &[]).map_err(wrap)?;
            let kept = g.op("GatherND", &[&vals2, &rj], &[]).map_err(wrap)?;
            let cc = i64c(g, "classes", &[c])?;
            let img = op2(g, "Div", &row, &cc)?;
            let cls = op2(g, "Mod", &row, &cc)?;
            let one_axis = i64c(g, "axes", &[1])?;
            let anchor = g.op("Unsqueeze", &[&anchor, &one_axis], &[]).map_err(wrap)?;
            let ind = g.op("Concat", &[&img, &cls, &anchor], &[("axis", Attr::Int(1))]).map_err(wrap)?;
            (ind, kept)
        }
    };
    // Scatter the kept scores into a dense (N, C, A) map of -1 and take the best D per image.
    let shape = g.op("Shape", &[&s], &[]).map_err(wrap)?;
    let minus_one = g.f32s("minus_one", &[1, 1, 1], &[-1.0]).map_err(wrap)?;
    let dense = g.op("Expand", &[&minus_one, &shape], &[]).map_err(wrap)?;
    let mut dense = g.op("ScatterND", &[&dense, &indices, &kept_scores], &[]).map_err(wrap)?;
    if cfg.family == Family::TfOdApi {
        // TF drops boxes left with no area by clipping to the image before taking the best D.
        let x0 = pair(g, boxes, 0)?;
        let x1 = pair(g, boxes, 2)?;
        let wh = op2(g, "Sub", &x1, &x0)?;
        let zero = i64c(g, "zero", &[0])?;
        let one = i64c(g, "one", &[1])?;
        let bw = g.op("Gather", &[&wh, &zero], &[("axis", Attr::Int(2))]).map_err(wrap)?;
        let bh = g.op("Gather", &[&wh, &one], &[("axis", Attr::Int(2))]).map_err(wrap)?;
        let area = op2(g, "Mul", &bw, &bh)?;
        let z = g.f32_scalar("zero", 0.0).map_err(wrap)?;
        let positive = op2(g, "Greater", &area, &z)?;
        let positive = g.op("Transpose", &[&positive], &[("perm", Attr::Ints(vec![0, 2, 1]))]).map_err(wrap)?;
        let neg = g.f32_scalar("minus_one", -1.0).map_err(wrap)?;
        dense = g.op("Where", &[&positive, &dense, &neg], &[]).map_err(wrap)?;
    }
    let flat_shape = i64c(g, "shape", &[0, -1])?;
    let flat = g.op("Reshape", &[&dense, &flat_shape], &[]).map_err(wrap)?;
    let d = post.detections_per_img.min((k - 1) * anchors) as i64;
    let dk = i64c(g, "k", &[d])?;
    let top = g.op_n("TopK", &[&flat, &dk], &[("axis", Attr::Int(1))], 2).map_err(wrap)?;
    let (det_scores, det_idx) = (top[0].clone(), &top[1]);
    let aa = i64c(g, "anchors", &[a])?;
    let class0 = op2(g, "Div", det_idx, &aa)?;
    let one = i64c(g, "one", &[1])?;
    let labels = op2(g, "Add", &class0, &one)?;
    let anchor = op2(g, "Mod", det_idx, &aa)?;
    let two_axis = i64c(g, "axes", &[2])?;
    let anchor = g.op("Unsqueeze", &[&anchor, &two_axis], &[]).map_err(wrap)?;
    let det_boxes = g.op("GatherND", &[boxes, &anchor], &[("batch_dims", Attr::Int(1))]).map_err(wrap)?;
    let half = g.f32_scalar("minus_half", -0.5).map_err(wrap)?;
    let valid = op2(g, "Greater", &det_scores, &half)?;
    let valid = g.op("Cast", &[&valid], &[("to", Attr::Int(7))]).map_err(wrap)?;
    let axis1 = i64c(g, "axes", &[1])?;
    let count = g.op("ReduceSum", &[&valid, &axis1], &[("keepdims", Attr::Int(0))]).map_err(wrap)?;
    Ok([det_boxes, det_scores, labels, count])
}

impl SsdLite {
    /// Exports the detector: input `images` `(N, 3, H, W)` (preprocessed, at the config's input
    /// size), outputs as the module documentation lists; preprocessing, class names, anchors and
    /// thresholds in `metadata_props`.
    pub fn to_onnx_model(&self, opts: &ExportOptions, with_nms: bool) -> Result<ModelProto> {
        let cfg = self.config();
        if opts.input_size != cfg.input_size {
            candle_core::bail!(
                "{} takes a {}x{} input (its anchors are laid out for it); export it at that size or \
                 use a config with another input_size",
                cfg.name,
                cfg.input_size[0],
                cfg.input_size[1]
            );
        }
        let mut g = opts.graph(&cfg.name).map_err(wrap)?;
        let [h, w] = cfg.input_size;
        let batch = opts.batch_dim();
        let x = g.input("images", ElemType::F32, &[batch.clone(), Dim::Fixed(3), Dim::Fixed(h), Dim::Fixed(w)]);
        let (cls, reg, grids) = self.head_to_onnx(&mut g, &OnnxValue { name: x, channels: 3, hw: [h, w] })?;
        let anchors = self.anchors(&grids).len();
        g.set_prefix("decode");
        let (boxes, nms_boxes, scores) = decode(self, &mut g, &cls, &reg, &grids)?;
        let k = cfg.num_classes;
        let (b, f, i) = (batch.clone(), ElemType::F32, ElemType::I64);
        let fixed = Dim::Fixed;
        let mut outputs = vec!["boxes", "scores", "cls_logits", "bbox_regression"];
        g.output(&boxes, "boxes", f, &[b.clone(), fixed(anchors), fixed(4)]).map_err(wrap)?;
        g.output(&scores, "scores", f, &[b.clone(), fixed(anchors), fixed(k)]).map_err(wrap)?;
        g.output(&cls, "cls_logits", f, &[b.clone(), fixed(anchors), fixed(k)]).map_err(wrap)?;
        g.output(&reg, "bbox_regression", f, &[b.clone(), fixed(anchors), fixed(4)]).map_err(wrap)?;
        if with_nms {
            g.set_prefix("nms");
            let [db, ds, dl, n] = nms(self, &mut g, &boxes, &nms_boxes, &scores, anchors)?;
            let d = cfg.postprocess.detections_per_img.min((k - 1) * anchors);
            g.output(&db, "det_boxes", f, &[b.clone(), fixed(d), fixed(4)]).map_err(wrap)?;
            g.output(&ds, "det_scores", f, &[b.clone(), fixed(d)]).map_err(wrap)?;
            g.output(&dl, "det_labels", i, &[b.clone(), fixed(d)]).map_err(wrap)?;
            g.output(&n, "num_dets", i, &[b]).map_err(wrap)?;
            outputs.extend(["det_boxes", "det_scores", "det_labels", "num_dets"]);
        }
        let json = |v: serde_json::Result<String>| v.map_err(candle_core::Error::wrap);
        let preprocessing = match cfg.family {
            Family::Torchvision => {
                "RGB / 255, (x - mean) / std, then resized to input_size (bilinear, half-pixel centres)"
            }
            Family::TfOdApi => {
                "RGB 0..255 resized to input_size (TF1 ResizeBilinear, legacy pixel centres), then (x / 255 - mean) / std"
            }
        };
        let metadata = vec![
            ("model".to_string(), cfg.name.clone()),
            ("family".to_string(), json(serde_json::to_string(&cfg.family))?.trim_matches('"').to_string()),
            ("input_name".to_string(), "images".to_string()),
            ("input_size".to_string(), format!("[{h}, {w}]")),
            ("preprocessing".to_string(), preprocessing.to_string()),
            ("mean".to_string(), json(serde_json::to_string(&cfg.image_mean))?),
            ("std".to_string(), json(serde_json::to_string(&cfg.image_std))?),
            ("class_names".to_string(), json(serde_json::to_string(&cfg.labels))?),
            ("anchors".to_string(), json(serde_json::to_string(&cfg.anchors))?),
            ("num_anchors".to_string(), anchors.to_string()),
            ("score_threshold".to_string(), cfg.postprocess.score_thresh.to_string()),
            ("iou_threshold".to_string(), cfg.postprocess.nms_thresh.to_string()),
            ("topk_candidates".to_string(), cfg.postprocess.topk_candidates.to_string()),
            ("detections_per_img".to_string(), cfg.postprocess.detections_per_img.to_string()),
            ("box_format".to_string(), "xyxy, network-input pixels, clipped to the input".to_string()),
            ("outputs".to_string(), outputs.join(", ")),
        ];
        let doc = format!(
            "{} exported by mixdet (BatchNorm folded; boxes decoded{})",
            cfg.name,
            if with_nms { ", NMS" } else { "" }
        );
        Ok(g.into_model(env!("CARGO_PKG_VERSION"), &doc, &metadata))
    }
}
