//! Step 1: resolve the recipient (remembered, found, adopted or created).
//!
//! Every path that yields a bank recipient checks it is the payee's account
//! (currency, bank, number) and that the holder's name, as Busha reports it, is the
//! job's declared name, before any quote is locked. Searching and creating for one
//! (grant, bank, account) is serialised in the store, so that two runs paying one new
//! account create one recipient.

use serde_json::json;

use super::checks::{self, ExpectedPayee, Fault, Mismatch};
use super::plumbing::describe;
use super::*;
use crate::provider::pager::Pager;
use crate::store::{AccountKey, SeenRecipient};

/// Pages of 100 searched when Busha ignored the `account_number` filter.
const UNFILTERED_PAGES: u32 = 10;

/// The bank payee of a run, owned.
#[derive(Clone)]
pub(super) struct BankPayee {
    pub bank_code: String,
    pub account_number: String,
    pub name: String,
}

impl BankPayee {
    fn expected<'a>(&'a self, currency: &'a Currency) -> ExpectedPayee<'a> {
        ExpectedPayee {
            currency,
            bank_code: &self.bank_code,
            account_number: &self.account_number,
            name: &self.name,
        }
    }
}

impl Pipeline {
    pub(super) async fn step_recipient(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
    ) -> Step {
        match run.spec.recipient.clone() {
            RecipientSpec::Id { id } => self.use_given_recipient(lease, run, token, &id).await,
            RecipientSpec::Bank {
                bank_code,
                account_number,
                expected_name,
            } => {
                let payee = BankPayee {
                    bank_code,
                    account_number,
                    name: expected_name,
                };
                let key = AccountKey {
                    grant: run.spec.grant.clone(),
                    bank_code: payee.bank_code.clone(),
                    account_number: payee.account_number.clone(),
                };
                let step = self.bank_recipient(lease, run, token, &payee, &key).await;
                // The lock is held only while a create may be in flight.
                if run.pending != Some(PendingOp::CreateRecipient) {
                    self.store.unlock_account(&key, &run.id).await?;
                }
                step
            }
        }
    }

    async fn bank_recipient(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
        payee: &BankPayee,
        key: &AccountKey,
    ) -> Step {
        // 1. A recipient an earlier run of ours resolved for this account.
        if run.pending.is_none() {
            if let Some(done) = self.remembered(lease, run, token, payee).await? {
                return Ok(done);
            }
        }
        // 2. From here on, one run at a time per account.
        let now = self.clock.now();
        if let Err(holder) = self
            .store
            .lock_account(key, &run.id, now, now + self.stored_lease())
            .await?
        {
            let until = now + self.cfg.retry_base;
            let note = format!("waiting for run {holder}, which is resolving the same account");
            return self
                .wait(lease, run, until, note, "run.recipient.waiting")
                .await;
        }
        // 3. Search saved recipients by account number. This also reconciles a create
        //    whose outcome we never heard.
        match self.search_account(run, token, payee).await? {
            Ok(Some(r)) => {
                let how = if run.pending == Some(PendingOp::CreateRecipient) {
                    "adopted"
                } else {
                    "found"
                };
                return self.accept_account(lease, run, payee, r, how, None).await;
            }
            Ok(None) => {}
            Err(fault) => return self.fault(lease, run, fault).await,
        }
        // 4. Name enquiry, then create.
        self.enquire_and_create(lease, run, token, payee).await
    }

    /// The recipient remembered for this account, fetched again and checked. `None`
    /// when there is none, or it is gone, inactive or cannot be fetched by id.
    async fn remembered(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
        payee: &BankPayee,
    ) -> Result<Option<Option<Executed>>, Stop> {
        let grant = run.spec.grant.clone();
        let Some(id) = self
            .store
            .known_recipient(&grant, &payee.bank_code, &payee.account_number)
            .await?
        else {
            return Ok(None);
        };
        match self.fetch_recipient(run, token, &id).await? {
            Ok(Some(c)) if c.value.active => {
                if c.value.id != *id.as_str() {
                    let what = Mismatch(vec![format!("recipient: asked {id}, got {}", c.value.id)]);
                    return self
                        .provider_fault(lease, run, "GET /v1/recipients/{id}", &what)
                        .await
                        .map(Some);
                }
                self.accept_account(lease, run, payee, c.value, "known", c.request_id)
                    .await
                    .map(Some)
            }
            // Gone, inactive, refused by id, or unreadable: look again by account.
            Ok(_) | Err(_) => Ok(None),
        }
    }

