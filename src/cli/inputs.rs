//! Finding and reading the input files of `check`, `replay` and `bench`: the same paths give
//! the same files, in the same order, for all three, and no input can hang or exhaust them.
//!
//! - Directories are searched recursively, sorted by path. Symbolic links to directories are
//!   followed (a manifests tree may link a shared directory in), and a link that leads back to
//!   a directory being searched is reported as an error naming it, instead of recursing forever.
//! - In a directory, only regular files are read: a FIFO would block the command until someone
//!   writes to it, a device such as `/dev/zero` never ends. A path named on the command line is
//!   read whatever it is (`<(kubectl get …)` is a pipe), within the size limit.
//! - Every file, and standard input, is read up to `--max-file-bytes`: reading stops one byte
//!   past the limit and the input is refused, so memory is bounded by the limit.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;

/// Default `--max-file-bytes`: 64 MiB, several times the largest manifest or capture file one
/// review at a time ever needs (the API server refuses requests above 3 MiB), small enough that
/// a mistaken path (a disk image, `/dev/zero`) is refused at once.
pub(crate) const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The input-size flag shared by `check`, `replay` and `bench`.
#[derive(Debug, Clone, Copy, Args)]
pub struct InputLimits {
    /// Largest input read, in bytes: each file, standard input, and any --config or --cluster
    /// file. A larger input is an input error (exit 2); reading stops one byte past
    /// the limit, so even an endless device ends quickly.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FILE_BYTES)]
    pub max_file_bytes: u64,
}

/// A file to read, or a path that could not be read or searched.
pub(crate) enum Found {
    File(PathBuf),
    /// The path and why it is not read: a complete message, such as `cannot read: …`.
    Unreadable(PathBuf, String),
}

/// The file itself (any name, any kind of file), or a directory's regular files with one of
/// `extensions`, recursively, sorted by path.
pub(crate) fn collect(path: &Path, extensions: &[&str], found: &mut Vec<Found>) {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) => {
            found.push(Found::Unreadable(
                path.to_owned(),
                format!("cannot read: {err}"),
            ));
            return;
        }
    };
    if !metadata.is_dir() {
        found.push(Found::File(path.to_owned()));
        return;
    }
    let mut searching = vec![(DirId::of(&metadata), path.to_owned())];
    walk(path, extensions, &mut searching, found);
}

/// Identifies a directory whatever path leads to it: (device, inode) on Unix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirId(u64, u64);

impl DirId {
    #[cfg(unix)]
    fn of(metadata: &std::fs::Metadata) -> DirId {
        use std::os::unix::fs::MetadataExt as _;
        DirId(metadata.dev(), metadata.ino())
    }

    /// Without inode numbers, loops are cut by depth instead (see [`MAX_DIRECTORY_DEPTH`]).
    #[cfg(not(unix))]
    fn of(_: &std::fs::Metadata) -> DirId {
        DirId(0, 0)
    }
}

/// Deeper than this, a directory tree is taken to be a loop the inode check cannot see (a
/// file system without stable inode numbers).
const MAX_DIRECTORY_DEPTH: usize = 256;

/// Searches `dir`; `searching` holds the directories from the top down to `dir`, to recognise
/// a link back to one of them.
fn walk(
    dir: &Path,
    extensions: &[&str],
    searching: &mut Vec<(DirId, PathBuf)>,
    found: &mut Vec<Found>,
) {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(err) => {
            found.push(Found::Unreadable(
                dir.to_owned(),
                format!("cannot read the directory: {err}"),
            ));
            return;
        }
    };
    let mut children = Vec::new();
    for entry in read {
        match entry {
            Ok(entry) => children.push(entry.path()),
            Err(err) => found.push(Found::Unreadable(
                dir.to_owned(),
                format!("cannot read the directory: {err}"),
            )),
        }
    }
    children.sort();
    for child in children {
        let wanted = child
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e));
        // Follows symbolic links: a link is what it points to.
        let metadata = match std::fs::metadata(&child) {
            Ok(metadata) => metadata,
            Err(err) => {
                if wanted {
                    found.push(Found::Unreadable(child, format!("cannot read: {err}")));
                }
                continue;
            }
        };
        if metadata.is_dir() {
            let id = DirId::of(&metadata);
            let back_to = searching
                .iter()
                .find(|(searched, _)| cfg!(unix) && *searched == id)
                .map(|(_, path)| path.display().to_string());
            if let Some(ancestor) = back_to {
                found.push(Found::Unreadable(
                    child,
                    format!(
                        "directory loop: it is {ancestor} again (through a symbolic link), \
                         which is being searched already"
                    ),
                ));
            } else if searching.len() >= MAX_DIRECTORY_DEPTH {
                found.push(Found::Unreadable(
                    child,
                    format!("directories nested more than {MAX_DIRECTORY_DEPTH} deep"),
                ));
            } else {
                searching.push((id, child.clone()));
                walk(&child, extensions, searching, found);
                searching.pop();
            }
        } else if wanted {
            if metadata.is_file() {
                found.push(Found::File(child));
            } else {
                found.push(Found::Unreadable(
                    child,
                    format!(
                        "not a regular file ({}): in a directory only regular files are read; \
                         name it on the command line to read it",
                        file_kind(&metadata)
                    ),
                ));
            }
        }
    }
}

/// What a file that is not a regular file or a directory is, for messages.
fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        let kind = metadata.file_type();
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
    }
    let _ = metadata;
    "a special file"
}

/// Reads a file as UTF-8 text, up to `max` bytes. The error is a complete message.
pub(crate) fn read_file(path: &Path, max: u64) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|err| format!("cannot read: {err}"))?;
    // Regular files say their size: refuse at once, and read into a buffer of the right size.
    let size = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    if let Some(size) = size
        && size > max
    {
        return Err(too_large(max));
    }
    read_capped(file, max, size)
}

/// Reads standard input as UTF-8 text, up to `max` bytes.
pub(crate) fn read_stdin(max: u64) -> Result<String, String> {
    read_capped(std::io::stdin().lock(), max, None)
}

/// Reads at most `max` bytes (and one more, to know there are more). `size`: a regular file's.
fn read_capped(reader: impl Read, max: u64, size: Option<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    // The whole buffer at once (the file's size, else the limit), so it is not regrown and
    // copied on the way: reading a pipe up to a 64 MiB limit would otherwise peak at about three
    // times that. Pages never written to cost no memory; if even the reservation is refused,
    // the buffer grows as it is read.
    let want = size.unwrap_or(max).min(max).saturating_add(1);
    let _ = bytes.try_reserve_exact(usize::try_from(want).unwrap_or(usize::MAX));
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read: {err}"))?;
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    String::from_utf8(bytes).map_err(|err| {
        format!(
            "cannot read: not UTF-8 text (invalid byte at offset {})",
            err.utf8_error().valid_up_to()
        )
    })
}

fn too_large(max: u64) -> String {
    format!("larger than --max-file-bytes ({max} bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_stops_one_byte_past_the_limit() {
        let endless = std::io::repeat(b'a');
        assert_eq!(
            read_capped(endless, 10, None).unwrap_err(),
            "larger than --max-file-bytes (10 bytes)"
        );
        assert_eq!(
            read_capped(&b"0123456789"[..], 10, Some(10)).unwrap(),
            "0123456789"
        );
        assert!(
            read_capped(&b"\xff"[..], 10, None)
                .unwrap_err()
                .starts_with("cannot read: not UTF-8")
        );
    }
}
