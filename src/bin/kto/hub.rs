//! `--model hf:owner/name[@rev][:file]`: download what the engine's plan (`kto_studio::hub`) names
//! into the Hugging Face cache layout `huggingface_hub` uses (so Python users share the files):
//! `models--owner--name/{blobs/<etag>, snapshots/<commit>/<file> -> blob, refs/<rev>}`. Only GET
//! requests; an interrupted download resumes with a byte range; offline (`HF_HUB_OFFLINE=1`, or the
//! Hub unreachable) the cached snapshot opens without any request.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kto_studio::hub::{self, Listing, RepoRef};
use kto_studio::{Error, Result};

fn err(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub` (huggingface_hub's order).
fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/huggingface/hub")
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| ["1", "true", "yes", "on"].contains(&v.to_lowercase().as_str()))
}

/// The local path of a Hub model, downloading what is missing.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let repo = RepoRef::parse(spec)?;
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| hub::DEFAULT_ENDPOINT.to_string());
    let dir = cache_root().join(hub::cache_folder(&repo.id));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let listing = if offline() {
        None
    } else {
        match get_listing(&agent, &repo, &endpoint) {
            Ok(l) => Some(l),
            Err(Unreachable(e)) => {
                eprintln!("the Hub ({endpoint}) is unreachable ({e}); looking in the cache {}", dir.display());
                None
            }
            Err(Refused(e)) => return Err(e),
        }
    };
    let (sha, files) = match listing {
        Some(l) => {
            let plan = hub::Plan::new(&repo, &endpoint, &l)?;
            for f in &plan.files {
                let link = dir.join("snapshots").join(&l.sha).join(&f.name);
                if !link.is_file() {
                    download(&agent, &repo, f, &l.sha, &dir)?;
                }
            }
            if repo.revision != l.sha {
                write_ref(&dir, &repo.revision, &l.sha)?;
            }
            (l.sha, plan.files.into_iter().map(|f| f.name).collect::<Vec<_>>())
        }
        None => (cached_commit(&dir, &repo)?, Vec::new()),
    };
    let snapshot = dir.join("snapshots").join(&sha);
    let single = repo.file.clone().or_else(|| files.iter().find(|f| f.to_lowercase().ends_with(".gguf")).cloned());
    Ok(match single {
        Some(f) => snapshot.join(f),
        None => snapshot,
    })
}

enum ListingError {
    /// No answer at all: fall back to the cache.
    Unreachable(String),
    /// The Hub answered no (unknown repo, gated model...): say so.
    Refused(Error),
}
use ListingError::{Refused, Unreachable};

fn get_listing(agent: &ureq::Agent, repo: &RepoRef, endpoint: &str) -> std::result::Result<Listing, ListingError> {
    let url = repo.listing_url(endpoint);
    let mut resp = agent.get(&url).call().map_err(|e| Unreachable(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().with_config().limit(16 << 20).read_to_vec().map_err(|e| Unreachable(e.to_string()))?;
    match status {
        200 => Listing::parse(&body).map_err(Refused),
        401 | 403 => Err(Refused(err(format!(
            "the Hub refuses {} ({status}): the model is gated or private; accept its licence on the Hub and \
             download it there, then open the folder",
            repo.id
        )))),
        404 => Err(Refused(err(format!("the Hub has no model {} at revision {}", repo.id, repo.revision)))),
        s => Err(Unreachable(format!("HTTP {s}"))),
    }
}

/// The commit a revision resolved to when it was last downloaded (or the revision itself when
/// it is a cached commit).
fn cached_commit(dir: &Path, repo: &RepoRef) -> Result<String> {
    let from_ref = std::fs::read_to_string(dir.join("refs").join(&repo.revision)).ok().map(|s| s.trim().to_string());
    let sha = from_ref.unwrap_or_else(|| repo.revision.clone());
    if dir.join("snapshots").join(&sha).is_dir() {
        return Ok(sha);
    }
    Err(err(format!(
        "{}@{} is not in the cache ({}) and the Hub cannot be asked (offline): connect once to download it",
        repo.id,
        repo.revision,
        dir.display()
    )))
}

fn write_ref(dir: &Path, revision: &str, sha: &str) -> Result<()> {
    let path = dir.join("refs").join(revision);
    std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| err(format!("cannot write the cache: {e}")))?;
    std::fs::write(&path, sha).map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

/// Download `file` at the listing's commit into `blobs/` and link it from the snapshot, resuming
/// a partial download (three tries in this run, and across runs).
fn download(agent: &ureq::Agent, repo: &RepoRef, f: &hub::PlannedFile, sha: &str, dir: &Path) -> Result<()> {
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(|e| err(format!("cannot create {}: {e}", blobs.display())))?;
    let file = f.name.as_str();
    let partial = blobs.join(format!("{sha}.{}.incomplete", file.replace('/', "%2F")));
    let mut last = String::new();
    for _ in 0..3 {
        match fetch_into(agent, &f.url, &partial, file, f.size) {
            Ok(etag) => {
                let blob = blobs.join(&etag);
                std::fs::rename(&partial, &blob).map_err(|e| err(format!("cannot move {}: {e}", blob.display())))?;
                return link(dir, sha, file, &etag);
            }
            Err(e) => {
                eprintln!("\n{file}: {e}; resuming");
                last = e.to_string();
            }
        }
    }
    Err(err(format!("downloading {file} of {} failed three times: {last}", repo.id)))
}

/// GET `url` into `partial` (appending to what is there with a byte range); the blob name.
fn fetch_into(agent: &ureq::Agent, url: &str, partial: &Path, file: &str, size: Option<u64>) -> Result<String> {
    let have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", &format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| err(e.to_string()))?;
    let status = resp.status().as_u16();
    let header = |k: &str| resp.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let etag = header("x-linked-etag").or_else(|| header("etag")).and_then(|e| hub::blob_name(&e));
    let etag = etag.ok_or_else(|| err(format!("the Hub sent {file} without an ETag")))?;
    let (mut out, mut done) = match status {
        206 => (std::fs::OpenOptions::new().append(true).open(partial).map_err(|e| err(e.to_string()))?, have),
        200 => (std::fs::File::create(partial).map_err(|e| err(e.to_string()))?, 0),
        // The partial file is already whole (or stale): start over next time.
        416 => {
            let _ = std::fs::remove_file(partial);
            return Err(err("the saved part does not fit the file any more"));
        }
        s => return Err(err(format!("HTTP {s} for {url}"))),
    };
    let total = size.or_else(|| header("content-length").and_then(|n| n.parse::<u64>().ok()).map(|n| n + done));
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut shown = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| err(format!("the connection broke: {e}")))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| err(format!("cannot write the cache: {e}")))?;
        done += n as u64;
        if done - shown >= 1 << 20 || Some(done) == total {
            shown = done;
            progress(file, done, total);
        }
    }
    if let Some(t) = total.filter(|&t| t != done) {
        return Err(err(format!("{file} stopped at {done} of {t} bytes")));
    }
    if shown != done {
        progress(file, done, Some(done));
    }
    eprintln!();
    Ok(etag)
}

fn progress(file: &str, done: u64, total: Option<u64>) {
    let mb = |b: u64| b as f64 / 1e6;
    match total {
        Some(t) if t > 0 => {
            eprint!("\r{file}: {:5.1}%  {:.1} / {:.1} MB", 100.0 * done as f64 / t as f64, mb(done), mb(t))
        }
        _ => eprint!("\r{file}: {:.1} MB", mb(done)),
    }
}

/// `snapshots/<commit>/<file>` → `../../blobs/<etag>` (relative, as huggingface_hub links it).
fn link(dir: &Path, sha: &str, file: &str, etag: &str) -> Result<()> {
    let at = dir.join("snapshots").join(sha).join(file);
    std::fs::create_dir_all(at.parent().unwrap()).map_err(|e| err(format!("cannot create the snapshot: {e}")))?;
    let _ = std::fs::remove_file(&at);
    let depth = file.split('/').count() + 1;
    let target = PathBuf::from("../".repeat(depth)).join("blobs").join(etag);
    #[cfg(unix)]
    let made = std::os::unix::fs::symlink(&target, &at);
    #[cfg(not(unix))]
    let made = std::fs::copy(dir.join("blobs").join(etag), &at).map(|_| ());
    made.map_err(|e| err(format!("cannot link {}: {e}", at.display())))
}
