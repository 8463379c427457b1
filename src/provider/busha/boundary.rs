//! Busha behind the provider boundary: [`PaymentsProvider`] for [`BushaClient`]. Domain
//! requests become Busha's wire requests here; its answers are read as domain types in
//! `to_domain`.

use crate::money::Currency;
use crate::provider::boundary::{self as domain, Answer, PaymentsProvider};
use crate::provider::{AccessToken, SendCheck};

use super::to_domain::{country_of, page_of, quote, recipient, transfer};
use super::{
    AccountNumber, BushaClient, Channel, NewQuote, NewRecipient, PageRequest, PayOut, QuoteAmount,
    RecipientFilter, RecipientType, ResolveBankAccount, SortOrder, TransferFilter,
};

/// Busha locks binding quotes, gives every transfer an id, and echoes our reference.
const CAPABILITIES: domain::Capabilities = domain::Capabilities {
    quote: domain::QuoteKind::Binding,
    transfer_ids: true,
    reconciliation: domain::Reconciliation::ByReference,
};

/// A page holds at most this many items (Busha's largest `limit`).
const PAGE: u32 = 100;

impl PaymentsProvider for BushaClient {
    fn capabilities(&self) -> domain::Capabilities {
        CAPABILITIES
    }

    fn longest_call(&self) -> Option<std::time::Duration> {
        BushaClient::longest_call(self)
    }

    fn call_timeout(&self) -> std::time::Duration {
        BushaClient::call_timeout(self)
    }

