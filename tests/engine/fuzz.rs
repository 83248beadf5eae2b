//! A short seeded run of the fuzz harness (`kto-fuzz`, src/bin/kto-fuzz/) over every format:
//! no panic, abort, hang or memory blow-up. The long runs (10^5 inputs per format) and their
//! numbers are in BENCHMARKS.md.

#[test]
fn a_short_fuzz_run_finds_nothing() {
    let out = std::env::temp_dir().join(format!("kto-fuzz-{}", std::process::id()));
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_kto-fuzz"))
        .args(["--inputs", "300", "--seed", "7", "--jobs", "2", "--out"])
        .arg(&out)
        .output()
        .expect("run kto-fuzz");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "kto-fuzz failed:\n{stdout}\n{stderr}");
    // One table row per format, each with 300 inputs done.
    for f in ["llama2c", "gguf", "safetensors", "tokenizer", "peft", "jsonl", "template"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {f} |")))
            .unwrap_or_else(|| panic!("no row for {f}:\n{stdout}"));
        assert!(row.starts_with(&format!("| {f} | 300 |")), "{row}");
    }
    let _ = std::fs::remove_dir_all(out);
}
