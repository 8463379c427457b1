//! A guard for walking a cursor-paginated list: it refuses a cursor the server already
//! sent (a server that repeats `next_cursor` would otherwise be paged for ever) and
//! stops after a bound on pages, each time with an error that says so.
//!
//! ```ignore
//! let mut pager = Pager::new("GET /v1/transfers", 100);
//! loop {
//!     let filter = TransferFilter { cursor: pager.cursor(), ..Default::default() };
//!     let page = client.list_transfers(&token, &filter).await?.value;
//!     // ... use page.items (and decide about page.skipped) ...
//!     if !pager.advance(page.next_cursor.as_deref())? {
//!         break; // that was the last page
//!     }
//! }
//! ```

use std::collections::HashSet;

use crate::provider::error::{ErrorKind, ProviderError};

/// Where one walk through a list stands. See the module docs for the loop.
#[derive(Clone, Debug)]
pub struct Pager {
    endpoint: &'static str,
    max_pages: u32,
    pages: u32,
    cursor: Option<String>,
    seen: HashSet<String>,
}

/// Why a walk was stopped. Converts into a [`ProviderError`] of kind
/// [`ErrorKind::Transient`] for the same endpoint, with this text as its message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error(
        "{endpoint}: the server sent cursor {cursor:?} again after page {pages}; stopped paging (it would never end)"
    )]
    RepeatedCursor {
        endpoint: &'static str,
        cursor: String,
        pages: u32,
    },
    #[error("{endpoint}: more than {pages} pages; stopped paging at the bound")]
    TooManyPages { endpoint: &'static str, pages: u32 },
}

impl PagingError {
    /// Pages read before the walk was stopped.
    pub fn pages(&self) -> u32 {
        match self {
            Self::RepeatedCursor { pages, .. } | Self::TooManyPages { pages, .. } => *pages,
        }
    }
}

impl From<PagingError> for ProviderError {
    fn from(e: PagingError) -> Self {
        let endpoint = match &e {
            PagingError::RepeatedCursor { endpoint, .. }
            | PagingError::TooManyPages { endpoint, .. } => *endpoint,
        };
        let message = e.to_string();
        let message = message
            .strip_prefix(&format!("{endpoint}: "))
            .unwrap_or(&message)
            .to_string();
        ProviderError::new(endpoint, ErrorKind::Transient).with_message(message)
    }
}

impl Pager {
    /// A walk through `endpoint` (as in [`ProviderError::endpoint`], e.g.
    /// `"GET /v1/quotes"`) of at most `max_pages` pages (at least one).
    pub fn new(endpoint: &'static str, max_pages: u32) -> Self {
        Self {
            endpoint,
            max_pages: max_pages.max(1),
            pages: 0,
            cursor: None,
            seen: HashSet::new(),
        }
    }

    /// The cursor to send for the next page: `None` for the first.
    pub fn cursor(&self) -> Option<String> {
        self.cursor.clone()
    }

    /// Pages read so far (the ones passed to [`Self::advance`]).
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Records that a page was read, with its `next_cursor`. `Ok(true)`: read the next
    /// page with [`Self::cursor`]. `Ok(false)`: that was the last page. `Err`: the
    /// server repeated a cursor, or there are more pages than the bound; stop.
    pub fn advance(&mut self, next_cursor: Option<&str>) -> Result<bool, PagingError> {
        self.pages += 1;
        let Some(next) = next_cursor.filter(|c| !c.is_empty()) else {
            return Ok(false);
        };
        if self.seen.contains(next) {
            return Err(PagingError::RepeatedCursor {
                endpoint: self.endpoint,
                cursor: next.to_string(),
                pages: self.pages,
            });
        }
        if self.pages >= self.max_pages {
            return Err(PagingError::TooManyPages {
                endpoint: self.endpoint,
                pages: self.pages,
            });
        }
        self.seen.insert(next.to_string());
        self.cursor = Some(next.to_string());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_ends_on_the_page_without_a_next_cursor() {
        let mut p = Pager::new("GET /v1/quotes", 10);
        assert_eq!(p.cursor(), None);
        assert_eq!(p.advance(Some("c1")), Ok(true));
        assert_eq!(p.cursor().as_deref(), Some("c1"));
        assert_eq!(p.advance(Some("c2")), Ok(true));
        assert_eq!(p.advance(None), Ok(false));
        assert_eq!(p.pages(), 3);
    }

    #[test]
    fn a_repeated_or_cycling_cursor_stops_the_walk() {
        let mut p = Pager::new("GET /v1/transfers", 10);
        assert_eq!(p.advance(Some("c1")), Ok(true));
        let again = p.advance(Some("c1")).unwrap_err();
        assert!(matches!(
            &again,
            PagingError::RepeatedCursor { pages: 2, .. }
        ));
        assert!(again.to_string().contains("\"c1\" again"), "{again}");

        let mut p = Pager::new("GET /v1/transfers", 10);
        p.advance(Some("a")).unwrap();
        p.advance(Some("b")).unwrap();
        assert!(matches!(
            p.advance(Some("a")),
            Err(PagingError::RepeatedCursor { .. })
        ));
    }

    #[test]
    fn the_bound_on_pages_stops_the_walk_and_says_so() {
        let mut p = Pager::new("GET /v1/quotes", 2);
        assert_eq!(p.advance(Some("c1")), Ok(true));
        let err = p.advance(Some("c2")).unwrap_err();
        assert_eq!(
            err,
            PagingError::TooManyPages {
                endpoint: "GET /v1/quotes",
                pages: 2
            }
        );
        // The last page within the bound is fine.
        let mut p = Pager::new("GET /v1/quotes", 2);
        p.advance(Some("c1")).unwrap();
        assert_eq!(p.advance(None), Ok(false));
    }

    #[test]
    fn a_paging_error_is_a_transient_provider_error_for_its_endpoint() {
        let e: ProviderError = PagingError::TooManyPages {
            endpoint: "GET /v1/quotes",
            pages: 5,
        }
        .into();
        assert_eq!(e.kind(), &ErrorKind::Transient);
        assert_eq!(e.endpoint(), "GET /v1/quotes");
        assert!(e.to_string().contains("more than 5 pages"), "{e}");
    }
}
