//! Small files the daemon reads (keys, secrets): read with a size cap, so that a path pointing
//! at `/dev/zero` or a log file is refused instead of filling memory.

use std::io::Read;
use std::path::Path;

/// Keys and secrets are far smaller than this.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Everything `reader` holds, or `None` when that is more than `max` bytes (reading stops
/// there).
pub fn read_at_most(reader: impl Read, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// The file's bytes, or an error when it holds more than `max` bytes.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    read_at_most(std::fs::File::open(path)?, max)?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes, not a key or a secret"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_not_read() {
        let e = read_capped(Path::new("/dev/zero"), MAX_SECRET_FILE).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "secret\n").unwrap();
        assert_eq!(read_capped(&path, MAX_SECRET_FILE).unwrap(), b"secret\n");
    }
}
