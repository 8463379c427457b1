//! Every answer that leads to money moving, or to a run counting as paid, checked
//! against what was asked (invariant 10). A server may ignore a filter or answer for
//! something else; a mismatch is a provider fault and names what differed.
//!
//! Pure functions: no IO, no state.

use rust_decimal::Decimal;

use crate::money::Currency;
use crate::provider::ProviderError;
use crate::provider::boundary::{Quote, RateSide, Recipient, Transfer};
use crate::runs::{Amount, LockedQuote, PayoutSpec, QuoteAsk, mask_account, names_match};

/// Why a provider step did not give a usable answer: the call failed, or its answer
/// is not an answer to what we asked.
pub enum Fault {
    Call(ProviderError),
    Answer {
        endpoint: &'static str,
        what: Mismatch,
    },
}

impl From<ProviderError> for Fault {
    fn from(e: ProviderError) -> Self {
        Fault::Call(e)
    }
}

/// What differed between an answer and the question, one item per difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch(pub Vec<String>);

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

struct Diffs(Vec<String>);

impl Diffs {
    fn same<T: PartialEq + std::fmt::Display>(&mut self, what: &str, asked: T, got: T) {
        if asked != got {
            self.0.push(format!("{what}: asked {asked}, got {got}"));
        }
    }

    fn done(self) -> Result<(), Mismatch> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Mismatch(self.0))
        }
    }
}

/// Target units per source unit of a quote's rate: Busha quotes the pair's price,
/// `sell` when the source is the pair's base, `buy` when the target is.
fn target_per_source(q: &Quote) -> Option<Decimal> {
    let rate = q.rate.rate;
    if rate <= Decimal::ZERO {
        return None;
    }
    match q.rate.side {
        Some(RateSide::Buy) => Decimal::ONE.checked_div(rate),
        _ => Some(rate),
    }
}

/// The sum of a quote's fees in `currency`, converting through the quote's own rate.
/// `None` if a fee is in a currency the quote does not trade.
fn fees_in(q: &Quote, currency: &Currency, tps: Decimal) -> Option<Decimal> {
    let (source, target) = (&q.source_currency, &q.target_currency);
    let mut total = Decimal::ZERO;
    for fee in &q.fees {
        let pick = [Some(&fee.amount), fee.converted_amount.as_ref()]
            .into_iter()
            .flatten()
            .find(|a| &a.currency == currency);
        let amount = match pick {
            Some(a) => a.amount,
            None if &fee.amount.currency == source && currency == target => fee.amount.amount * tps,
            None if &fee.amount.currency == target && currency == source => {
                fee.amount.amount.checked_div(tps)?
            }
            None => return None,
        };
        if amount < Decimal::ZERO {
            return None;
        }
        total += amount;
    }
    Some(total)
}

/// One unit of a currency's smallest denomination.
fn minor(c: &Currency) -> Decimal {
    Decimal::new(1, c.precision())
}

/// Checks a quote against the request: currencies, the fixed side's amount, the
/// reference, the payout, and the other side between `fixed × rate − fees` and
/// `fixed × rate`, within one minor unit.
pub fn quote_answers(spec: &PayoutSpec, ask: &QuoteAsk, q: &Quote) -> Result<(), Mismatch> {
    let mut d = Diffs(Vec::new());
    d.same("source currency", &spec.source_currency, &q.source_currency);
    d.same("target currency", &spec.target_currency, &q.target_currency);
    d.same("reference", ask.reference.as_str(), q.reference.as_str());
    for (what, asked, got) in [
        (
            "rate source currency",
            &spec.source_currency,
            q.rate.source_currency.as_ref(),
        ),
        (
            "rate target currency",
            &spec.target_currency,
            q.rate.target_currency.as_ref(),
        ),
    ] {
        if let Some(got) = got {
            d.same(what, asked, got);
        }
    }
    match &q.pay_out {
        Some(p) if p.bank_transfer => d.same(
            "pay_out recipient",
            ask.recipient_id.as_str(),
            p.recipient_id.as_deref().unwrap_or("none"),
        ),
        Some(p) => {
            d.0.push(format!("pay_out: asked bank_transfer, got {}", p.kind))
        }
        None => d.0.push("pay_out: asked bank_transfer, got none".into()),
    }
    if d.0.is_empty() {
        amounts_fit(spec, ask, q, &mut d);
    }
    d.done()
}

