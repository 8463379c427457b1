//! Security headers on every response the worker serves, its HTML pages first (the
//! OAuth connect and result pages): no scripts, styles or frames from anywhere, no
//! content sniffing, no framing (clickjacking), no referrer (the callback URL carries
//! the code and state), and nothing cached.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;

/// The headers and their values. The pages are plain HTML with no assets, so the
/// content security policy allows nothing at all.
pub const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// Adds [`SECURITY_HEADERS`] to `res`, keeping any a handler set itself.
pub async fn secure(mut res: Response) -> Response {
    let headers = res.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    res
}
