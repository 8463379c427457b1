//! Step 1 for a recipient the job names by id: fetched (or, where Busha refuses that
//! id's form, found in the list), checked, and its holder's name kept for display.

use super::checks::{self, Fault, Mismatch};
use super::*;
use crate::provider::pager::Pager;

/// Pages of 100 searched for a recipient by id in the list.
const LIST_PAGES: u32 = 20;

impl Pipeline {
    pub(super) async fn use_given_recipient(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
        id: &str,
    ) -> Step {
        let (r, request_id) = match self.fetch_recipient(run, token, id).await? {
            Ok(Some(c)) => (c.value, c.request_id),
            Ok(None) => match self.list_for_id(run, token, id).await? {
                Ok(Some(r)) => (r, None),
                Ok(None) => {
                    return self
                        .fail(lease, run, format!("recipient {id} does not exist"))
                        .await;
                }
                Err(fault) => return self.fault(lease, run, fault).await,
            },
            Err(e) => return self.wait_or_fail(lease, run, e).await,
        };
        if r.id != *id {
            let what = Mismatch(vec![format!("recipient: asked {id}, got {}", r.id)]);
            return self
                .provider_fault(lease, run, "GET /v1/recipients/{id}", &what)
                .await;
        }
        if let Err(what) = checks::given_recipient_answers(id, &run.spec.target_currency, &r) {
            return self
                .fail(lease, run, format!("recipient {id} cannot be paid: {what}"))
                .await;
        }
        self.recipient_resolved(lease, run, &r, "given", request_id)
            .await
    }

    /// The recipient with this id, from the list (filtered on our side).
    async fn list_for_id(
        &self,
        run: &Run,
        token: &mut AccessToken,
        id: &str,
    ) -> Result<Result<Option<Recipient>, Fault>, Stop> {
        let query = RecipientQuery {
            currency: run.spec.target_currency.clone(),
            account_number: None,
        };
        let mut pager = Pager::new("GET /v1/recipients", LIST_PAGES);
        let stopped = loop {
            let cursor = pager.cursor();
            let got = call!(self, run, token, "GET /v1/recipients", |t| self
                .provider
                .recipients_page(t, &query, cursor.clone()));
            let page = match got {
                Ok(c) => c.value,
                Err(e) => return Ok(Err(Fault::Call(e))),
            };
            if let Some(r) = page.items.into_iter().find(|r| r.id == *id) {
                return Ok(Ok(Some(r)));
            }
            if let Some(s) = page
                .skipped
                .iter()
                .find(|s| s.id.as_deref().is_none_or(|s| s == id))
            {
                break format!("an item that may be it could not be read ({s})");
            }
            match pager.advance(page.next_cursor.as_deref()) {
                Ok(true) => {}
                Ok(false) => return Ok(Ok(None)),
                Err(e) => break format!("the list could not be read to its end: {e}"),
            }
        };
        Ok(Err(Fault::Answer {
            endpoint: "GET /v1/recipients",
            what: Mismatch(vec![format!("looking for recipient {id}: {stopped}")]),
        }))
    }
}
