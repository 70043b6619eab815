//! Artifacts in a shared object store (through the `object_store` crate), for workers on several
//! hosts without a shared file system: `FLOWPRIOR_ARTIFACTS=s3://BUCKET/PREFIX` (credentials, region
//! and endpoint from the usual `AWS_*` variables) or `file:///shared/dir`.
//!
//! A run still writes its files into its local run folder. Recording one as an artifact uploads it to
//! `PREFIX/STAGE/CONFIG_HASH/run-ID/KIND/FILE` (one PUT: an object store never shows a partial
//! object) and records that URL with the file's SHA-256. A worker that needs it as an input fetches it
//! into its local cache (`cache/SHA256/FILE` under the local artifacts folder, written to a temporary
//! name and renamed), checks the SHA-256, and reuses the cached copy next time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{ARTIFACTS_ENV, Result, StoreError};

/// An object store holding artifacts, and the URL prefix they are addressed by.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket` or `file://` (no trailing slash), what recorded URLs start with.
    base: String,
    /// The key prefix inside the store (no leading or trailing slash; may be empty).
    prefix: String,
}

/// Whether a recorded artifact path is an object URL rather than a local file.
pub fn is_object_url(path: &str) -> bool {
    path.starts_with("s3://") || path.starts_with("file://")
}

/// The store part of an object URL recorded for an artifact: `s3://BUCKET` of `s3://BUCKET/KEY`. (A
/// `file://` URL's directory cannot be told from its key: only the configured store reads those.)
pub fn store_of(url: &str) -> Result<&str> {
    match url.strip_prefix("s3://").and_then(|rest| rest.find('/')) {
        Some(i) => Ok(&url[..5 + i]),
        None => Err(err(
            "cannot read",
            url,
            "set FLOWPRIOR_ARTIFACTS to the store that holds it",
        )),
    }
}

fn err(what: &str, target: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Objects(format!("{what} {target}: {e}"))
}

impl Objects {
    /// The object store `FLOWPRIOR_ARTIFACTS` names, when it is an `s3://` or `file://` URL.
    pub fn from_env() -> Result<Option<Objects>> {
        match std::env::var(ARTIFACTS_ENV) {
            Ok(url) if is_object_url(&url) => Objects::open(&url).map(Some),
            _ => Ok(None),
        }
    }

    /// Opens the object store at `url` (`s3://BUCKET[/PREFIX]` or `file:///DIR[/PREFIX]`).
    pub fn open(url: &str) -> Result<Objects> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(err("no bucket in", url, "expected s3://BUCKET/PREFIX"));
            }
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| err("cannot use", url, e))?;
            return Ok(Objects {
                store: Arc::new(s3),
                base: format!("s3://{bucket}"),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(dir) = url.strip_prefix("file://") {
            std::fs::create_dir_all(dir).map_err(|e| err("cannot create", dir, e))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| err("cannot use", url, e))?;
            return Ok(Objects {
                store: Arc::new(fs),
                base: format!("file://{}", dir.trim_end_matches('/')),
                prefix: String::new(),
            });
        }
        Err(err(
            "unsupported artifact store",
            url,
            "expected s3://BUCKET/PREFIX or file:///DIR",
        ))
    }

    /// Whether `url` is an object of this store.
    pub fn holds(&self, url: &str) -> bool {
        url.strip_prefix(&self.base)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The key of `KIND/FILE` of a run, addressed by its stage and configuration hash.
    fn key(&self, stage: &str, config_hash: &str, run: i64, kind: &str, file: &str) -> String {
        let key = format!("{stage}/{config_hash}/run-{run}/{kind}/{file}");
        if self.prefix.is_empty() {
            key
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Uploads `path` as the run's `kind` artifact; returns the URL it is recorded under.
    pub async fn upload(
        &self,
        path: &Path,
        stage: &str,
        config_hash: &str,
        run: i64,
        kind: &str,
    ) -> Result<String> {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| kind.to_string());
        let key = self.key(stage, config_hash, run, kind, &file);
        let url = format!("{}/{key}", self.base);
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| err("cannot read", &path.display().to_string(), e))?;
        self.store
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
            .map_err(|e| err("cannot upload to", &url, e))?;
        Ok(url)
    }

    /// The local copy of the object at `url` with SHA-256 `sha` in `cache` (fetched when missing or
    /// different, written to a temporary name and renamed, then checked).
    pub async fn fetch(&self, url: &str, sha: &str, cache: &Path) -> Result<PathBuf> {
        let key = url
            .strip_prefix(&self.base)
            .map(|k| k.trim_start_matches('/'))
            .ok_or_else(|| err("not in the artifact store", url, &self.base))?;
        let file = key.rsplit('/').next().unwrap_or("artifact");
        let dir = cache.join(sha);
        let local = dir.join(file);
        if local.is_file() && crate::util::sha256_file(&local).is_ok_and(|(now, _)| now == sha) {
            return Ok(local);
        }
        let bytes = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| err("cannot fetch", url, e))?
            .bytes()
            .await
            .map_err(|e| err("cannot fetch", url, e))?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| err("cannot create", &dir.display().to_string(), e))?;
        let tmp = dir.join(format!(".{file}.{}.part", std::process::id()));
        std::fs::write(&tmp, &bytes)
            .map_err(|e| err("cannot write", &tmp.display().to_string(), e))?;
        std::fs::rename(&tmp, &local)
            .map_err(|e| err("cannot write", &local.display().to_string(), e))?;
        Ok(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_store_round_trips_an_artifact_by_stage_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        let url = format!("file://{}", shared.display());
        let objects = Objects::open(&url).unwrap();
        let src = dir.path().join("w.mpk");
        std::fs::write(&src, b"weights").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let recorded = rt
            .block_on(objects.upload(&src, "toy_prior", "abc123", 7, "weights"))
            .unwrap();
        assert_eq!(
            recorded,
            format!("{url}/toy_prior/abc123/run-7/weights/w.mpk")
        );
        assert!(
            shared
                .join("toy_prior/abc123/run-7/weights/w.mpk")
                .is_file()
        );
        let (sha, _) = crate::util::sha256_file(&src).unwrap();
        let cache = dir.path().join("cache");
        let local = rt.block_on(objects.fetch(&recorded, &sha, &cache)).unwrap();
        assert_eq!(std::fs::read(&local).unwrap(), b"weights");
        assert_eq!(local, cache.join(&sha).join("w.mpk"));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(cache.join(&sha)).unwrap().count(), 1);
        assert!(matches!(
            Objects::open("gs://bucket/x"),
            Err(StoreError::Objects(m)) if m.contains("expected s3://")
        ));
    }
}
