//! Step 1: resolve the recipient (remembered, found, adopted or created).

use serde_json::json;

use super::plumbing::{country_of, describe};
use super::*;

impl Pipeline {
    pub(super) async fn step_recipient(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
    ) -> Step {
        let target = run.spec.target_currency.clone();
        let (bank_code, account_number, expected_name) = match run.spec.recipient.clone() {
            RecipientSpec::Id { id } => {
                return self.use_given_recipient(lease, run, token, &id).await;
            }
            RecipientSpec::Bank {
                bank_code,
                account_number,
                expected_name,
            } => (bank_code, account_number, expected_name),
        };
        let masked = mask_account(&account_number);
        let grant = run.spec.grant.clone();

        // 1. A recipient an earlier run of ours resolved for this account.
        if let Some(id) = self
            .store
            .known_recipient(&grant, &bank_code, &account_number)
            .await?
        {
            let got = call!(self, run, token, "GET /v1/recipients/{id}", |t| self
                .busha
                .get_recipient(t, &id));
            match got {
                Ok(c) if c.value.active => {
                    return self
                        .recipient_resolved(lease, run, &id, "known", c.request_id)
                        .await;
                }
                Ok(_) | Err(_) => {} // gone or inactive: look again below
            }
        }

        // 2. Search saved recipients by account number. This also reconciles a create
        //    whose outcome we never heard.
        let filter = RecipientFilter {
            currency: Some(target.clone()),
            account_number: Some(AccountNumber::new(account_number.clone())),
            kind: None,
            cursor: None,
            limit: Some(100),
        };
        let found = call!(self, run, token, "GET /v1/recipients", |t| self
            .busha
            .list_recipients(t, &filter));
        let found = match found {
            Ok(c) => c,
            Err(e) => return self.wait_or_fail(lease, run, e).await,
        };
        if let Some(r) = found.value.items.iter().find(|r| {
            r.active
                && r.account_number
                    .as_ref()
                    .is_some_and(|a| a.as_str() == account_number)
                && r.bank_code.as_deref().is_none_or(|b| b == bank_code)
        }) {
            let id = r.id.clone();
            self.store
                .remember_recipient(&grant, &bank_code, &account_number, &id, self.clock.now())
                .await?;
            let how = if run.pending == Some(PendingOp::CreateRecipient) {
                "adopted"
            } else {
                "found"
            };
            return self
                .recipient_resolved(lease, run, &id, how, found.request_id)
                .await;
        }

        // 3. Name enquiry: the account must carry the expected name.
        let enquiry = ResolveBankAccount {
            currency: target.clone(),
            country: country_of(&target),
            channel: Channel::BankTransfer,
            bank_code: Some(bank_code.clone()),
            account_number: AccountNumber::new(account_number.clone()),
        };
        let resolved = call!(
            self,
            run,
            token,
            "POST /v1/recipients/resolve-bank-account",
            |t| self.busha.resolve_bank_account(t, &enquiry)
        );
        let resolved = match resolved {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Rejected { .. } | ErrorKind::NotFound | ErrorKind::Validation { .. }
                ) =>
            {
                let reason = format!(
                    "name enquiry for account {masked} at bank {bank_code} failed: {}",
                    describe(&e)
                );
                return self.fail(lease, run, reason).await;
            }
            Err(e) => return self.wait_or_fail(lease, run, e).await,
        };
        if !names_match(&expected_name, &resolved.value.account_name) {
            let reason = format!(
                "name enquiry mismatch: account {masked} at bank {bank_code} belongs to {:?}, the job expects {:?}; no recipient was created",
                resolved.value.account_name, expected_name
            );
            return self.fail(lease, run, reason).await;
        }

        // 4. Create it: intent, call, outcome.
        if let Some(stop) = self.gated(lease, run, GateStep::CreateRecipient).await? {
            return Ok(Some(stop));
        }
        run.pending = Some(PendingOp::CreateRecipient);
        let intent = self.entry(run, "run.recipient.intent", json!({ "bank_code": bank_code, "account": masked, "name": resolved.value.account_name }));
        self.save(lease, run, vec![intent]).await?;
        let new = NewRecipient {
            kind: RecipientType::from(
                format!("{}_bank", target.as_str().to_ascii_lowercase()).as_str(),
            ),
            currency: Some(target.clone()),
            country_code: Some(country_of(&target)),
            bank_name: resolved.value.bank_name.clone(),
            bank_code: Some(bank_code.clone()),
            account_number: Some(AccountNumber::new(account_number.clone())),
            account_name: Some(resolved.value.account_name.clone()),
            entity_type: None,
            phone_number: None,
            network: None,
            address: None,
            memo: None,
        };
        let created = call!(self, run, token, "POST /v1/recipients", |t| self
            .busha
            .create_recipient(t, &new, &self.cover(lease)));
        match created {
            Ok(c) => {
                self.store
                    .remember_recipient(
                        &grant,
                        &bank_code,
                        &account_number,
                        &c.value.id,
                        self.clock.now(),
                    )
                    .await?;
                self.recipient_resolved(lease, run, &c.value.id.clone(), "created", c.request_id)
                    .await
            }
            Err(e) => self.wait_or_fail(lease, run, e).await,
        }
    }

    pub(super) async fn use_given_recipient(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
        id: &str,
    ) -> Step {
        let got = call!(self, run, token, "GET /v1/recipients/{id}", |t| self
            .busha
            .get_recipient(t, id));
        match got {
            Ok(c) => {
                let r = &c.value;
                if !r.active {
                    return self
                        .fail(lease, run, format!("recipient {id} is not active"))
                        .await;
                }
                if let Some(cur) = &r.currency {
                    if cur != &run.spec.target_currency {
                        let reason = format!(
                            "recipient {id} receives {cur}, the job pays {}",
                            run.spec.target_currency
                        );
                        return self.fail(lease, run, reason).await;
                    }
                }
                self.recipient_resolved(lease, run, id, "given", c.request_id)
                    .await
            }
            Err(e) if *e.kind() == ErrorKind::NotFound => {
                self.fail(lease, run, format!("recipient {id} does not exist"))
                    .await
            }
            Err(e) => self.wait_or_fail(lease, run, e).await,
        }
    }

    pub(super) async fn recipient_resolved(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        id: &str,
        how: &str,
        request_id: Option<String>,
    ) -> Step {
        run.recipient_id = Some(id.to_string());
        run.pending = None;
        self.advance(run, RunState::RecipientResolved);
        let e = self.entry(
            run,
            "run.recipient.resolved",
            json!({ "recipient_id": id, "how": how, "request_id": request_id }),
        );
        self.save(lease, run, vec![e]).await?;
        Ok(None)
    }
}
