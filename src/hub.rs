//! Opening a model from the Hugging Face Hub by repo id: what to ask the Hub for and which of a
//! repo's files a model needs. The fetching itself belongs to each front end (the CLI downloads
//! into `~/.cache/huggingface/hub`, the page into the Origin Private File System); both follow
//! this plan, so they download the same files and open them the same way.
//!
//! URL layout (the Hub's, and any mirror's that copies it): `{endpoint}/api/models/{id}/revision/{rev}`
//! lists a revision (`sha` and `siblings[].rfilename`); `{endpoint}/{id}/resolve/{rev}/{file}` serves
//! a file (`ETag`, `X-Repo-Commit`, byte ranges for resuming).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;
use crate::error::config_err;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// `hf:owner/name[@revision][:file]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRef {
    pub id: String,
    pub revision: String,
    /// One file to open when the repo holds several models (a GGUF per quantization).
    pub file: Option<String>,
}

impl RepoRef {
    /// Parse `hf:owner/name[@rev][:file]` (the `hf:` prefix optional).
    pub fn parse(spec: &str) -> Result<Self> {
        let s = spec.trim();
        let s = s.strip_prefix("hf:").unwrap_or(s);
        let (rest, file) = match s.split_once(':') {
            Some((r, f)) if !f.is_empty() => (r, Some(f.to_string())),
            Some((r, _)) => (r, None),
            None => (s, None),
        };
        let (id, revision) = match rest.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => (id, rev.to_string()),
            Some((id, _)) => (id, "main".to_string()),
            None => (rest, "main".to_string()),
        };
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.len() <= 96
                && !p.starts_with(['.', '-'])
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        let parts: Vec<&str> = id.split('/').collect();
        if parts.len() != 2 || !parts.iter().all(|p| ok_part(p)) {
            return Err(config_err(format!(
                "{spec:?} is not a Hub model id: write owner/name, e.g. hf:HuggingFaceTB/SmolLM2-135M-Instruct \
                 (optionally @revision and :file.gguf)"
            )));
        }
        if revision.contains("..") || revision.starts_with('/') || revision.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(config_err(format!("{revision:?} is not a revision (a branch, tag or commit)")));
        }
        if let Some(f) = &file
            && (f.split('/').any(|p| p.is_empty() || p == "..") || f.starts_with('/'))
        {
            return Err(config_err(format!("{f:?} is not a file path inside the repo")));
        }
        Ok(Self { id: id.to_string(), revision, file })
    }

    /// The API URL that lists this revision's files.
    pub fn listing_url(&self, endpoint: &str) -> String {
        format!("{}/api/models/{}/revision/{}", endpoint.trim_end_matches('/'), self.id, encode(&self.revision))
    }

    /// The URL of one file at `revision` (use the listing's commit so that every file comes from
    /// the same snapshot even if the branch moves meanwhile).
    pub fn file_url(&self, endpoint: &str, revision: &str, file: &str) -> String {
        let path: Vec<String> = file.split('/').map(encode).collect();
        format!("{}/{}/resolve/{}/{}", endpoint.trim_end_matches('/'), self.id, encode(revision), path.join("/"))
    }
}

/// Percent-encode one URL path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What the Hub says a revision holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    /// The commit the revision resolves to.
    pub sha: String,
    /// `(path, size in bytes when the Hub gives it)`
    pub files: Vec<(String, Option<u64>)>,
}

impl Listing {
    /// Read the JSON of `GET /api/models/{id}/revision/{rev}`.
    pub fn parse(json: &[u8]) -> Result<Self> {
        let v: Value = serde_json::from_slice(json)
            .map_err(|e| config_err(format!("the Hub's answer is not the JSON of a model listing: {e}")))?;
        if let Some(err) = v.get("error").and_then(Value::as_str) {
            return Err(config_err(format!("the Hub says: {err}")));
        }
        let sha = v.get("sha").and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 64);
        let sha = sha.ok_or_else(|| config_err("the Hub's model listing has no commit (sha)"))?;
        if !sha.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(config_err(format!("the Hub's model listing names an odd commit {sha:?}")));
        }
        let siblings = v
            .get("siblings")
            .and_then(Value::as_array)
            .ok_or_else(|| config_err("the Hub's model listing has no files (siblings)"))?;
        let files = siblings
            .iter()
            .filter_map(|s| {
                let name = s.get("rfilename").and_then(Value::as_str)?;
                let size =
                    s.get("size").and_then(Value::as_u64).or_else(|| s.pointer("/lfs/size").and_then(Value::as_u64));
                Some((name.to_string(), size))
            })
            .collect();
        Ok(Self { sha: sha.to_string(), files })
    }

    fn has(&self, name: &str) -> bool {
        self.files.iter().any(|(f, _)| f == name)
    }

    pub fn size(&self, name: &str) -> Option<u64> {
        self.files.iter().find(|(f, _)| f == name).and_then(|(_, s)| *s)
    }
}

