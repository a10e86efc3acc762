//! Plain-text files read as byte ids (the `TextData` layer's source): every byte must be below
//! the vocabulary size, and the text must hold at least one window of `steps` bytes plus the
//! label after them.

use crate::{Error, Result};
use std::path::Path;

/// Checks text bytes for windows of `steps` byte ids below `vocab`; `label` names the source.
pub fn check_text(bytes: &[u8], steps: usize, vocab: usize, label: &str) -> Result<()> {
    if bytes.len() <= steps {
        return Err(Error::format(
            label,
            format!(
                "the text has {} bytes; time_steps {steps} needs at least {}",
                bytes.len(),
                steps.saturating_add(1)
            ),
        ));
    }
    if let Some(at) = bytes.iter().position(|&b| b as usize >= vocab) {
        return Err(Error::format(
            label,
            format!(
                "byte {} at offset {at} is outside vocab_size {vocab} (use vocab_size: 256 for \
                 arbitrary bytes)",
                bytes[at]
            ),
        ));
    }
    Ok(())
}

/// Reads a text file and checks it with [`check_text`].
pub fn read_text(path: impl AsRef<Path>, steps: usize, vocab: usize) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    check_text(&bytes, steps, vocab, &path.display().to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_and_bytes_outside_the_vocabulary_are_errors() {
        check_text(b"abcd", 3, 128, "t").unwrap();
        let e = check_text(b"abc", 3, 128, "t.txt").unwrap_err().to_string();
        assert!(e.contains("t.txt") && e.contains("at least 4"), "{e}");
        let e = check_text(b"ab\xffd", 2, 128, "t").unwrap_err().to_string();
        assert!(e.contains("byte 255 at offset 2"), "{e}");
        assert!(check_text(b"", usize::MAX, 256, "t").is_err());
    }
}
