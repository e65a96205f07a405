//! Compiles the CUDA kernels to PTX when the `cuda` feature is on; the default build needs no
//! CUDA toolkit.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "cuda")]
    {
        println!("cargo::rerun-if-changed=src/cuda/mixconv.cu");
        let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
        cudaforge::KernelBuilder::new()
            .source_files(["src/cuda/mixconv.cu"])
            .arg("-O3")
            .arg("-std=c++17")
            .build_ptx()?
            .write(out_dir.join("mixconv_ptx.rs"))?;
    }
    Ok(())
}
