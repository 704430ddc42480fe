//! `Bytes` values: binary data travels through runs, journals and JSON as
//! standard padded base64 text (RFC 4648 §4), the form `Schema::Bytes`
//! validates. These are the two directions, in one place.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// The `Bytes` value of `data`: its standard padded base64 text.
pub fn encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// The data of a `Bytes` value or of base64 text from elsewhere: line
/// breaks and spaces (wrapped base64, as in MIME) are ignored, padding is
/// optional and the URL-safe alphabet (`-`, `_`) is accepted. The error
/// says what is wrong without repeating the text, which may be large or
/// sensitive.
pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let unpadded = compact.trim_end_matches('=');
    let decoded = if unpadded.contains(['-', '_']) {
        URL_SAFE_NO_PAD.decode(unpadded)
    } else {
        STANDARD_NO_PAD.decode(unpadded)
    };
    decoded.map_err(|e| format!("not base64 ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_accepts_the_usual_variants() {
        let data = b"\x00\xffhello\xfb\xef";
        let text = encode(data);
        assert_eq!(decode(&text).unwrap(), data);
        assert_eq!(decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode("aGVs\r\nbG8=").unwrap(), b"hello");
        assert_eq!(decode("-_8").unwrap(), decode("+/8=").unwrap());
        assert_eq!(decode("").unwrap(), b"");
    }

    #[test]
    fn refuses_what_is_not_base64() {
        let err = decode("not base64!").unwrap_err();
        assert!(err.starts_with("not base64"), "{err}");
        assert!(
            !err.contains("not base64!"),
            "the text is not repeated: {err}"
        );
        assert!(decode("a").is_err());
    }
}
