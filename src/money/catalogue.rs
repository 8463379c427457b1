//! The currency catalogue: which currencies each provider moves, on which networks,
//! with how many decimal places, and which source → target pairs it can pay. This is
//! the one place job files, the pipeline and the sandboxes read currencies from
//! (documented in `jobs/README.md`, "Currencies").
//!
//! - **Busha** converts: any listed source may pay any listed target, and the same
//!   currency on both sides is a plain payout (Busha documents NGN → NGN).
//! - **Baanx** has no FX: a withdrawal sends what the wallet holds, so the source and
//!   the target must be the same currency.

/// One currency a provider moves: its code, display name, kind, networks and precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrencyInfo {
    pub code: &'static str,
    pub name: &'static str,
    pub fiat: bool,
    /// The networks it moves on (empty for fiat, which moves by bank transfer).
    pub networks: &'static [&'static str],
    /// Decimal places the provider accepts for amounts in this currency.
    pub precision: u32,
}

const fn fiat(code: &'static str, name: &'static str) -> CurrencyInfo {
    CurrencyInfo {
        code,
        name,
        fiat: true,
        networks: &[],
        precision: 2,
    }
}

const fn coin(
    code: &'static str,
    name: &'static str,
    networks: &'static [&'static str],
    precision: u32,
) -> CurrencyInfo {
    CurrencyInfo {
        code,
        name,
        fiat: false,
        networks,
        precision,
    }
}

/// What Busha lists (its `GET /v1/currencies` and pairs, as far as our jobs use them).
pub const BUSHA: &[CurrencyInfo] = &[
    fiat("NGN", "Nigerian Naira"),
    fiat("KES", "Kenyan Shilling"),
    fiat("GHS", "Ghanaian Cedi"),
    fiat("USD", "US Dollar"),
    fiat("GBP", "British Pound"),
    coin("USDT", "Tether", &["TRX", "ETH", "BSC"], 6),
    coin("USDC", "USD Coin", &["ETH", "BSC"], 6),
    coin("BTC", "Bitcoin", &["BTC"], 8),
    coin("ETH", "Ethereum", &["ETH"], 8),
];

/// What Baanx wallets hold (`POST /v1/wallet/internal`'s supported pairs).
pub const BAANX: &[CurrencyInfo] = &[
    coin("USDC", "USD Coin", &["linea", "ethereum", "solana"], 6),
    coin("USDT", "Tether", &["linea", "ethereum", "solana"], 6),
    coin("SOL", "Solana", &["solana"], 9),
    coin("XRP", "XRP", &["xrp"], 6),
    coin("BTC", "Bitcoin", &["bitcoin"], 8),
    coin("XLM", "Stellar Lumens", &["stellar"], 7),
];

/// Busha's list, the historic name (amount precision without a provider is Busha's).
pub const KNOWN_CURRENCIES: &[CurrencyInfo] = BUSHA;

/// The providers the catalogue knows.
pub const PROVIDERS: &[&str] = &["busha", "baanx"];

/// A provider's currencies (`None`: a provider the catalogue does not know).
pub fn listed(provider: &str) -> Option<&'static [CurrencyInfo]> {
    match provider {
        "busha" => Some(BUSHA),
        "baanx" => Some(BAANX),
        _ => None,
    }
}

/// `code` as `provider` lists it, or why not, in plain words.
pub fn lookup(provider: &str, code: &str) -> Result<&'static CurrencyInfo, String> {
    let Some(list) = listed(provider) else {
        return Err(format!(
            "provider {provider:?} is not in the currency catalogue (known: {})",
            PROVIDERS.join(", ")
        ));
    };
    list.iter().find(|c| c.code == code).ok_or_else(|| {
        let codes: Vec<&str> = list.iter().map(|c| c.code).collect();
        format!(
            "{code} is not a currency {provider} moves (its currencies: {})",
            codes.join(", ")
        )
    })
}

/// Whether `provider` can pay `target` from `source`, or why not, in plain words.
pub fn check_pair(provider: &str, source: &str, target: &str) -> Result<(), String> {
    if provider == "baanx" && source != target {
        return Err(format!(
            "Baanx has no currency exchange: a withdrawal sends what the wallet holds, so `source_currency` and `target_currency` must be the same (got {source} and {target})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_lists_its_own_currencies_and_pairs() {
        assert_eq!(lookup("busha", "NGN").unwrap().precision, 2);
        assert_eq!(lookup("baanx", "SOL").unwrap().precision, 9);
        let e = lookup("busha", "XYZ").unwrap_err();
        assert!(e.starts_with("XYZ is not a currency busha moves"), "{e}");
        assert!(lookup("baanx", "NGN").is_err());
        assert!(check_pair("busha", "NGN", "NGN").is_ok());
        assert!(check_pair("busha", "USDT", "NGN").is_ok());
        assert!(check_pair("baanx", "USDC", "USDC").is_ok());
        let e = check_pair("baanx", "USDC", "USDT").unwrap_err();
        assert!(e.contains("must be the same (got USDC and USDT)"), "{e}");
    }
}
