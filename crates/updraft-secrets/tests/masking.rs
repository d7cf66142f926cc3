//! Masking: values hidden in text, JSON and streams cut into arbitrary chunks.

use proptest::prelude::*;
use serde_json::json;
use updraft_secrets::mask::MIN_MASKED_LEN;
use updraft_secrets::{Masker, is_sensitive_name};

fn masker(values: &[&str]) -> Masker {
    let mut masker = Masker::new();
    for value in values {
        masker.add(value);
    }
    masker
}

#[test]
fn every_value_is_replaced_and_short_ones_are_kept() {
    let masker = masker(&["hunter22", "s3cr3t-token", "abc"]);
    assert_eq!(
        masker.mask("login with hunter22 and s3cr3t-token, not abc"),
        "login with *** and ***, not abc"
    );
    assert_eq!("abcd".len() + 1, MIN_MASKED_LEN);
    assert!(masker.len() >= 2);
}

#[test]
fn the_longest_of_overlapping_values_is_hidden_whole() {
    let masker = masker(&["secret", "secret-and-more"]);
    assert_eq!(masker.mask("x secret-and-more y secret z"), "x *** y *** z");
}

#[test]
fn each_line_of_a_multi_line_value_is_hidden() {
    let key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG\nabc\n-----END KEY-----";
    let masker = masker(&[key]);
    assert_eq!(masker.mask(key), "***");
    assert_eq!(
        masker.mask("line: MIIEvQIBADANBgkqhkiG; short: abc"),
        "line: ***; short: abc"
    );
}

#[test]
fn blank_lines_of_a_multi_line_value_are_not_masked() {
    let masker = masker(&["first-line\n        \nsecond-line"]);
    assert_eq!(masker.mask("a        b first-line"), "a        b ***");
}

#[test]
fn the_percent_encoded_form_is_hidden_too() {
    let masker = masker(&["p@ss word/1"]);
    assert_eq!(
        masker.mask("postgres://u:p%40ss%20word/1@h/db"),
        "postgres://u:***@h/db"
    );
}

#[test]
fn json_under_sensitive_keys_and_known_values_are_hidden() {
    let masker = masker(&["hunter22"]);
    let conf = json!({
        "db_password": "anything",
        "API_KEY": {"nested": ["a", 1]},
        "note": "uses hunter22 here",
        "list": [{"token": "t"}, "hunter22"],
        "count": 3
    });
    assert_eq!(
        masker.mask_json(&conf),
        json!({
            "db_password": "***",
            "API_KEY": {"nested": ["***", 1]},
            "note": "uses *** here",
            "list": [{"token": "***"}, "***"],
            "count": 3
        })
    );
}

#[test]
fn sensitive_names_are_airflows() {
    for name in [
        "password",
        "DB_PASSWORD",
        "x-authorization",
        "my_api_key",
        "gcp_keyfile_dict",
    ] {
        assert!(is_sensitive_name(name), "{name}");
    }
    for name in ["host", "login", "schema", "region"] {
        assert!(!is_sensitive_name(name), "{name}");
    }
}

#[test]
fn a_value_split_across_chunks_is_hidden() {
    let masker = masker(&["hunter22"]);
    let mut stream = masker.stream();
    let mut out = stream.push(b"password is hun");
    out.extend(stream.push(b"ter"));
    out.extend(stream.push(b"22 ok\n"));
    out.extend(stream.finish());
    assert_eq!(out, b"password is *** ok\n");
}

#[test]
fn a_stream_holds_back_less_than_the_longest_value() {
    let masker = masker(&["abcdefgh"]);
    let mut stream = masker.stream();
    let out = stream.push(b"0123456789");
    assert_eq!(out, b"012");
    assert_eq!(stream.finish(), b"3456789");
}

#[test]
fn non_utf8_output_passes_through_byte_for_byte() {
    let masker = masker(&["hunter22"]);
    let mut stream = masker.stream();
    let mut out = stream.push(&[0xff, 0xfe, b'h', b'u']);
    out.extend(stream.push(b"nter22\xc3"));
    out.extend(stream.finish());
    assert_eq!(out, b"\xff\xfe***\xc3");
}

#[test]
fn without_values_a_stream_writes_everything_at_once() {
    let mut stream = Masker::new().stream();
    assert_eq!(stream.push(b"abc"), b"abc");
    assert_eq!(stream.finish(), b"");
}

#[test]
fn the_global_set_masks_registered_values() {
    updraft_secrets::mask::register("global-secret-1");
    assert_eq!(
        updraft_secrets::mask::mask_global("got global-secret-1"),
        "got ***"
    );
}

/// Text over a small alphabet, so secrets and their overlaps occur often.
fn text(alphabet: &[u8], max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(alphabet.to_vec()), 0..max)
}

proptest! {
    #[test]
    fn streaming_equals_masking_the_whole_text(
        secrets in prop::collection::vec(text(b"abc\n", 9), 1..4),
        body in text(b"abc\n\xff", 120),
        cuts in prop::collection::vec(0usize..130, 0..10),
    ) {
        let mut masker = Masker::new();
        for secret in &secrets {
            masker.add(std::str::from_utf8(secret).unwrap());
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
        cuts.push(body.len());
        cuts.sort();
        let mut stream = masker.stream();
        let mut out = Vec::new();
        let mut from = 0;
        for cut in cuts {
            out.extend(stream.push(&body[from..cut]));
            from = cut;
        }
        out.extend(stream.finish());
        prop_assert_eq!(out, masker.mask_bytes(&body));
    }

    #[test]
    fn streaming_text_equals_mask(
        secrets in prop::collection::vec("[ab]{5,8}", 1..4),
        body in "[ab ]{0,80}",
        chunk in 1usize..12,
    ) {
        let mut masker = Masker::new();
        for secret in &secrets {
            masker.add(secret);
        }
        let mut stream = masker.stream();
        let mut out = Vec::new();
        for piece in body.as_bytes().chunks(chunk) {
            out.extend(stream.push(piece));
        }
        out.extend(stream.finish());
        prop_assert_eq!(String::from_utf8(out).unwrap(), masker.mask(&body));
    }
}