/// The fixed side exactly, and the other side within the band its rate and fees allow.
fn amounts_fit(spec: &PayoutSpec, ask: &QuoteAsk, q: &Quote, d: &mut Diffs) {
    let Some(tps) = target_per_source(q) else {
        d.0.push(format!("rate {} is not a positive price", q.rate.rate));
        return;
    };
    let (src, tgt) = (&spec.source_currency, &spec.target_currency);
    let (fixed, other, got, band) = match &ask.amount {
        Amount::Source { amount } => {
            d.same("source amount", *amount, q.source_amount);
            let Some(fees) = fees_in(q, tgt, tps) else {
                d.0.push("fees are in a currency the quote does not trade".into());
                return;
            };
            let gross = *amount * tps;
            let band = (gross - fees - minor(tgt), gross + minor(tgt));
            (format!("{amount} {src}"), tgt, q.target_amount, band)
        }
        Amount::Target { amount } => {
            d.same("target amount", *amount, q.target_amount);
            let Some(fees) = fees_in(q, src, tps) else {
                d.0.push("fees are in a currency the quote does not trade".into());
                return;
            };
            let Some(gross) = amount.checked_div(tps) else {
                d.0.push(format!("rate {} cannot price {amount} {tgt}", q.rate.rate));
                return;
            };
            let band = (gross - minor(src), gross + fees + minor(src));
            (format!("{amount} {tgt}"), src, q.source_amount, band)
        }
    };
    let (low, high) = (
        band.0.round_dp(other.precision()),
        band.1.round_dp(other.precision()),
    );
    if got <= Decimal::ZERO || got < low || got > high {
        d.0.push(format!(
            "{other} amount {got} does not follow from {fixed} at rate {} with its fees (expected {low} to {high})",
            q.rate.rate
        ));
    }
}

/// Checks a transfer against the quote it must have been made from.
pub fn transfer_answers(
    spec: &PayoutSpec,
    quote: &LockedQuote,
    recipient_id: Option<&str>,
    t: &Transfer,
) -> Result<(), Mismatch> {
    let mut d = Diffs(Vec::new());
    d.same("quote", quote.id.as_str(), t.quote_id.as_str());
    d.same("source currency", &spec.source_currency, &t.source_currency);
    d.same("target currency", &spec.target_currency, &t.target_currency);
    d.same("source amount", quote.source_amount, t.source_amount);
    d.same("target amount", quote.target_amount, t.target_amount);
    if let (Some(ours), Some(p)) = (recipient_id, &t.pay_out) {
        if let Some(theirs) = p.recipient_id.as_deref() {
            d.same("pay_out recipient", ours, theirs);
        }
    }
    d.done()
}

/// What the run expects of a bank recipient.
pub struct ExpectedPayee<'a> {
    pub currency: &'a Currency,
    pub bank_code: &'a str,
    pub account_number: &'a str,
    pub name: &'a str,
}

/// Checks that a recipient is the payee's account: currency, bank and account
/// number. Account numbers in the answer are masked.
pub fn recipient_is_account(want: &ExpectedPayee<'_>, r: &Recipient) -> Result<(), Mismatch> {
    let mut d = Diffs(Vec::new());
    let none = || "none".to_string();
    d.same(
        "currency",
        want.currency.to_string(),
        r.currency.as_ref().map_or_else(none, |c| c.to_string()),
    );
    d.same(
        "bank",
        want.bank_code,
        r.bank_code.as_deref().unwrap_or("none"),
    );
    let got = r.account_number.as_deref();
    if got != Some(want.account_number) {
        d.0.push(format!(
            "account: asked {}, got {}",
            mask_account(want.account_number),
            got.map_or_else(none, mask_account)
        ));
    }
    d.done()
}

/// The account holder's name as the provider gives it must be the job's declared
/// name. The error names both, with the masked account and the bank.
pub fn holder_is_named(want: &ExpectedPayee<'_>, holder: Option<&str>) -> Result<(), String> {
    let holder = holder.unwrap_or("");
    if names_match(want.name, holder) {
        return Ok(());
    }
    Err(format!(
        "account {} at bank {} belongs to {holder:?}, the job expects {:?}",
        mask_account(want.account_number),
        want.bank_code,
        want.name
    ))
}

/// Checks a recipient the job names by id: it must be that id, receive the job's
/// currency, and be active.
pub fn given_recipient_answers(
    id: &str,
    currency: &Currency,
    r: &Recipient,
) -> Result<(), Mismatch> {
    let mut d = Diffs(Vec::new());
    d.same("recipient", id, r.id.as_str());
    d.same(
        "currency",
        currency.to_string(),
        r.currency
            .as_ref()
            .map_or_else(|| "none".into(), |c| c.to_string()),
    );
    if !r.active {
        d.0.push(format!("recipient {id} is not active"));
    }
    d.done()
}
