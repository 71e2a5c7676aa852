//! Signed webhooks: HMAC-SHA256 over the raw body, compared in constant time.
//!
//! The default scheme is Standard Webhooks: headers `webhook-id`, `webhook-timestamp` and
//! `webhook-signature`; the signed content is `"{id}.{timestamp}.{body}"`; the signature header
//! holds space-separated `v1,<base64>` values, so a sender can sign with several secrets during
//! rotation, and the receiver accepts any of its own secrets. A timestamp outside the tolerance
//! (either direction) is refused, so a captured request cannot be replayed later; within the
//! window the delivery id de-duplicates. The `hex` scheme (`sha256=<hex>` over the body, as GitHub
//! sends it) carries no timestamp and is offered for senders that cannot do better.

use super::{AutomateError, AutomateResult};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The default replay window, in seconds (Standard Webhooks recommends five minutes).
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

/// A verified delivery: its id (the dedupe key) and signed timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub delivery_id: String,
    pub timestamp: i64,
}

/// The key bytes of a secret: `whsec_<base64>` is decoded (Standard Webhooks), any other
/// string is used as its UTF-8 bytes. An empty secret is refused.
pub fn secret_bytes(secret: &str) -> AutomateResult<Vec<u8>> {
    if secret.is_empty() {
        return Err(AutomateError::Config(
            "a webhook secret cannot be empty".into(),
        ));
    }
    match secret.strip_prefix("whsec_") {
        Some(encoded) => B64.decode(encoded).map_err(|_| {
            AutomateError::Config(
                "a webhook secret starting with whsec_ must be followed by base64".into(),
            )
        }),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        m.update(part);
    }
    m.finalize().into_bytes().to_vec()
}

