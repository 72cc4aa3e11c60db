//! Writes the `log_recovery` fuzz seeds (`dataplane_log::fuzzing::seed_inputs`) into a
//! directory, one file per seed, named by index.
//!
//! `cargo run -p dataplane-log --features fuzzing --example fuzz_seeds -- <directory>`

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz_seeds <directory>");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir)?;
    let seeds = dataplane_log::fuzzing::seed_inputs();
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), seed)?;
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
    Ok(())
}