    /// `GET /v1/recipients/{id}`, unless Busha refused this id's form before.
    /// `Ok(None)`: not found, or refused as malformed (then never asked again).
    pub(super) async fn fetch_recipient(
        &self,
        run: &Run,
        token: &mut AccessToken,
        id: &str,
    ) -> Result<Result<Option<Called<Recipient>>, ProviderError>, Stop> {
        let grant = run.spec.grant.clone();
        if self
            .store
            .seen_recipient(&grant, id)
            .await?
            .is_some_and(|s| s.fetch_refused)
        {
            return Ok(Ok(None));
        }
        let rid = RecipientId::new(id);
        let got = call!(self, run, token, "GET /v1/recipients/{id}", |t| self
            .provider
            .get_recipient(t, &rid));
        match got {
            Ok(c) => Ok(Ok(Some(c))),
            Err(e) if *e.kind() == ErrorKind::NotFound => Ok(Ok(None)),
            Err(e) if matches!(e.kind(), ErrorKind::Validation { .. }) => {
                // Busha's spec types the path as a UUID, while its recipient ids are
                // 24-hex: a refused form is remembered, and the list is used instead.
                tracing::info!(run = %run.id, recipient = id, "Busha refuses to fetch this recipient id; listing instead from now on");
                let seen = SeenRecipient {
                    holder_name: None,
                    bank_code: None,
                    account_masked: None,
                    currency: None,
                    fetch_refused: true,
                };
                self.store
                    .saw_recipient(&grant, id, &seen, self.clock.now())
                    .await?;
                Ok(Ok(None))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// The saved, active recipient for the payee's account, filtered on our side (a
    /// server may ignore the filter: then absence is proven only by the whole list).
    async fn search_account(
        &self,
        run: &Run,
        token: &mut AccessToken,
        payee: &BankPayee,
    ) -> Result<Result<Option<Recipient>, Fault>, Stop> {
        let currency = run.spec.target_currency.clone();
        let query = RecipientQuery {
            currency: currency.clone(),
            account_number: Some(payee.account_number.clone()),
        };
        let want = payee.expected(&currency);
        let mut pager = Pager::new("GET /v1/recipients", UNFILTERED_PAGES);
        loop {
            let cursor = pager.cursor();
            let got = call!(self, run, token, "GET /v1/recipients", |t| self
                .provider
                .recipients_page(t, &query, cursor.clone()));
            let page = match got {
                Ok(c) => c.value,
                Err(e) => return Ok(Err(Fault::Call(e))),
            };
            let mine = |a: Option<&str>| a == Some(payee.account_number.as_str());
            // An item we could not read may be the payee's unless its account says not.
            if let Some(s) = page
                .skipped
                .iter()
                .find(|s| s.account_number.as_deref().is_none_or(|a| mine(Some(a))))
            {
                return Ok(Err(unproven(&format!(
                    "held an unreadable item that may be the payee's ({s})"
                ))));
            }
            let foreign = page
                .items
                .iter()
                .filter(|r| !mine(r.account_number.as_deref()))
                .count();
            let mut ours = page
                .items
                .into_iter()
                .filter(|r| r.active && checks::recipient_is_account(&want, r).is_ok());
            if let Some(r) = ours.next() {
                return Ok(Ok(Some(r)));
            }
            if foreign == 0 {
                return Ok(Ok(None));
            }
            tracing::warn!(run = %run.id, foreign, "GET /v1/recipients ignored its account_number filter; searching the whole list");
            match pager.advance(page.next_cursor.as_deref()) {
                Ok(true) => {}
                Ok(false) => return Ok(Ok(None)),
                Err(e) => return Ok(Err(unproven(&format!("could not be read to its end: {e}")))),
            }
        }
    }

    /// Name enquiry (the account must carry the declared name), then intent, call,
    /// and the created recipient checked as any other.
    async fn enquire_and_create(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
        payee: &BankPayee,
    ) -> Step {
        let target = run.spec.target_currency.clone();
        let masked = mask_account(&payee.account_number);
        let account = BankAccount {
            currency: target.clone(),
            bank_code: payee.bank_code.clone(),
            account_number: payee.account_number.clone(),
        };
        let resolved = call!(
            self,
            run,
            token,
            "POST /v1/recipients/resolve-bank-account",
            |t| self.provider.check_bank_account(t, &account)
        );
        let resolved = match resolved {
            Ok(c) => c.value,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Rejected { .. } | ErrorKind::NotFound | ErrorKind::Validation { .. }
                ) =>
            {
                let reason = format!(
                    "name enquiry for account {masked} at bank {} failed: {}",
                    payee.bank_code,
                    describe(&e)
                );
                return self.fail(lease, run, reason).await;
            }
            Err(e) => return self.wait_or_fail(lease, run, e).await,
        };
        if let Err(reason) =
            checks::holder_is_named(&payee.expected(&target), Some(&resolved.holder_name))
        {
            let reason = format!("name enquiry mismatch: {reason}; no recipient was created");
            return self.fail(lease, run, reason).await;
        }

        let sealed = match self.gated(lease, run, GateStep::CreateRecipient).await? {
            Ok(proof) => proof,
            Err(stop) => return Ok(Some(stop)),
        };
        run.pending = Some(PendingOp::CreateRecipient);
        let intent = self.entry(run, "run.recipient.intent", json!({ "bank_code": payee.bank_code, "account": masked, "name": resolved.holder_name }));
        self.save(lease, run, vec![intent]).await?;
        let created = call!(self, run, token, "POST /v1/recipients", |t| self
            .provider
            .create_recipient(t, &account, &resolved, &self.cover(lease, &sealed)));
        match created {
            Ok(c) => {
                self.accept_account(lease, run, payee, c.value, "created", c.request_id)
                    .await
            }
            Err(e) => self.wait_or_fail(lease, run, e).await,
        }
    }

    /// Takes a bank recipient for the run, once it is the payee's account (else a
    /// provider fault) held under the payee's declared name (else the run fails).
    async fn accept_account(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        payee: &BankPayee,
        r: Recipient,
        how: &str,
        request_id: Option<String>,
    ) -> Step {
        let currency = run.spec.target_currency.clone();
        let want = payee.expected(&currency);
        if let Err(what) = checks::recipient_is_account(&want, &r) {
            let endpoint = match how {
                "known" => "GET /v1/recipients/{id}",
                "created" => "POST /v1/recipients",
                _ => "GET /v1/recipients",
            };
            return self.provider_fault(lease, run, endpoint, &what).await;
        }
        if let Err(reason) = checks::holder_is_named(&want, r.holder_name.as_deref()) {
            let reason = format!(
                "name mismatch: {reason} (recipient {}, {how}); no quote was locked",
                r.id
            );
            return self.fail(lease, run, reason).await;
        }
        let grant = run.spec.grant.clone();
        self.store
            .remember_recipient(
                &grant,
                &payee.bank_code,
                &payee.account_number,
                r.id.as_str(),
                self.clock.now(),
            )
            .await?;
        self.recipient_resolved(lease, run, &r, how, request_id)
            .await
    }

    pub(super) async fn recipient_resolved(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        r: &Recipient,
        how: &str,
        request_id: Option<String>,
    ) -> Step {
        run.recipient_id = Some(r.id.to_string());
        run.recipient_name = r.holder_name.clone();
        run.pending = None;
        self.advance(run, RunState::RecipientResolved);
        let e = self.entry(
            run,
            "run.recipient.resolved",
            json!({ "recipient_id": r.id, "how": how, "holder_name": r.holder_name, "request_id": request_id }),
        );
        self.save(lease, run, vec![e]).await?;
        let seen = SeenRecipient {
            holder_name: r.holder_name.clone(),
            bank_code: r.bank_code.clone(),
            account_masked: r.account_number.as_deref().map(mask_account),
            currency: r.currency.as_ref().map(|c| c.to_string()),
            fetch_refused: false,
        };
        let grant = run.spec.grant.clone();
        self.store
            .saw_recipient(&grant, r.id.as_str(), &seen, self.clock.now())
            .await?;
        Ok(None)
    }
}

/// Absence of the payee's recipient could not be proven from an unfiltered list.
fn unproven(why: &str) -> Fault {
    Fault::Answer {
        endpoint: "GET /v1/recipients",
        what: Mismatch(vec![format!(
            "the list {why}: whether the account already has a recipient cannot be proven"
        )]),
    }
}
