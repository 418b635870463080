//! Reading the pipeline file: its bytes as UTF-8 text (or an error naming the line and
//! column of the first byte that is not), then the strict parse of [`crate::spec`].

use std::path::Path;

use super::Pipeline;
use crate::error::SpecError;
use crate::spec::Spec;

impl Pipeline {
    /// Reads and validates `file` for `profile`.
    pub fn load(file: &Path, profile: &str) -> Result<Pipeline, SpecError> {
        let (text, spec) = Pipeline::read(file)?;
        Pipeline::build(&spec, &text, file, profile)
    }

    /// Reads and parses `file`: its text and its [`Spec`].
    pub fn read(file: &Path) -> Result<(String, Spec), SpecError> {
        let bytes = std::fs::read(file)
            .map_err(|e| SpecError::new(file, format!("cannot read the pipeline file: {e}")))?;
        let text = utf8_text(bytes, file)?;
        let spec = Spec::parse(&text, file)?;
        Ok((text, spec))
    }
}

/// The file's text, or an error naming the line, the column and the first byte that is
/// not UTF-8 (a file saved in Latin-1, UTF-16 or a binary file given by mistake).
fn utf8_text(bytes: Vec<u8>, file: &Path) -> Result<String, SpecError> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // Column in characters: the prefix of the line is valid UTF-8.
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        let utf16 = bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]);
        SpecError::new(
            file,
            format!(
                "the file is not UTF-8 text: byte 0x{:02x} at column {column} is not valid UTF-8{}",
                bytes[at],
                if utf16 {
                    " (the file starts with a UTF-16 byte-order mark; save it as UTF-8)"
                } else {
                    " (save the file as UTF-8)"
                }
            ),
        )
        .line(Some(line))
    })
}
