//! `kto … --model hf:owner/name` against a local stand-in for the Hub (tests/hub/server.mjs serving
//! a family model under the Hub's URL layout): the listing and only the files the model needs are
//! fetched, with GET alone; a download broken off halfway resumes with a byte range; the files land
//! in the `huggingface_hub` cache layout (refs, snapshots linking blobs named by ETag); and the
//! model then opens offline, with the server gone.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

const REPO: &str = "kto-test/tiny-qwen3";

struct Hub {
    child: Child,
    url: String,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_hub(cut: Option<&str>) -> Hub {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("node");
    cmd.arg(root.join("tests/hub/server.mjs"))
        .arg("--repo")
        .arg(format!("{REPO}={}", root.join("tests/golden/family/qwen3_05").display()));
    if let Some(c) = cut {
        cmd.args(["--cut", c]);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("node (scripts/setup.sh installs it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.strip_prefix("hub ").unwrap_or_else(|| panic!("{first}")).to_string();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            log.lock().unwrap().push(serde_json::from_str::<Value>(&line).unwrap());
        }
    });
    Hub { child, url, requests }
}

fn kto(args: &[&str], endpoint: &str, cache: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kto"))
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", cache)
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap()
}

fn generate(endpoint: &str, cache: &Path) -> (String, String) {
    let out = kto(
        &["generate", "--model", &format!("hf:{REPO}"), "--prompt", "Once", "--temperature", "0", "--max-tokens", "6"],
        endpoint,
        cache,
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (String::from_utf8(out.stdout).unwrap(), err)
}

#[test]
fn a_hub_model_downloads_once_resumes_and_opens_offline() {
    let cache: PathBuf = std::env::temp_dir().join(format!("kto-hub-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let hub = start_hub(Some("model.safetensors"));
    let (text, log) = generate(&hub.url, &cache);
    assert!(log.contains("resuming"), "the broken download was resumed: {log}");

    // Only GETs: the listing, then each needed file at the listing's commit (README, reference
    // files and anything else in the repo are never fetched); the cut file once more with a range.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let requests = hub.requests.lock().unwrap().clone();
    let sha = requests
        .iter()
        .find_map(|r| {
            r["path"].as_str().unwrap().split("/resolve/").nth(1).map(|s| s.split('/').next().unwrap().to_string())
        })
        .unwrap();
    let seen: Vec<(String, String, Option<String>)> = requests
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().into(),
                r["path"].as_str().unwrap().into(),
                r["range"].as_str().map(String::from),
            )
        })
        .collect();
    let get = |p: String, range: Option<String>| ("GET".to_string(), p, range);
    let file = |f: &str| format!("/{REPO}/resolve/{sha}/{f}");
    let half =
        std::fs::metadata(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/family/qwen3_05/model.safetensors"))
            .unwrap()
            .len()
            / 2;
    assert_eq!(
        seen,
        vec![
            get(format!("/api/models/{REPO}/revision/main"), None),
            get(file("config.json"), None),
            get(file("tokenizer_config.json"), None),
            get(file("tokenizer.json"), None),
            get(file("model.safetensors"), None),
            get(file("model.safetensors"), Some(format!("bytes={half}-"))),
        ]
    );

    // huggingface_hub's layout: refs/main → commit; snapshot files are links into blobs/<sha256>.
    let repo_dir = cache.join("models--kto-test--tiny-qwen3");
    assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(), sha);
    let link = repo_dir.join("snapshots").join(&sha).join("model.safetensors");
    let target = std::fs::read_link(&link).unwrap();
    assert!(target.starts_with("../../blobs"), "{target:?}");
    let blob = std::fs::read(&link).unwrap();
    let original =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/family/qwen3_05/model.safetensors"))
            .unwrap();
    assert_eq!(blob, original, "the resumed file is whole");
    assert!(
        std::fs::read_dir(repo_dir.join("blobs")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".incomplete"))
    );

    // Again: the cache answers, only the listing is asked for.
    let before = hub.requests.lock().unwrap().len();
    let (again, _) = generate(&hub.url, &cache);
    assert_eq!(again, text);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after: Vec<Value> = hub.requests.lock().unwrap()[before..].to_vec();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0]["path"].as_str().unwrap().starts_with("/api/models/"));

    // Offline: the server is gone, the same model opens from the cache.
    drop(hub);
    let (offline, log) = generate("http://127.0.0.1:9", &cache);
    assert_eq!(offline, text);
    assert!(log.contains("unreachable"), "{log}");

    // Clear errors: an unknown repo, a malformed id, a model not in the cache while offline.
    let hub = start_hub(None);
    let out = kto(&["generate", "--model", "hf:kto-test/nope", "--prompt", "x"], &hub.url, &cache);
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no model kto-test/nope"), "{out:?}");
    let out = kto(&["generate", "--model", "hf:not a repo", "--prompt", "x"], &hub.url, &cache);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a Hub model id"), "{out:?}");
    drop(hub);
    let out = kto(&["generate", "--model", "hf:kto-test/other", "--prompt", "x"], "http://127.0.0.1:9", &cache);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not in the cache"), "{out:?}");
    std::fs::remove_dir_all(&cache).unwrap();
}

