//! Replays the decoder fuzz target's committed corpus (`fuzz/corpus/decode_message`) through
//! the target's own check on the stable toolchain.

#[test]
fn the_decoder_passes_its_fuzz_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_message");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| capnweb::fuzzing::decode_message(&data)).is_err() {
            panic!("{} fails the decoder's fuzz check", path.display());
        }
        count += 1;
    }
    assert!(count > 0, "the decoder's fuzz corpus is empty");
}