    fn balance<'a>(
        &'a self,
        t: &'a AccessToken,
        currency: &'a Currency,
    ) -> Answer<'a, domain::Balance> {
        Box::pin(async move {
            let c = self.get_balance(t, currency.as_str()).await?;
            Ok(c.map(|b| domain::Balance {
                currency: b.currency,
                available: b.available.amount,
            }))
        })
    }

    fn reference_price<'a>(
        &'a self,
        t: &'a AccessToken,
        source: &'a Currency,
        target: &'a Currency,
    ) -> Answer<'a, Option<domain::ReferencePrice>> {
        Box::pin(async move {
            let c = self.list_pairs(Some(t), None, None).await?;
            Ok(c.map(|pairs| {
                pairs.iter().find_map(|p| {
                    let price = |price, source_is_base| domain::ReferencePrice {
                        price,
                        source_is_base,
                    };
                    if &p.base == source && &p.counter == target {
                        Some(price(p.sell_price.amount, true))
                    } else if &p.base == target && &p.counter == source {
                        Some(price(p.buy_price.amount, false))
                    } else {
                        None
                    }
                })
            }))
        })
    }

    fn quotes_page<'a>(
        &'a self,
        t: &'a AccessToken,
        cursor: Option<String>,
    ) -> Answer<'a, domain::Page<domain::Quote>> {
        Box::pin(async move {
            let page = PageRequest {
                cursor,
                limit: Some(PAGE),
                sort: Some(SortOrder::Desc),
            };
            let c = self.list_quotes(t, &page).await?;
            Ok(c.map(|p| page_of(p, quote)))
        })
    }

    fn get_quote<'a>(
        &'a self,
        t: &'a AccessToken,
        id: &'a domain::QuoteId,
    ) -> Answer<'a, domain::Quote> {
        Box::pin(async move {
            Ok(BushaClient::get_quote(self, t, id.as_str())
                .await?
                .map(quote))
        })
    }

    fn create_quote<'a>(
        &'a self,
        t: &'a AccessToken,
        ask: &'a domain::QuoteRequest,
        check: &'a dyn SendCheck,
    ) -> Answer<'a, domain::Quote> {
        Box::pin(async move {
            let new = NewQuote {
                source_currency: ask.source_currency.clone(),
                target_currency: ask.target_currency.clone(),
                amount: match ask.amount {
                    domain::FixedSide::Source(a) => QuoteAmount::Source(a),
                    domain::FixedSide::Target(a) => QuoteAmount::Target(a),
                },
                reference: Some(ask.reference.clone()),
                pay_out: Some(PayOut::BankTransfer {
                    recipient_id: ask.recipient_id.as_str().to_string(),
                }),
            };
            Ok(BushaClient::create_quote(self, t, &new, check)
                .await?
                .map(quote))
        })
    }

    fn transfers_page<'a>(
        &'a self,
        t: &'a AccessToken,
        quote: &'a domain::QuoteId,
        cursor: Option<String>,
    ) -> Answer<'a, domain::Page<domain::Transfer>> {
        Box::pin(async move {
            let filter = TransferFilter {
                quote_id: Some(quote.as_str().to_string()),
                status: Vec::new(),
                cursor,
                limit: Some(PAGE),
            };
            let c = self.list_transfers(t, &filter).await?;
            Ok(c.map(|p| page_of(p, transfer)))
        })
    }

    fn get_transfer<'a>(
        &'a self,
        t: &'a AccessToken,
        id: &'a domain::TransferId,
    ) -> Answer<'a, domain::Transfer> {
        Box::pin(async move {
            Ok(BushaClient::get_transfer(self, t, id.as_str())
                .await?
                .map(transfer))
        })
    }

    fn create_transfer<'a>(
        &'a self,
        t: &'a AccessToken,
        quote: &'a domain::QuoteId,
        check: &'a dyn SendCheck,
    ) -> Answer<'a, domain::Transfer> {
        Box::pin(async move {
            Ok(BushaClient::create_transfer(self, t, quote.as_str(), check)
                .await?
                .map(transfer))
        })
    }

    fn recipients_page<'a>(
        &'a self,
        t: &'a AccessToken,
        query: &'a domain::RecipientQuery,
        cursor: Option<String>,
    ) -> Answer<'a, domain::Page<domain::Recipient>> {
        Box::pin(async move {
            let filter = RecipientFilter {
                currency: Some(query.currency.clone()),
                account_number: query.account_number.clone().map(AccountNumber::new),
                kind: None,
                cursor,
                limit: Some(PAGE),
            };
            let c = self.list_recipients(t, &filter).await?;
            Ok(c.map(|p| page_of(p, recipient)))
        })
    }

    fn get_recipient<'a>(
        &'a self,
        t: &'a AccessToken,
        id: &'a domain::RecipientId,
    ) -> Answer<'a, domain::Recipient> {
        Box::pin(async move {
            Ok(BushaClient::get_recipient(self, t, id.as_str())
                .await?
                .map(recipient))
        })
    }

    fn check_bank_account<'a>(
        &'a self,
        t: &'a AccessToken,
        account: &'a domain::BankAccount,
    ) -> Answer<'a, domain::CheckedAccount> {
        Box::pin(async move {
            let enquiry = ResolveBankAccount {
                currency: account.currency.clone(),
                country: country_of(&account.currency),
                channel: Channel::BankTransfer,
                bank_code: Some(account.bank_code.clone()),
                account_number: AccountNumber::new(account.account_number.clone()),
            };
            let c = self.resolve_bank_account(t, &enquiry).await?;
            Ok(c.map(|r| domain::CheckedAccount {
                holder_name: r.account_name,
                bank_name: r.bank_name,
            }))
        })
    }

    fn create_recipient<'a>(
        &'a self,
        t: &'a AccessToken,
        account: &'a domain::BankAccount,
        checked: &'a domain::CheckedAccount,
        check: &'a dyn SendCheck,
    ) -> Answer<'a, domain::Recipient> {
        Box::pin(async move {
            let currency = &account.currency;
            let kind = format!("{}_bank", currency.as_str().to_ascii_lowercase());
            let new = NewRecipient {
                kind: RecipientType::from(kind.as_str()),
                currency: Some(currency.clone()),
                country_code: Some(country_of(currency)),
                bank_name: checked.bank_name.clone(),
                bank_code: Some(account.bank_code.clone()),
                account_number: Some(AccountNumber::new(account.account_number.clone())),
                account_name: Some(checked.holder_name.clone()),
                entity_type: None,
                phone_number: None,
                network: None,
                address: None,
                memo: None,
            };
            Ok(BushaClient::create_recipient(self, t, &new, check)
                .await?
                .map(recipient))
        })
    }
}