/// The Standard Webhooks signature header value (`v1,<base64>`) for one secret.
pub fn sign(
    secret: &str,
    delivery_id: &str,
    timestamp: i64,
    body: &[u8],
) -> AutomateResult<String> {
    let key = secret_bytes(secret)?;
    let ts = timestamp.to_string();
    let digest = mac(
        &key,
        &[delivery_id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    Ok(format!("v1,{}", B64.encode(digest)))
}

/// Verifies a Standard Webhooks delivery against any of `secrets` (rotation).
///
/// Fails closed: no secret configured rejects every request. `now` is Unix seconds.
pub fn verify(
    secrets: &[String],
    delivery_id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> AutomateResult<Verified> {
    let keys = keys(secrets)?;
    let delivery_id = required(delivery_id, "webhook-id")?;
    let timestamp_text = required(timestamp, "webhook-timestamp")?;
    let signature = required(signature, "webhook-signature")?;
    let timestamp: i64 = timestamp_text.trim().parse().map_err(|_| {
        AutomateError::Signature(
            "the webhook-timestamp header is not an integer number of seconds".into(),
        )
    })?;
    if (now - timestamp).abs() > tolerance_seconds {
        return Err(AutomateError::Signature(format!(
            "the webhook-timestamp is {}s away from now, outside the {tolerance_seconds}s tolerance",
            (now - timestamp).abs()
        )));
    }
    let ts = timestamp.to_string();
    let expected: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| {
            mac(
                k,
                &[delivery_id.as_bytes(), b".", ts.as_bytes(), b".", body],
            )
        })
        .collect();
    let mut ok = false;
    for candidate in signature.split_whitespace() {
        let Some(("v1", encoded)) = candidate.split_once(',') else {
            continue;
        };
        let Ok(given) = B64.decode(encoded) else {
            continue;
        };
        for e in &expected {
            // Check every pair so timing does not reveal which secret matched.
            ok |= bool::from(e.as_slice().ct_eq(given.as_slice()));
        }
    }
    if !ok {
        return Err(AutomateError::Signature(
            "no webhook-signature matches a configured secret".into(),
        ));
    }
    Ok(Verified {
        delivery_id: delivery_id.to_string(),
        timestamp,
    })
}

/// Hex HMAC-SHA256 of the body (`sha256=` prefix optional), against any of `secrets`.
pub fn verify_hex(secrets: &[String], signature: Option<&str>, body: &[u8]) -> AutomateResult<()> {
    let keys = keys(secrets)?;
    let signature = required(signature, "signature")?;
    let hex = signature
        .trim()
        .strip_prefix("sha256=")
        .unwrap_or(signature.trim());
    let Some(given) = decode_hex(hex) else {
        return Err(AutomateError::Signature(
            "the signature is not hexadecimal".into(),
        ));
    };
    let mut ok = false;
    for k in &keys {
        ok |= bool::from(mac(k, &[body]).as_slice().ct_eq(given.as_slice()));
    }
    if ok {
        Ok(())
    } else {
        Err(AutomateError::Signature(
            "the signature does not match a configured secret".into(),
        ))
    }
}

/// `sha256=<hex>` for `body` under `secret`.
pub fn sign_hex(secret: &str, body: &[u8]) -> AutomateResult<String> {
    let digest = mac(&secret_bytes(secret)?, &[body]);
    Ok(format!(
        "sha256={}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

fn keys(secrets: &[String]) -> AutomateResult<Vec<Vec<u8>>> {
    if secrets.is_empty() {
        return Err(AutomateError::Signature(
            "no webhook secret is configured for this source: every request is refused (fail closed)".into(),
        ));
    }
    secrets.iter().map(|s| secret_bytes(s)).collect()
}

fn required<'a>(value: Option<&'a str>, header: &str) -> AutomateResult<&'a str> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(AutomateError::Signature(format!(
            "the {header} header is missing"
        ))),
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector of the Standard Webhooks reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn signs_the_spec_test_vector() {
        assert_eq!(sign(SECRET, ID, TS, BODY).unwrap(), EXPECTED);
    }

    #[test]
    fn verifies_good_and_refuses_bad() {
        let s = secrets(&[SECRET]);
        let ok = verify(
            &s,
            Some(ID),
            Some(&TS.to_string()),
            Some(EXPECTED),
            BODY,
            TS + 10,
            300,
        )
        .unwrap();
        assert_eq!(ok.delivery_id, ID);
        let tampered = verify(
            &s,
            Some(ID),
            Some(&TS.to_string()),
            Some(EXPECTED),
            b"{}",
            TS,
            300,
        );
        assert!(matches!(tampered, Err(AutomateError::Signature(_))));
        let wrong_id = verify(
            &s,
            Some("msg_other"),
            Some(&TS.to_string()),
            Some(EXPECTED),
            BODY,
            TS,
            300,
        );
        assert!(wrong_id.is_err());
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let s = secrets(&[SECRET]);
        let ts = TS.to_string();
        assert!(verify(&s, Some(ID), Some(&ts), Some(EXPECTED), BODY, TS + 301, 300).is_err());
        assert!(verify(&s, Some(ID), Some(&ts), Some(EXPECTED), BODY, TS - 301, 300).is_err());
        assert!(verify(&s, Some(ID), Some(&ts), Some(EXPECTED), BODY, TS + 300, 300).is_ok());
        let garbage = verify(
            &s,
            Some(ID),
            Some("yesterday"),
            Some(EXPECTED),
            BODY,
            TS,
            300,
        )
        .unwrap_err();
        assert!(garbage.to_string().contains("not an integer"));
    }

    #[test]
    fn rotation_accepts_either_secret_and_several_signatures() {
        let old = "whsec_b2xkLXNlY3JldC1rZXk=";
        let both = secrets(&[old, SECRET]);
        let ts = TS.to_string();
        assert!(verify(&both, Some(ID), Some(&ts), Some(EXPECTED), BODY, TS, 300).is_ok());
        let old_sig = sign(old, ID, TS, BODY).unwrap();
        let header = format!("v1,bm90LWl0 {old_sig}");
        assert!(
            verify(
                &secrets(&[old]),
                Some(ID),
                Some(&ts),
                Some(&header),
                BODY,
                TS,
                300
            )
            .is_ok()
        );
        assert!(
            verify(
                &secrets(&[SECRET]),
                Some(ID),
                Some(&ts),
                Some(&old_sig),
                BODY,
                TS,
                300
            )
            .is_err()
        );
    }

    #[test]
    fn missing_parts_and_missing_secrets_fail_closed() {
        let s = secrets(&[SECRET]);
        let ts = TS.to_string();
        assert!(verify(&s, Some(ID), Some(&ts), None, BODY, TS, 300).is_err());
        assert!(verify(&s, None, Some(&ts), Some(EXPECTED), BODY, TS, 300).is_err());
        assert!(verify(&s, Some(ID), None, Some(EXPECTED), BODY, TS, 300).is_err());
        let none = verify(&[], Some(ID), Some(&ts), Some(EXPECTED), BODY, TS, 300).unwrap_err();
        assert!(none.to_string().contains("fail closed"));
        assert!(secret_bytes("").is_err());
        assert!(secret_bytes("whsec_!!!").is_err());
    }

    #[test]
    fn hex_scheme() {
        let s = secrets(&["topsecret"]);
        let sig = sign_hex("topsecret", b"hello").unwrap();
        assert!(verify_hex(&s, Some(&sig), b"hello").is_ok());
        assert!(verify_hex(&s, Some(sig.trim_start_matches("sha256=")), b"hello").is_ok());
        assert!(verify_hex(&s, Some(&sig), b"hellO").is_err());
        assert!(verify_hex(&s, Some("sha256=zz"), b"hello").is_err());
        assert!(verify_hex(&s, None, b"hello").is_err());
        assert!(verify_hex(&[], Some(&sig), b"hello").is_err());
    }
}
