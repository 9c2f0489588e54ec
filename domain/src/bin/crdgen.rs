//! crdgen: writes Palisade's CRD YAML files into the directories given as arguments.

use std::{fs, path::PathBuf};

fn main() {
    let dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        eprintln!("usage: crdgen DIR [DIR...]");
        std::process::exit(2);
    }
    for dir in &dirs {
        let written = fs::create_dir_all(dir).and_then(|()| {
            for (file, crd) in palisade_domain::all_crds() {
                fs::write(dir.join(&file), palisade_domain::crd_yaml(&crd))?;
            }
            Ok(())
        });
        if let Err(e) = written {
            eprintln!("crdgen: writing into {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
}
