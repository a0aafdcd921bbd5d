//! A watched branch of a git repository, read with the `git` command-line tool.
//!
//! Why the CLI rather than a git library: it speaks every transport (https, ssh, file,
//! local paths) with the credentials, proxies and known-hosts the operator already
//! configured for git, it is present wherever registries are pushed from, and it keeps
//! libgit2/gitoxide (hundreds of crates, minutes of build) out of the binary. The runtime
//! only needs "fetch one branch, read one file at its head", which is two commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Snapshot, Source, SourceError};

/// A repository URL (or local path), a branch and the registry's path inside it.
#[derive(Debug, Clone)]
pub struct GitSource {
    url: String,
    branch: String,
    file: String,
    cache: PathBuf,
}

impl GitSource {
    /// A source for `file` on `branch` of `url`, fetched into the bare repository `cache`
    /// (created on first use).
    pub fn new(
        url: impl Into<String>,
        branch: impl Into<String>,
        file: impl Into<String>,
        cache: impl Into<PathBuf>,
    ) -> Self {
        GitSource {
            url: url.into(),
            branch: branch.into(),
            file: file.into(),
            cache: cache.into(),
        }
    }

    /// The watched branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    fn git(&self, args: &[&str]) -> Result<Vec<u8>, SourceError> {
        let output = Command::new("git")
            .arg("--git-dir")
            .arg(&self.cache)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| SourceError(format!("cannot run git (is it installed?): {e}")))?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("failed");
            Err(SourceError(format!(
                "git {}: {}",
                args.first().unwrap_or(&""),
                redact_url(first)
            )))
        }
    }

    fn ensure_cache(&self) -> Result<(), SourceError> {
        if self.cache.join("HEAD").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.cache)
            .map_err(|e| SourceError(format!("cannot create {}: {e}", self.cache.display())))?;
        let status = Command::new("git")
            .args(["init", "--bare", "--quiet"])
            .arg(&self.cache)
            .status()
            .map_err(|e| SourceError(format!("cannot run git (is it installed?): {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(SourceError(format!(
                "git init {} failed",
                self.cache.display()
            )))
        }
    }
}

/// Hides user information in URLs that git echoes (`https://user:token@host` → `https://***@host`).
fn redact_url(line: &str) -> String {
    line.split(' ')
        .map(|word| match (word.find("://"), word.find('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &word[..scheme + 3], &word[at..])
            }
            _ => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Source for GitSource {
    fn read(&self) -> Result<Snapshot, SourceError> {
        self.ensure_cache()?;
        let refspec = format!("+refs/heads/{b}:refs/remotes/origin/{b}", b = self.branch);
        self.git(&[
            "fetch",
            "--quiet",
            "--depth",
            "1",
            "--no-tags",
            &self.url,
            &refspec,
        ])?;
        let sha = String::from_utf8_lossy(
            &self.git(&["rev-parse", &format!("refs/remotes/origin/{}", self.branch)])?,
        )
        .trim()
        .to_string();
        let listed = self.git(&["ls-tree", "--name-only", &sha, "--", &self.file])?;
        let text = if listed.is_empty() {
            // The registry file was deleted on the branch: no connectors.
            String::new()
        } else {
            let blob = self.git(&["show", &format!("{sha}:{}", self.file)])?;
            String::from_utf8(blob)
                .map_err(|_| SourceError(format!("{} at {sha} is not UTF-8 text", self.file)))?
        };
        Ok(Snapshot {
            text,
            revision: Some(sha),
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} on {})",
            redact_url(&self.url),
            self.file,
            self.branch
        )
    }
}

/// A cache directory for `url` under `base`.
pub fn cache_dir(base: &Path, url: &str) -> PathBuf {
    base.join(format!(
        "registry-{}.git",
        crate::registry::build::revision_of(url)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_hidden() {
        assert_eq!(
            redact_url("fatal: could not read from https://bob:t0ken@git.example.com/r.git"),
            "fatal: could not read from https://***@git.example.com/r.git"
        );
    }
}
