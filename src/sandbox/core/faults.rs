//! Injected faults: what the sandbox does wrong on purpose, per endpoint, so that
//! every error path of the worker is tested against a server that misbehaves the way
//! real ones do (slow, failing, dropping answers, ignoring filters, answering for
//! something else).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A fault injected on one endpoint (`METHOD /route` or `*`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fault {
    pub endpoint: String,
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Fire this many times, then disappear. `None`: no limit.
    #[serde(default)]
    pub times: Option<u32>,
    /// Fire with this probability in thousandths. `None`: every time.
    #[serde(default)]
    pub permille: Option<u32>,
}

impl Fault {
    pub fn new(endpoint: &str, kind: FaultKind) -> Self {
        Self {
            endpoint: endpoint.into(),
            kind,
            times: None,
            permille: None,
        }
    }
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
    pub fn permille(mut self, p: u32) -> Self {
        self.permille = Some(p);
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum FaultKind {
    /// Delay the request by this long (milliseconds in JSON) before handling it.
    Latency(#[serde(with = "millis")] Duration),
    /// Answer with this 5xx status without handling the request.
    ServerError(u16),
    /// Answer 429 without handling the request.
    RateLimited,
    /// Drop the connection without handling the request (it never arrived).
    DropBeforeCommit,
    /// Handle the request, commit its effect, then drop the connection.
    DropAfterCommit,
    /// Answer with this status, JSON body and `Retry-After` (seconds) without handling
    /// the request: an OAuth `server_error` body on a 503, say.
    Respond(CannedResponse),
    /// Handle the request as though it carried no filter: every query parameter but
    /// `cursor`, `limit` and `sort` is removed first. A server that ignores filters.
    IgnoreFilters,
    /// Handle the request, then replace the JSON value at `pointer` in its answer: a
    /// server that answers for something else (another quote, other currencies, a
    /// repeated cursor, an unreadable item). Only JSON answers are rewritten.
    Rewrite(Rewrite),
}

/// A canned answer for [`FaultKind::Respond`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CannedResponse {
    pub status: u16,
    #[serde(default)]
    pub body: serde_json::Value,
    #[serde(default)]
    pub retry_after: Option<u64>,
}

/// A change to an answer for [`FaultKind::Rewrite`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rewrite {
    /// A JSON pointer (RFC 6901), where a `*` segment stands for every element of an
    /// array or every value of an object: `/data/source_currency`,
    /// `/data/*/quote_id`, `/pagination/next_cursor`.
    pub pointer: String,
    pub value: serde_json::Value,
}

impl Rewrite {
    pub fn new(pointer: &str, value: serde_json::Value) -> Self {
        Self {
            pointer: pointer.into(),
            value,
        }
    }

    /// Applies the rewrite to `doc`; true if anything was replaced.
    pub fn apply(&self, doc: &mut serde_json::Value) -> bool {
        let segments: Vec<String> = self
            .pointer
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        if segments.is_empty() {
            return false;
        }
        replace_at(doc, &segments, &self.value)
    }
}

fn replace_at(doc: &mut serde_json::Value, path: &[String], value: &serde_json::Value) -> bool {
    use serde_json::Value;
    let Some((head, rest)) = path.split_first() else {
        *doc = value.clone();
        return true;
    };
    let children: Vec<&mut Value> = match (doc, head.as_str()) {
        (Value::Array(items), "*") => items.iter_mut().collect(),
        (Value::Object(map), "*") => map.values_mut().collect(),
        (Value::Array(items), index) => index
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get_mut(i))
            .into_iter()
            .collect(),
        // The last segment may add a member that was absent (a field the server
        // "forgot" to send is a rewrite too); deeper ones must exist.
        (Value::Object(map), key) if rest.is_empty() => {
            map.insert(key.to_string(), value.clone());
            return true;
        }
        (Value::Object(map), key) => map.get_mut(key).into_iter().collect(),
        _ => Vec::new(),
    };
    let mut replaced = false;
    for child in children {
        replaced |= replace_at(child, rest, value);
    }
    replaced
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rewrite_replaces_one_value_or_every_item_and_adds_a_missing_member() {
        let mut doc = json!({"data": {"source_currency": "USDT", "n": 1}});
        assert!(Rewrite::new("/data/source_currency", json!("BTC")).apply(&mut doc));
        assert_eq!(doc["data"]["source_currency"], "BTC");

        let mut list = json!({"data": [{"quote_id": "a"}, {"quote_id": "b"}], "pagination": {}});
        assert!(Rewrite::new("/data/*/quote_id", json!("Q")).apply(&mut list));
        assert_eq!(list["data"][0]["quote_id"], "Q");
        assert_eq!(list["data"][1]["quote_id"], "Q");
        assert!(Rewrite::new("/data/1/quote_id", json!("R")).apply(&mut list));
        assert_eq!(list["data"][1]["quote_id"], "R");
        assert_eq!(list["data"][0]["quote_id"], "Q");
        assert!(Rewrite::new("/pagination/next_cursor", json!("c1")).apply(&mut list));
        assert_eq!(list["pagination"]["next_cursor"], "c1");
    }

    #[test]
    fn a_rewrite_that_finds_nothing_changes_nothing() {
        let mut doc = json!({"data": []});
        let before = doc.clone();
        assert!(!Rewrite::new("/data/0/quote_id", json!("Q")).apply(&mut doc));
        assert!(!Rewrite::new("/nope/deeper", json!(1)).apply(&mut doc));
        assert!(!Rewrite::new("", json!(1)).apply(&mut doc));
        assert_eq!(doc, before);
    }

    #[test]
    fn faults_read_from_the_control_surface_json() {
        let f: Fault = serde_json::from_value(json!({
            "endpoint": "POST /v1/quotes", "kind": "rewrite",
            "value": {"pointer": "/data/source_currency", "value": "BTC"}, "times": 1
        }))
        .unwrap();
        assert_eq!(
            f.kind,
            FaultKind::Rewrite(Rewrite::new("/data/source_currency", json!("BTC")))
        );
        let f: Fault = serde_json::from_value(json!({
            "endpoint": "POST /oauth2/token", "kind": "respond",
            "value": {"status": 503, "body": {"error": "temporarily_unavailable"}, "retry_after": 2}
        }))
        .unwrap();
        assert!(matches!(
            f.kind,
            FaultKind::Respond(CannedResponse {
                status: 503,
                retry_after: Some(2),
                ..
            })
        ));
        let f: Fault = serde_json::from_value(
            json!({"endpoint": "GET /v1/transfers", "kind": "ignore_filters"}),
        )
        .unwrap();
        assert_eq!(f.kind, FaultKind::IgnoreFilters);
    }
}
