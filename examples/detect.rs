//! Detect objects in one image with a built-in detector and save an overlay
//! (`<image stem>_boxes.png` in the current folder).
//!
//! `cargo run --release --example detect -- IMAGE [MODEL]` (default model: the person detector).

use mixdet::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: detect IMAGE [MODEL]")?;
    let model = args.next().unwrap_or_else(|| "ssdlite300_mobilenet_v2_person".into());
    let detector = Detector::builtin(&model, &Device::Cpu)?;
    let mut image = image::open(&path)?.to_rgb8();
    let found = detector.detect(&image)?;
    for d in &found {
        println!("{} {:.2} [{:.0}, {:.0}, {:.0}, {:.0}]", d.name, d.score, d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]);
    }
    draw_detections(&mut image, &found);
    let stem = std::path::Path::new(&path).file_stem().ok_or("IMAGE has no file name")?.to_string_lossy();
    let out = std::path::PathBuf::from(format!("{stem}_boxes.png"));
    image.save(&out)?;
    println!("{} detections; overlay: {}", found.len(), out.display());
    Ok(())
}
