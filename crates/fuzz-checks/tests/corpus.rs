//! Replays every committed corpus input of every fuzz target through the target's own check,
//! on the stable toolchain: the fuzzer's past finds stay fixed wherever `cargo test` runs.

use std::path::{Path, PathBuf};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn every_fuzz_target_has_a_corpus_and_passes_it() {
    let root = corpus_root();
    let mut replayed = 0;
    for (name, check) in fuzz_checks::TARGETS {
        let dir = root.join(name);
        let inputs = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus of {name} at {}: {e}", dir.display()));
        let mut count = 0;
        for entry in inputs {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!("{name}: {} fails: {}", path.display(), why.unwrap_or_default());
            }
            count += 1;
        }
        assert!(count > 0, "the corpus of {name} is empty");
        replayed += count;
    }
    println!("fuzz corpus replay: {replayed} inputs through {} targets", fuzz_checks::TARGETS.len());
}

#[test]
fn every_libfuzzer_binary_names_a_replayed_target() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/Cargo.toml")).unwrap();
    let mut bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "ordermesh-fuzz")
        .collect();
    bins.sort_unstable();
    let targets: Vec<&str> = fuzz_checks::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(bins, targets, "fuzz/Cargo.toml's binaries and the replayed targets differ");
}
