//! A registry file: read on demand and watched for changes. The watch covers the file's
//! directory, because editors and deploy tools replace files by renaming over them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};

use super::{Snapshot, Source, SourceError};

/// How long a burst of file events must be quiet before one reload happens.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(200);

/// How long an empty registry file is given to get its content before it counts as empty.
pub(crate) const EMPTY_FILE_SETTLE: Duration = Duration::from_millis(250);

/// A registry file on disk.
#[derive(Debug, Clone)]
pub(crate) struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// A source reading `path`.
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        FileSource { path: path.into() }
    }

    /// Calls `on_change` (from a watcher thread) after the file changes, appears or is
    /// removed. The watch lasts as long as the returned value lives.
    pub(crate) fn watch(
        &self,
        on_change: impl Fn() + Send + 'static,
    ) -> Result<Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>, SourceError> {
        let target = self.path.clone();
        let file_name = target.file_name().map(|n| n.to_os_string());
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        // The watcher also reports opens and reads, the runtime's own among them: only a
        // change of the file itself (appeared, gone, rewritten, replaced) is passed on, or
        // every sync's read of the file would start the next sync.
        let last_seen = std::sync::Mutex::new(FileStamp::of(&target));
        let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| {
            if let Ok(events) = result {
                if events
                    .iter()
                    .any(|e| e.path.file_name().map(|n| n.to_os_string()) == file_name)
                {
                    let now = FileStamp::of(&target);
                    let mut last = last_seen.lock().unwrap_or_else(|e| e.into_inner());
                    if *last != now {
                        *last = now;
                        on_change();
                    }
                }
            }
        })
        .map_err(|e| SourceError(format!("cannot watch {}: {e}", dir.display())))?;
        debouncer
            .watcher()
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| SourceError(format!("cannot watch {}: {e}", dir.display())))?;
        Ok(debouncer)
    }
}

/// What tells one version of the file from another without reading it: `None` when there
/// is no file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp(Option<(u64, u64, u64, i64, i64, i64, i64)>);

impl FileStamp {
    fn of(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStamp(std::fs::metadata(path).ok().map(|m| {
            (
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        }))
    }
}

impl FileSource {
    fn read_text(&self) -> Result<String, SourceError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text),
            // A deleted registry file removes the connectors, as the platform documents.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(SourceError(format!(
                "cannot read {}: {e}",
                self.path.display()
            ))),
        }
    }
}

impl Source for FileSource {
    /// An empty file removes every connector, as the platform documents, but it is also what
    /// a reader sees while a writer rewrites the file in place (truncate, then write): so an
    /// empty file is read again after [`EMPTY_FILE_SETTLE`], and only counts if it is still
    /// empty. (Reads run off the actor's thread; the wait blocks nothing else.)
    fn read(&self) -> Result<Snapshot, SourceError> {
        let mut text = self.read_text()?;
        if text.trim().is_empty() && self.path.exists() {
            std::thread::sleep(EMPTY_FILE_SETTLE);
            text = self.read_text()?;
        }
        Ok(Snapshot {
            text,
            revision: None,
        })
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}
