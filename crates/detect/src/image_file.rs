//! Reading image files for detection: one decoder for the CLI, the evaluator and the trainer,
//! with errors that name the file and the problem.

use std::path::{Path, PathBuf};

use image::RgbImage;

/// Why an image file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageFileError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The content is not a format we decode.
    #[error("{path}: not a supported image (JPEG, PNG, WebP, BMP)")]
    Unsupported {
        /// The file.
        path: PathBuf,
    },
    /// The decoder refused the content (truncated, corrupt, or larger than the decoder's limits).
    #[error("{path}: corrupt or unsupported image: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: image::ImageError,
    },
}

impl ImageFileError {
    /// The problem without the file name, for reports that show the file elsewhere.
    pub fn reason(&self) -> String {
        match self {
            ImageFileError::Read { source, .. } => format!("cannot read: {source}"),
            ImageFileError::Unsupported { .. } => "not a supported image (JPEG, PNG, WebP, BMP)".into(),
            ImageFileError::Decode { source, .. } => format!("corrupt or unsupported image: {source}"),
        }
    }
}

/// Decodes an image file to RGB8. The format comes from the content, not the extension; the
/// image crate's default limits (512 MiB per allocation) refuse huge images before decoding.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageFileError> {
    let read = |source| ImageFileError::Read { path: path.to_path_buf(), source };
    let reader = image::ImageReader::open(path).map_err(read)?.with_guessed_format().map_err(read)?;
    if reader.format().is_none() {
        return Err(ImageFileError::Unsupported { path: path.to_path_buf() });
    }
    let img = reader.decode().map_err(|source| ImageFileError::Decode { path: path.to_path_buf(), source })?;
    Ok(img.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = std::env::temp_dir().join(format!("mixdet-image-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let text = dir.join("notes.txt");
        std::fs::write(&text, b"just some text").expect("write");
        let broken = dir.join("broken.png");
        std::fs::write(&broken, b"\x89PNG\r\n\x1a\n truncated").expect("write");
        let missing = dir.join("missing.jpg");
        let e = load_rgb(&text).expect_err("text");
        assert!(matches!(e, ImageFileError::Unsupported { .. }) && e.to_string().contains("notes.txt"), "{e}");
        let e = load_rgb(&broken).expect_err("broken");
        assert!(matches!(e, ImageFileError::Decode { .. }) && e.to_string().contains("broken.png"), "{e}");
        let e = load_rgb(&missing).expect_err("missing");
        assert!(matches!(e, ImageFileError::Read { .. }) && e.to_string().contains("missing.jpg"), "{e}");
        let ok = dir.join("ok.jpg.png");
        RgbImage::new(3, 2).save(&ok).expect("save");
        assert_eq!(load_rgb(&ok).expect("decodes").dimensions(), (3, 2));
        std::fs::remove_dir_all(&dir).ok();
    }
}
