//! Paths in the report record, byte for byte. A Linux path is bytes, and
//! JSON text is Unicode: a UTF-8 path is a JSON string, any other an object
//! with the bytes in hex and a readable (lossy) form,
//! `{"hex": "2f7372762fff", "lossy": "/srv/\u{fffd}"}`. serde's own
//! `PathBuf` support fails on such a path, which would lose the report of
//! a program that lives under one.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Form {
    Text(String),
    Bytes { hex: String, lossy: String },
}

pub fn serialize<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    match path.to_str() {
        Some(text) => serializer.serialize_str(text),
        None => {
            let bytes = path.as_os_str().as_bytes();
            let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
            Form::Bytes { hex, lossy: path.to_string_lossy().into_owned() }.serialize(serializer)
        }
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
    match Form::deserialize(deserializer)? {
        Form::Text(text) => Ok(PathBuf::from(text)),
        Form::Bytes { hex, .. } => {
            let digits = hex.as_bytes();
            if digits.len() % 2 != 0 {
                return Err(serde::de::Error::custom("a path's hex has an odd number of digits"));
            }
            let bytes = digits
                .chunks(2)
                .map(|pair| std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| serde::de::Error::custom("a path's hex has a character that is not a hex digit"))?;
            Ok(PathBuf::from(OsString::from_vec(bytes)))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Holder {
        #[serde(with = "super")]
        path: PathBuf,
    }

    #[test]
    fn any_path_round_trips() {
        for bytes in [&b"/srv/app"[..], b"/srv/\xff\xfe=x", b""] {
            let holder = Holder { path: PathBuf::from(OsString::from_vec(bytes.to_vec())) };
            let json = serde_json::to_string(&holder).unwrap();
            assert_eq!(serde_json::from_str::<Holder>(&json).unwrap(), holder, "{json}");
        }
        let json = serde_json::to_string(&Holder { path: PathBuf::from(OsStr::from_bytes(b"/a\xff")) }).unwrap();
        assert_eq!(json, "{\"path\":{\"hex\":\"2f61ff\",\"lossy\":\"/a\u{fffd}\"}}");
        assert_eq!(serde_json::to_string(&Holder { path: "/a b".into() }).unwrap(), r#"{"path":"/a b"}"#);
        assert!(serde_json::from_str::<Holder>(r#"{"path":{"hex":"2f6","lossy":""}}"#).is_err());
    }
}
