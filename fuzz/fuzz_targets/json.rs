//! Fuzzes the JSON check (src/json.rs) and nanoserde behind it. Every JSON text from
//! outside goes through `json::parse`: `json::walk` first, nanoserde's derived reader
//! only on what the walk accepts (nanoserde 0.2.1 panics or loops on some texts that are
//! not JSON). Properties, whatever the input:
//! 1. `walk` ends without a panic, and reports at most one scalar per input byte;
//! 2. `parse` of shapes like the product's (optional strings, numbers and booleans, a
//!    vector of objects, a nested object, unknown fields skipped) ends without a panic;
//! 3. what nanoserde writes (the product's own files: a string made of the input's
//!    characters, in an object with other fields) is JSON to `walk`, and reads back the
//!    same through `parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nanoserde::{DeJson, SerJson};

#[path = "../../src/json.rs"]
#[allow(dead_code)]
mod json;

#[derive(DeJson, SerJson, Debug, PartialEq)]
struct Inner {
    id: Option<String>,
    size: Option<u64>,
    ok: Option<bool>,
}

#[derive(DeJson, SerJson, Debug, PartialEq)]
struct Outer {
    name: Option<String>,
    count: Option<u64>,
    files: Option<Vec<Inner>>,
    inner: Option<Inner>,
    #[nserde(default)]
    tags: Vec<String>,
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // 1.
    let mut scalars = 0usize;
    let walked = json::walk(&text, &mut |_, _| scalars += 1);
    assert!(scalars <= text.len());
    // 2.
    let outer = json::parse::<Outer>(&text);
    let _ = json::parse::<Inner>(&text);
    let _ = json::parse::<Vec<Inner>>(&text);
    let _ = json::parse::<String>(&text);
    if outer.is_ok() {
        assert!(walked.is_ok(), "parse read what walk refused");
    }
    // 3.
    let mine = Outer {
        name: Some(text.to_string()),
        count: Some(data.len() as u64),
        files: Some(vec![Inner {
            id: Some(text.chars().rev().collect()),
            size: None,
            ok: Some(true),
        }]),
        inner: None,
        tags: vec![text.to_string(), String::new()],
    };
    let written = mine.serialize_json();
    assert!(
        json::walk(&written, &mut |_, _| {}).is_ok(),
        "walk refused what nanoserde wrote: {written:?}"
    );
    assert_eq!(
        json::parse::<Outer>(&written).as_ref(),
        Ok(&mine),
        "{written:?}"
    );
});
