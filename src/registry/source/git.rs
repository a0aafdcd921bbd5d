//! A watched branch of a git repository, read with the `git` command-line tool.
//!
//! Why the CLI rather than a git library: it speaks every transport (https, ssh, file,
//! local paths), it is present wherever registries are pushed from, and it keeps
//! libgit2/gitoxide (hundreds of crates, minutes of build) out of the binary. The runtime
//! only needs "fetch one branch, read one file at its head", which is a few commands.
//!
//! git is run hermetically, because a fetch cache is a place other users may have touched:
//! - The cache must be this user's: created 0700, and refused (with the path and the reason)
//!   if it, or the directory holding it, is owned by another uid or writable by group or
//!   others. Another local user could otherwise prepare `$TMPDIR/...-<hash>.git` with hooks
//!   or config of their choosing (the 2026-12 probe ran a hook as root that way).
//! - Hooks never run (`core.hooksPath=/dev/null`), system and global config are not read
//!   (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`), replace refs are ignored, and
//!   the cache's own config is rewritten before every fetch (see [`CACHE_CONFIG`]).
//! - So git settings do not come from `~/.gitconfig`: credentials go in the URL (hidden in
//!   logs and the build status) or in an ssh key/agent (ssh reads its own config), and other
//!   settings can be given through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_<n>`/
//!   `GIT_CONFIG_VALUE_<n>` in the runtime's environment, which the operator controls.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Snapshot, Source, SourceError};

/// The whole config of the fetch cache, written before every fetch.
///
/// Rewritten rather than trusted or patched: git has no switch to ignore a repository's own
/// config, and the keys that change what a fetch does are many and keep growing
/// (`url.*.insteadOf` redirects the URL given on the command line, `core.sshCommand`,
/// `core.gitProxy`, `core.fsmonitor`, `http.*`, `include.path`/`includeIf`, `remote.*`,
/// `protocol.*`, ...). Neutralising a list of them with `-c` misses the next one, and a
/// multi-valued key such as `insteadOf` cannot be unset from the command line at all. The
/// fetch takes an explicit URL and refspec, so the cache needs nothing but this.
pub const CACHE_CONFIG: &str =
    "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n";

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
    /// (created on first use, private to this user).
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
    pub(crate) fn branch(&self) -> &str {
        &self.branch
    }

    /// `git` with nothing from outside the runtime's control: no hooks, no system or global
    /// config, no replace refs, no prompts. (`GIT_CONFIG_GLOBAL` needs git 2.32 or later.)
    fn command() -> Command {
        let mut command = Command::new("git");
        command
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .args(["-c", "core.hooksPath=/dev/null"]);
        command
    }

    fn git(&self, args: &[&str]) -> Result<Vec<u8>, SourceError> {
        let output = Self::command()
            .arg("--git-dir")
            .arg(&self.cache)
            .args(args)
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

    /// Makes sure the cache is a private bare repository of this user whose config is
    /// [`CACHE_CONFIG`], creating it if needed.
    fn prepare_cache(&self) -> Result<(), SourceError> {
        if let Some(base) = self.cache.parent().filter(|p| !p.as_os_str().is_empty()) {
            private_dir(base, true)?;
        }
        private_dir(&self.cache, false)?;
        if !self.cache.join("HEAD").exists() {
            let status = Self::command()
                // No template: nothing (sample hooks, info/exclude) is copied in.
                .args(["init", "--bare", "--quiet", "--template="])
                .arg(&self.cache)
                .status()
                .map_err(|e| SourceError(format!("cannot run git (is it installed?): {e}")))?;
            if !status.success() {
                return Err(SourceError(format!(
                    "git init {} failed",
                    self.cache.display()
                )));
            }
        }
        let written = (|| {
            let tmp = self.cache.join("config.connector-runtime.tmp");
            let mut file = fs::File::create(&tmp)?;
            file.write_all(CACHE_CONFIG.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, self.cache.join("config"))?;
            // Objects borrowed from another repository are not this cache's.
            match fs::remove_file(self.cache.join("objects/info/alternates")) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })();
        written.map_err(|e| {
            SourceError(format!(
                "cannot write the config of the git cache {}: {e}",
                self.cache.display()
            ))
        })
    }
}

/// This process's effective uid.
fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `dir` (mode 0700; with its missing parents when `parents`), or checks that the
/// existing one is this user's own: a directory (a symlink is followed only if this user made
/// it) owned by the current uid and not writable by group or others. Anything else is
/// refused, with the path and what is wrong.
fn private_dir(dir: &Path, parents: bool) -> Result<(), SourceError> {
    let refuse = |what: String| {
        SourceError(format!(
            "refusing the git cache directory {}: {what}; remove it or choose another \
             --registry-cache-dir",
            dir.display()
        ))
    };
    let uid = current_uid();
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let created = fs::DirBuilder::new()
                .recursive(parents)
                .mode(0o700)
                .create(dir);
            match created {
                Ok(()) => {}
                // Made by someone else since: checked below like any existing directory.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(SourceError(format!(
                        "cannot create the git cache directory {}: {e}",
                        dir.display()
                    )))
                }
            }
            fs::symlink_metadata(dir).map_err(|e| refuse(format!("cannot inspect it: {e}")))?
        }
        Err(e) => return Err(refuse(format!("cannot inspect it: {e}"))),
    };
    let meta = if meta.file_type().is_symlink() {
        if meta.uid() != uid {
            return Err(refuse(format!(
                "it is a symbolic link owned by uid {}, not by this user (uid {uid})",
                meta.uid()
            )));
        }
        fs::metadata(dir).map_err(|e| refuse(format!("cannot follow the link: {e}")))?
    } else {
        meta
    };
    if !meta.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(refuse(format!(
            "it is owned by uid {}, not by this user (uid {uid}): another user may have \
             prepared it",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "it is writable by group or others (mode {mode:04o})"
        )));
    }
    Ok(())
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
        self.prepare_cache()?;
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
            // cat-file, not show: the raw blob, with no textconv or other conversion.
            let blob = self.git(&["cat-file", "blob", &format!("{sha}:{}", self.file)])?;
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

/// Where git caches go without `--registry-cache-dir`: `$TMPDIR/connector-runtime-<uid>`,
/// one directory per user, so that users of one host do not share (or block) one another's.
pub(crate) fn default_cache_base() -> PathBuf {
    std::env::temp_dir().join(format!("connector-runtime-{}", current_uid()))
}

/// A cache directory for `url` under `base`.
pub(crate) fn cache_dir(base: &Path, url: &str) -> PathBuf {
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