/// The files of the listing that a model needs, in download order (small files first): a
/// Hugging Face model's config, tokenizer and weights (`model.safetensors`, or the index and the
/// shards it names: `model-*-of-*.safetensors`), or one GGUF file.
pub fn plan(listing: &Listing, repo: &RepoRef) -> Result<Vec<String>> {
    if let Some(f) = &repo.file {
        if !listing.has(f) {
            return Err(config_err(format!("{} has no file {f} at {}", repo.id, repo.revision)));
        }
        if f.to_lowercase().ends_with(".gguf") {
            return Ok(vec![f.clone()]);
        }
    }
    if listing.has("config.json") {
        let mut files = vec!["config.json".to_string()];
        for f in ["tokenizer_config.json", crate::bundle::CHAT_TEMPLATE] {
            if listing.has(f) {
                files.push(f.to_string());
            }
        }
        if !listing.has("tokenizer.json") {
            return Err(config_err(format!(
                "{} has no tokenizer.json (only a slow tokenizer?): KTO Studio needs the fast tokenizer's file",
                repo.id
            )));
        }
        files.push("tokenizer.json".into());
        match &repo.file {
            Some(f) if f.ends_with(".safetensors") => files.push(f.clone()),
            Some(f) => return Err(config_err(format!("{f} is neither a .safetensors nor a .gguf file"))),
            None if listing.has("model.safetensors") => files.push("model.safetensors".into()),
            None if listing.has("model.safetensors.index.json") => {
                files.push("model.safetensors.index.json".into());
                let mut shards: Vec<String> = listing
                    .files
                    .iter()
                    .map(|(f, _)| f.clone())
                    .filter(|f| f.starts_with("model-") && f.ends_with(".safetensors") && f.contains("-of-"))
                    .collect();
                shards.sort();
                files.extend(shards);
            }
            None => {
                return Err(config_err(format!(
                    "{} has config.json but no model.safetensors (nor an index of shards): KTO Studio reads \
                     safetensors or GGUF weights, not PyTorch .bin files",
                    repo.id
                )));
            }
        }
        return Ok(files);
    }
    let ggufs: Vec<&String> =
        listing.files.iter().map(|(f, _)| f).filter(|f| f.to_lowercase().ends_with(".gguf")).collect();
    match ggufs.as_slice() {
        [one] => Ok(vec![one.to_string()]),
        [] => Err(config_err(format!(
            "{} holds neither a Hugging Face model (config.json) nor a GGUF file KTO Studio could open",
            repo.id
        ))),
        many => Err(config_err(format!(
            "{} holds {} GGUF files; name one: hf:{}@{}:FILE with FILE one of {}",
            repo.id,
            many.len(),
            repo.id,
            repo.revision,
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// What to do with a listing: fetch a plan, or let the user pick one of several GGUF files (a
/// GGUF repo usually holds one per quantization: Q4_K_M, Q5_K_M, Q8_0...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Next {
    Plan(Plan),
    Choose { id: String, revision: String, files: Vec<(String, Option<u64>)> },
}

/// The plan, or the GGUF files to choose from when the repo holds several and none was named.
pub fn next(repo: &RepoRef, endpoint: &str, listing: &Listing) -> Result<Next> {
    let ggufs: Vec<(String, Option<u64>)> =
        listing.files.iter().filter(|(f, _)| f.to_lowercase().ends_with(".gguf")).cloned().collect();
    if repo.file.is_none() && !listing.has("config.json") && ggufs.len() > 1 {
        return Ok(Next::Choose { id: repo.id.clone(), revision: repo.revision.clone(), files: ggufs });
    }
    Plan::new(repo, endpoint, listing).map(Next::Plan)
}

/// The cache key of a downloaded file: the Hub's ETag without quotes or the weak-validator prefix
/// (for large files the sha256 of the content), as `huggingface_hub` names its blobs.
pub fn blob_name(etag: &str) -> Option<String> {
    let e = etag.trim().trim_start_matches("W/").trim_matches('"');
    (!e.is_empty() && e.len() <= 128 && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then(|| e.to_string())
}

/// The folder name of a repo in the Hub cache: `models--owner--name`.
pub fn cache_folder(id: &str) -> String {
    format!("models--{}", id.replace('/', "--"))
}

/// One file of a download plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedFile {
    pub name: String,
    pub size: Option<u64>,
    pub url: String,
}

/// Everything a front end needs to fetch a model: where it lives, the commit, and each file with
/// its URL at that commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub revision: String,
    pub sha: String,
    /// The cache folder (`models--owner--name`).
    pub folder: String,
    pub files: Vec<PlannedFile>,
}

impl Plan {
    /// The plan for `repo` given the Hub's listing of its revision.
    pub fn new(repo: &RepoRef, endpoint: &str, listing: &Listing) -> Result<Self> {
        let files = plan(listing, repo)?
            .into_iter()
            .map(|name| PlannedFile {
                size: listing.size(&name),
                url: repo.file_url(endpoint, &listing.sha, &name),
                name,
            })
            .collect();
        Ok(Self {
            id: repo.id.clone(),
            revision: repo.revision.clone(),
            sha: listing.sha.clone(),
            folder: cache_folder(&repo.id),
            files,
        })
    }
}
