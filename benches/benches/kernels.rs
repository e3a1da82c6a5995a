//! `cargo bench -p equireg-benches`: the kernel cases, as `equireg bench kernels` runs them.

fn main() {
    let gpu = equireg_gpu::Gpu::new(&Default::default()).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    match equireg_benches::kernels::run(&gpu, filter.as_deref(), &Default::default()) {
        Ok(results) => print!("{}", equireg_benches::harness::table(&results)),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    }
}
