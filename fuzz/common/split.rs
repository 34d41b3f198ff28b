//! Shared by the fuzz targets that feed several datagrams from one input.

/// Separates the datagrams of one fuzz input.
pub const SEPARATOR: &[u8] = b"\xffAY\xff";

/// The input cut at every [`SEPARATOR`].
pub fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        parts.push(&rest[..i]);
        rest = &rest[i + SEPARATOR.len()..];
    }
    parts.push(rest);
    parts
}
