//! Finding the input files of `replay` and `bench`: the same paths give the same files, in the
//! same order, for both.

use std::path::{Path, PathBuf};

/// A file to read, or a path that could not be read or searched.
pub(crate) enum Found {
    File(PathBuf),
    Unreadable(PathBuf, std::io::Error),
}

/// The file itself (any name), or a directory's *.json, *.jsonl, *.yaml and *.yml files,
/// recursively, sorted by path. Symbolic links to directories are not followed, so a link loop
/// cannot recurse forever.
pub(crate) fn collect(path: &Path, found: &mut Vec<Found>) {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) => {
            found.push(Found::Unreadable(path.to_owned(), err));
            return;
        }
    };
    if !metadata.is_dir() {
        found.push(Found::File(path.to_owned()));
        return;
    }
    let mut children: Vec<(PathBuf, bool)> = match std::fs::read_dir(path) {
        Ok(read) => read
            .filter_map(Result::ok)
            .map(|entry| {
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                (entry.path(), is_dir)
            })
            .collect(),
        Err(err) => {
            found.push(Found::Unreadable(path.to_owned(), err));
            return;
        }
    };
    children.sort();
    for (child, is_dir) in children {
        if is_dir {
            collect(&child, found);
        } else if matches!(
            child.extension().and_then(|e| e.to_str()),
            Some("json" | "jsonl" | "yaml" | "yml")
        ) {
            found.push(Found::File(child));
        }
    }
}
