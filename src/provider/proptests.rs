//! Property tests of the provider clients' error decoders (crate-private, so they live
//! here rather than in `tests/it/proptests.rs`): any status, headers and body is
//! classified without a panic, and a mutating call's 5xx stays "outcome unknown".

use proptest::prelude::*;

use super::busha::{ProviderError, retry_after};

fn status() -> impl Strategy<Value = http::StatusCode> {
    (100u16..600).prop_map(|s| http::StatusCode::from_u16(s).unwrap_or(http::StatusCode::OK))
}

fn headers() -> impl Strategy<Value = http::HeaderMap> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "retry-after",
                "x-request-id",
                "content-type",
                "x-ratelimit-reset",
            ]),
            "[ -~]{0,24}",
        ),
        0..4,
    )
    .prop_map(|pairs| {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = http::HeaderValue::from_str(&v) {
                h.append(k, v);
            }
        }
        h
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        "\\{\"error\": ?\\{\"name\": ?\"[a-z_]{0,12}\", ?\"message\": ?\"\\PC{0,20}\"\\}(, ?\"fields\": ?\\{\"amount\": ?\\[\\{\"reason\": ?\"\\PC{0,8}\"\\}\\]\\})?\\}"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn busha_error_answers_of_any_shape_never_panic(
        status in status(), headers in headers(), body in body(), mutating in any::<bool>(),
    ) {
        let e = ProviderError::from_response("POST /v1/transfers", mutating, status, &headers, None, &body);
        let _ = e.to_string();
        if mutating && status.is_server_error() {
            prop_assert!(e.outcome_unknown(), "{e}");
        }
        let _ = retry_after(&headers);
    }
}