/// The plan, on listings real repos have: a single-file model, a sharded one, a GGUF repo with one
/// file or several (named with `:file`), and what cannot be opened, each with its reason.
#[test]
fn the_hub_plan_picks_what_a_model_needs() {
    use kto_studio::hub::{Listing, Plan, RepoRef, plan};
    let listing = |files: &[&str]| {
        let siblings: Vec<Value> = files.iter().map(|f| serde_json::json!({ "rfilename": f, "size": 10 })).collect();
        Listing::parse(serde_json::json!({ "sha": "0123abcd", "siblings": siblings }).to_string().as_bytes()).unwrap()
    };
    let repo = |s: &str| RepoRef::parse(s).unwrap();
    let hf = [
        "README.md",
        ".gitattributes",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "onnx/model.onnx",
        "chat_template.jinja",
    ];
    assert_eq!(
        plan(&listing(&hf), &repo("hf:Qwen/Qwen3-0.6B")).unwrap(),
        ["config.json", "tokenizer_config.json", "chat_template.jinja", "tokenizer.json", "model.safetensors"]
    );
    let sharded = [
        "config.json",
        "tokenizer.json",
        "model.safetensors.index.json",
        "model-00002-of-00002.safetensors",
        "model-00001-of-00002.safetensors",
        "consolidated.safetensors",
    ];
    assert_eq!(
        plan(&listing(&sharded), &repo("a/b")).unwrap(),
        [
            "config.json",
            "tokenizer.json",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors"
        ]
    );
    assert_eq!(plan(&listing(&["x.Q4_K_M.gguf", "README.md"]), &repo("a/b-GGUF")).unwrap(), ["x.Q4_K_M.gguf"]);
    let many = listing(&["x.Q4_K_M.gguf", "x.Q8_0.gguf"]);
    let err = plan(&many, &repo("a/b-GGUF")).unwrap_err().to_string();
    assert!(err.contains("name one") && err.contains("x.Q8_0.gguf") && err.contains("hf:a/b-GGUF@main:FILE"), "{err}");
    assert_eq!(plan(&many, &repo("a/b-GGUF@v2:x.Q8_0.gguf")).unwrap(), ["x.Q8_0.gguf"]);
    // The page asks which quantization instead of failing; a named one, or a model folder, is a plan.
    use kto_studio::hub::{Next, next};
    match next(&repo("a/b-GGUF"), "http://h", &many).unwrap() {
        Next::Choose { id, files, .. } => {
            assert_eq!(id, "a/b-GGUF");
            assert_eq!(files.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), ["x.Q4_K_M.gguf", "x.Q8_0.gguf"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(next(&repo("a/b-GGUF:x.Q8_0.gguf"), "http://h", &many).unwrap(), Next::Plan(_)));
    assert!(matches!(next(&repo("a/b"), "http://h", &listing(&hf)).unwrap(), Next::Plan(_)));
    let err =
        plan(&listing(&["config.json", "tokenizer.json", "pytorch_model.bin"]), &repo("a/b")).unwrap_err().to_string();
    assert!(err.contains("not PyTorch .bin"), "{err}");
    let err =
        plan(&listing(&["config.json", "model.safetensors", "vocab.json", "merges.txt"]), &repo("a/b")).unwrap_err();
    assert!(err.to_string().contains("no tokenizer.json"), "{err}");
    let err = plan(&listing(&["README.md"]), &repo("a/b")).unwrap_err().to_string();
    assert!(err.contains("neither a Hugging Face model"), "{err}");

    // Ids, revisions and files: what is accepted and the URLs made of it.
    let r = repo("hf:owner/name@refs/pr/3:sub/dir/m.gguf");
    assert_eq!(
        (r.id.as_str(), r.revision.as_str(), r.file.as_deref()),
        ("owner/name", "refs/pr/3", Some("sub/dir/m.gguf"))
    );
    assert_eq!(r.listing_url("http://h/"), "http://h/api/models/owner/name/revision/refs%2Fpr%2F3");
    assert_eq!(r.file_url("http://h", "abc", "sub/dir/m q.gguf"), "http://h/owner/name/resolve/abc/sub/dir/m%20q.gguf");
    for bad in ["", "hf:", "justname", "a/b/c", "../x/y", "a/b@..", "a/b:../../etc/passwd", "a b/c", "hf:a/.b"] {
        assert!(RepoRef::parse(bad).is_err(), "{bad:?} was accepted");
    }
    // Listings that are not one: a Hub error, no commit, an odd commit, no files.
    for (body, says) in [
        (r#"{"error":"Repository not found"}"#, "the Hub says"),
        (r#"{"siblings":[]}"#, "no commit"),
        (r#"{"sha":"../x","siblings":[]}"#, "odd commit"),
        (r#"{"sha":"abc"}"#, "no files"),
        ("<html>", "not the JSON"),
    ] {
        let err = Listing::parse(body.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(says), "{body}: {err}");
    }
    let p = Plan::new(&repo("a/b"), "http://h", &listing(&hf)).unwrap();
    assert_eq!((p.sha.as_str(), p.folder.as_str(), p.files.len()), ("0123abcd", "models--a--b", 5));
    assert!(p.files.iter().all(|f| f.url.starts_with("http://h/a/b/resolve/0123abcd/") && f.size == Some(10)));
}
