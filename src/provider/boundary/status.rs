//! A transfer's status as the runs table stores it, and whether it is final.

use std::fmt;

/// Where a transfer stands, as stored in the runs table's `transfer_status` column.
/// The text codes are the stored values; a status this build does not know is kept
/// verbatim as [`TransferStatus::Unrecognised`] and counts as in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransferStatus {
    Pending,
    Processing,
    FundsReceived,
    FundsConverted,
    OutgoingPaymentSent,
    FundsDelivered,
    FundsNotDelivered,
    FundsRefunded,
    ReverseFundConversion,
    Cancelled,
    /// A status this build does not know, kept verbatim.
    Unrecognised(String),
}

impl TransferStatus {
    const KNOWN: [(TransferStatus, &'static str); 10] = [
        (Self::Pending, "pending"),
        (Self::Processing, "processing"),
        (Self::FundsReceived, "funds_received"),
        (Self::FundsConverted, "funds_converted"),
        (Self::OutgoingPaymentSent, "outgoing_payment_sent"),
        (Self::FundsDelivered, "funds_delivered"),
        (Self::FundsNotDelivered, "funds_not_delivered"),
        (Self::FundsRefunded, "funds_refunded"),
        (Self::ReverseFundConversion, "reverse_fund_conversion"),
        (Self::Cancelled, "cancelled"),
    ];

    /// The stored code.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Unrecognised(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(k, _)| k == known)
                .map_or("", |(_, code)| code),
        }
    }

    /// Parses a stored code; one this build does not know is kept as
    /// [`TransferStatus::Unrecognised`], so that it is shown, never lost.
    pub fn parse(code: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|(_, c)| *c == code)
            .map_or_else(|| Self::Unrecognised(code.to_string()), |(k, _)| k.clone())
    }
}

impl fmt::Display for TransferStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status reads as its stored code (`run.transfer_status.as_deref()` is the code).
impl std::ops::Deref for TransferStatus {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl serde::Serialize for TransferStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TransferStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Ok(Self::parse(&code))
    }
}

/// Whether a transfer's status is final, as its provider defines finality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Not final: keep following it (every unrecognised status too).
    InFlight,
    /// Final, and the money arrived where the quote said.
    Succeeded,
    /// Final, and it did not.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_status_round_trips_its_stored_code_and_keeps_unknown_ones() {
        for (status, code) in TransferStatus::KNOWN {
            assert_eq!(status.as_str(), code);
            assert_eq!(TransferStatus::parse(code), status);
        }
        let odd = TransferStatus::parse("held_for_review");
        assert_eq!(odd, TransferStatus::Unrecognised("held_for_review".into()));
        assert_eq!(odd.as_str(), "held_for_review");
    }
}
