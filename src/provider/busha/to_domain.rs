//! Busha's wire types read as the provider boundary's domain types.

use crate::money::Currency;
use crate::provider::boundary as domain;

use super::{PaymentObj, PaymentType, QuoteStatus, RateSide, Settlement};

/// The ISO country of a payout currency's bank system.
pub(super) fn country_of(currency: &Currency) -> String {
    match currency.as_str() {
        "KES" => "KE",
        "GHS" => "GH",
        "USD" => "US",
        "GBP" => "GB",
        _ => "NG",
    }
    .to_string()
}

pub(super) fn page_of<W, D>(p: super::Page<W>, f: impl Fn(W) -> D) -> domain::Page<D> {
    domain::Page {
        items: p.items.into_iter().map(f).collect(),
        next_cursor: p.next_cursor,
        skipped: p
            .skipped
            .into_iter()
            .map(|s| domain::Unreadable {
                shown: s.to_string(),
                id: s.id,
                quote_id: s.quote_id,
                reference: s.reference,
                account_number: s.account_number.map(|a| a.as_str().to_string()),
            })
            .collect(),
    }
}

fn sum(a: super::Amount) -> domain::Sum {
    domain::Sum {
        amount: a.amount,
        currency: a.currency,
    }
}

fn pay_out(p: PaymentObj) -> domain::PayOut {
    domain::PayOut {
        bank_transfer: p.kind == PaymentType::BankTransfer,
        kind: p.kind.as_str().to_string(),
        recipient_id: p.recipient_id,
    }
}

pub(super) fn quote(q: super::Quote) -> domain::Quote {
    domain::Quote {
        id: domain::QuoteId::new(q.id),
        reference: q.reference,
        state: match q.status {
            QuoteStatus::Pending => domain::QuoteState::Open,
            QuoteStatus::Accepted => domain::QuoteState::Used,
            other => domain::QuoteState::Closed(other.as_str().to_string()),
        },
        source_currency: q.source_currency,
        target_currency: q.target_currency,
        source_amount: q.source_amount,
        target_amount: q.target_amount,
        rate: domain::Rate {
            rate: q.rate.rate,
            side: match q.rate.side {
                Some(RateSide::Buy) => Some(domain::RateSide::Buy),
                Some(RateSide::Sell) => Some(domain::RateSide::Sell),
                _ => None,
            },
            source_currency: q.rate.source_currency,
            target_currency: q.rate.target_currency,
        },
        fees: q
            .fees
            .into_iter()
            .map(|f| domain::Fee {
                amount: sum(f.amount),
                converted_amount: f.converted_amount.map(sum),
            })
            .collect(),
        pay_out: q.pay_out.map(pay_out),
        expires_at: q.expires_at,
        created_at: q.created_at,
        needs_second_factor: q.two_step.is_some(),
    }
}

pub(super) fn transfer(t: super::Transfer) -> domain::Transfer {
    let settlement = match t.settlement() {
        Settlement::InFlight => domain::Settlement::InFlight,
        Settlement::Succeeded => domain::Settlement::Succeeded,
        Settlement::Failed => domain::Settlement::Failed,
    };
    domain::Transfer {
        id: domain::TransferId::new(t.id),
        quote_id: domain::QuoteId::new(t.quote_id),
        source_currency: t.source_currency,
        target_currency: t.target_currency,
        source_amount: t.source_amount,
        target_amount: t.target_amount,
        status: domain::TransferStatus::parse(t.status.as_str()),
        pay_out: t.pay_out.map(pay_out),
        settlement,
        created_at: t.created_at,
    }
}

pub(super) fn recipient(r: super::Recipient) -> domain::Recipient {
    domain::Recipient {
        id: domain::RecipientId::new(r.id),
        active: r.active,
        currency: r.currency,
        bank_code: r.bank_code,
        account_number: r.account_number.map(|a| a.as_str().to_string()),
        holder_name: r.account_name,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn busha_transfer(status: &str, pay_out: &str) -> super::super::Transfer {
        serde_json::from_value(json!({
            "id": "TRF_1", "quote_id": "QUO_1", "profile_id": "BUS_1",
            "description": "Sold USDT", "sub_description": "For NGN",
            "source_currency": "USDT", "target_currency": "NGN",
            "source_amount": "100", "target_amount": "168876",
            "rate": { "rate": "1690.76", "side": "sell" }, "fees": null,
            "pay_out": { "type": pay_out, "recipient_id": "677bbf9c7cf061f23784555a" },
            "status": status,
            "created_at": "2023-10-15T12:15:30Z", "updated_at": "2023-10-15T12:20:45Z"
        }))
        .expect("a Busha transfer")
    }

    #[test]
    fn a_transfer_keeps_its_status_code_and_busha_s_rule_of_finality() {
        let t = transfer(busha_transfer("funds_converted", "bank_transfer"));
        assert_eq!(t.status, domain::TransferStatus::FundsConverted);
        // Converted is only a waypoint when the payout leaves Busha.
        assert_eq!(t.settlement, domain::Settlement::InFlight);
        assert_eq!(t.id.as_str(), "TRF_1");
        assert_eq!(t.quote_id.as_str(), "QUO_1");
        let pay_out = t.pay_out.expect("a payout");
        assert!(pay_out.bank_transfer);
        assert_eq!(
            pay_out.recipient_id.as_deref(),
            Some("677bbf9c7cf061f23784555a")
        );

        let to_balance = transfer(busha_transfer("funds_converted", "balance"));
        assert_eq!(to_balance.settlement, domain::Settlement::Succeeded);
        assert!(!to_balance.pay_out.expect("a payout").bank_transfer);

        let odd = transfer(busha_transfer("held_for_review", "bank_transfer"));
        assert_eq!(
            odd.status,
            domain::TransferStatus::Unrecognised("held_for_review".into())
        );
        assert_eq!(odd.settlement, domain::Settlement::InFlight);
        let failed = transfer(busha_transfer("funds_refunded", "bank_transfer"));
        assert_eq!(failed.settlement, domain::Settlement::Failed);
    }
}
