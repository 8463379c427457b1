//! One page of a cursor-paginated list, read item by item.
//!
//! Busha's spec types many list fields as free strings (a recipient's `currency`, say,
//! may be `"USDT-TRC20"`), so one item we cannot read must not make the whole page
//! unreadable. Each item is decoded on its own; an item that fails is left out of
//! [`Page::items`] and described in [`Page::skipped`], with a warning and the metric
//! `treasury_provider_items_skipped_total{endpoint}`.
//!
//! Whether a skipped item matters is the caller's decision, because only the caller
//! knows what it is looking for: see [`Skipped`].

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::types::AccountNumber;

/// One page of a cursor-paginated list. `next_cursor` is `None` on the last page.
///
/// `skipped` lists the items of this page that could not be read. They are not in
/// `items`. A caller that searches a page must ask, for each skipped item, whether it
/// could be the one it looks for (see [`Skipped`]), and must not conclude "not found"
/// when it could.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
    pub skipped: Vec<Skipped>,
}

/// A list item that could not be read, with the few identifying fields it carried as
/// plain strings (each `None` when absent or not a string), so that a caller can tell
/// whether it could be the item it needs.
///
/// The rule for callers: a skipped item is an error only when it could be the one the
/// caller needs, i.e. when none of the fields the caller searches by rules it out. A
/// search for the recipient of account `0123456789` can ignore a skipped item whose
/// `account_number` is another; it cannot ignore one without an `account_number`, or
/// with ours. Reconciliation, which needs every transfer, can ignore none.
///
/// `Debug` masks the account number, and `error` never carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The item's `id`.
    pub id: Option<String>,
    /// `account_number` (recipients).
    pub account_number: Option<AccountNumber>,
    /// `bank_code` (recipients).
    pub bank_code: Option<String>,
    /// `currency`, or the legacy `currency_id` (recipients, balances).
    pub currency: Option<String>,
    /// `quote_id` (transfers).
    pub quote_id: Option<String>,
    /// `reference` (quotes).
    pub reference: Option<String>,
    /// `source_currency` and `target_currency` (quotes, transfers).
    pub source_currency: Option<String>,
    pub target_currency: Option<String>,
    /// `created_at`, as sent.
    pub created_at: Option<String>,
    /// Why it could not be read.
    pub error: String,
}

impl Skipped {
    fn of(item: &serde_json::Value, error: &serde_json::Error) -> Self {
        let text = |name: &str| item.get(name).and_then(|v| v.as_str()).map(str::to_string);
        let account_number = text("account_number").map(AccountNumber::new);
        let mut error = error.to_string();
        // serde's messages may quote the value they refused: never an account number.
        if let Some(number) = account_number.as_ref().filter(|n| !n.as_str().is_empty()) {
            error = error.replace(number.as_str(), &number.masked());
        }
        Skipped {
            id: text("id"),
            account_number,
            bank_code: text("bank_code"),
            currency: text("currency").or_else(|| text("currency_id")),
            quote_id: text("quote_id"),
            reference: text("reference"),
            source_currency: text("source_currency"),
            target_currency: text("target_currency"),
            created_at: text("created_at"),
            error,
        }
    }
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "item {}", self.id.as_deref().unwrap_or("without an id"))?;
        if let Some(q) = &self.quote_id {
            write!(f, " (quote {q})")?;
        }
        if let Some(a) = &self.account_number {
            write!(f, " (account {})", a.masked())?;
        }
        write!(f, ": {}", self.error)
    }
}

/// The list envelope: `data` plus `pagination {current_entries_size, next_cursor?, ..}`.
#[derive(Deserialize)]
pub(super) struct ListEnvelope {
    /// Go sends a nil slice as `null`.
    data: Option<Vec<serde_json::Value>>,
    pagination: Pagination,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default)]
    next_cursor: Option<String>,
}

impl ListEnvelope {
    /// Reads every item on its own; the ones that fail are skipped, warned about and
    /// counted under `endpoint`.
    pub(super) fn into_page<T: DeserializeOwned>(self, endpoint: &'static str) -> Page<T> {
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        for item in self.data.unwrap_or_default() {
            match T::deserialize(&item) {
                Ok(v) => items.push(v),
                Err(e) => skipped.push(Skipped::of(&item, &e)),
            }
        }
        for s in &skipped {
            tracing::warn!(endpoint, item = s.id.as_deref().unwrap_or("-"), error = %s.error, "skipped a list item that cannot be read");
        }
        if !skipped.is_empty() {
            metrics::counter!("treasury_provider_items_skipped_total", "endpoint" => endpoint)
                .increment(skipped.len() as u64);
        }
        Page {
            items,
            // An empty cursor would page for ever; it means "no more".
            next_cursor: self.pagination.next_cursor.filter(|c| !c.is_empty()),
            skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        id: String,
        n: u32,
    }

    fn page(v: serde_json::Value) -> Page<Item> {
        serde_json::from_value::<ListEnvelope>(v)
            .unwrap()
            .into_page("GET /test")
    }

    #[test]
    fn an_unreadable_item_is_skipped_with_its_identifying_fields() {
        let p = page(json!({
            "data": [
                {"id": "a", "n": 1},
                {"id": "b", "n": "not a number", "account_number": "0123456789", "quote_id": "Q"},
                {"n": 3, "currency": "USDT-TRC20"}
            ],
            "pagination": {"next_cursor": "c1"}
        }));
        assert_eq!(
            p.items,
            vec![Item {
                id: "a".into(),
                n: 1
            }]
        );
        assert_eq!(p.next_cursor.as_deref(), Some("c1"));
        assert_eq!(p.skipped.len(), 2);
        let b = &p.skipped[0];
        assert_eq!(b.id.as_deref(), Some("b"));
        assert_eq!(b.quote_id.as_deref(), Some("Q"));
        assert_eq!(
            b.account_number.as_ref().map(AccountNumber::as_str),
            Some("0123456789")
        );
        let shown = format!("{b} {b:?}");
        assert!(!shown.contains("0123456789"), "{shown}");
        assert_eq!(p.skipped[1].id, None);
        assert_eq!(p.skipped[1].currency.as_deref(), Some("USDT-TRC20"));
        assert!(p.skipped[1].to_string().contains("without an id"));
    }

    #[test]
    fn null_data_and_an_empty_cursor_are_an_empty_last_page() {
        let p = page(json!({"data": null, "pagination": {"next_cursor": ""}}));
        assert!(p.items.is_empty() && p.skipped.is_empty());
        assert_eq!(p.next_cursor, None);
    }
}
