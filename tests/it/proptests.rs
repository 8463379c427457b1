//! Property tests of the parsers that read outside input, through their public entry
//! points: job files, amounts, trigger headers and signatures, the Busha webhook
//! signature, and the Busha and Baanx answer types. No input panics; amounts
//! round-trip exactly; a valid job file stays the same job under formatting noise.
//! Case counts are bounded so the file runs in a few seconds.

use proptest::prelude::*;
use rust_decimal::Decimal;
use treasury::jobs::parse::parse_job;
use treasury::money::{Currency, Money, parse_amount};
use treasury::triggers::{check_event_id, sign_trigger, verify_trigger};

const CASES: u32 = 64;

const JOB: &str = include_str!("../../jobs/salaries-monthly.toml");

/// A job file as sections (the root, then each table), each a header and key lines,
/// without comments or blank lines.
fn sections(text: &str) -> Vec<(Option<String>, Vec<String>)> {
    let mut out: Vec<(Option<String>, Vec<String>)> = vec![(None, Vec::new())];
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            out.push((Some(line.to_string()), Vec::new()));
        } else if let Some(last) = out.last_mut() {
            last.1.push(line.to_string());
        }
    }
    out
}

/// Formatting noise for one key line: spacing around `=`, a trailing comment, and
/// comment or blank lines before it.
fn noisy_line(line: &str, noise: (u8, u8, bool, bool)) -> String {
    let (pre, post, trailing, comment_before) = noise;
    let (key, value) = line.split_once('=').expect("a key line");
    let mut s = String::new();
    if comment_before {
        s.push_str("# a comment = with [brackets] and \"quotes\"\n\n");
    }
    s.push_str(key.trim());
    s.push_str(&" ".repeat(usize::from(pre % 4)));
    s.push('=');
    s.push_str(&"\t ".repeat(usize::from(post % 3)));
    s.push_str(value.trim());
    if trailing {
        s.push_str("   # trailing");
    }
    s.push('\n');
    s
}

type Noise = (u8, u8, bool, bool);

fn noise() -> impl Strategy<Value = Vec<Noise>> {
    prop::collection::vec(any::<Noise>(), 64)
}

/// Rebuilds the file with the key lines of every section in `orders`' order.
fn rebuild(
    secs: &[(Option<String>, Vec<String>)],
    orders: &[Vec<usize>],
    noise: &[Noise],
) -> String {
    let mut out = String::from("  # leading comment\n\n");
    let mut n = 0;
    for ((header, lines), order) in secs.iter().zip(orders) {
        if let Some(h) = header {
            out.push_str(&format!("\n  {h}   # section\n"));
        }
        for &i in order {
            out.push_str(&noisy_line(&lines[i], noise[n % noise.len()]));
            n += 1;
        }
    }
    out
}

fn orders() -> impl Strategy<Value = Vec<Vec<usize>>> {
    let secs = sections(JOB);
    secs.iter()
        .map(|(_, lines)| Just((0..lines.len()).collect::<Vec<_>>()).prop_shuffle())
        .collect::<Vec<_>>()
}

fn plain_amount() -> impl Strategy<Value = String> {
    "[0-9]{1,12}(\\.[0-9]{1,8})?"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn a_job_file_of_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_job("jobs/x.toml", &bytes, None);
    }

    #[test]
    fn a_job_file_of_any_toml_like_text_never_panics(text in "([a-z_]{1,8} *= *(\"[0-9.a-z]{0,6}\"|[0-9]{1,4}|true|\\[\\]) *\n|\\[\\[?[a-z]{1,7}\\]\\]?\n|#.*\n){0,24}") {
        let _ = parse_job("jobs/x.toml", text.as_bytes(), None);
    }

    #[test]
    fn a_valid_job_file_is_the_same_job_after_comments_whitespace_and_key_order(
        orders in orders(),
        noise in noise(),
    ) {
        let original = parse_job("jobs/s.toml", JOB.as_bytes(), None).expect("the example is valid");
        let noisy = rebuild(&sections(JOB), &orders, &noise);
        let reparsed = parse_job("jobs/s.toml", noisy.as_bytes(), None)
            .unwrap_or_else(|e| panic!("{e:?}\n{noisy}"));
        prop_assert_eq!(format!("{:?}", original.spec()), format!("{:?}", reparsed.spec()));
    }

    #[test]
    fn amounts_round_trip_exactly(text in plain_amount()) {
        let parsed = parse_amount(&text).expect("a plain decimal");
        let printed = parsed.to_string();
        let again = parse_amount(&printed).expect("what we print parses");
        prop_assert_eq!(parsed, again);
        prop_assert_eq!(&again.to_string(), &printed);
        // The value is the text's, digit for digit.
        let want = text.trim_start_matches('0');
        let want = if want.is_empty() || want.starts_with('.') { format!("0{want}") } else { want.to_string() };
        prop_assert_eq!(printed, want);
    }

    #[test]
    fn money_round_trips_through_its_display(units in 1u64..10_000_000_000, cents in 0u32..100) {
        let text = format!("{units}.{cents:02}");
        let ngn = Currency::new("NGN").unwrap();
        let m = Money::parse(&text, ngn.clone()).unwrap();
        let shown = m.to_string();
        let (amount, code) = shown.split_once(' ').unwrap();
        prop_assert_eq!(code, "NGN");
        prop_assert_eq!(&Money::parse(amount, ngn).unwrap(), &m);
        prop_assert_eq!(m.amount(), text.parse::<Decimal>().unwrap());
    }

    #[test]
    fn an_amount_of_any_text_never_panics(text in "\\PC{0,40}") {
        let _ = parse_amount(&text);
        let _ = Money::parse(&text, Currency::new("USDT").unwrap());
        let _ = Currency::new(&text);
    }

    #[test]
    fn trigger_headers_of_any_text_never_panic_and_never_pass_unsigned(
        ts in "\\PC{0,24}", id in "\\PC{0,80}", sig in "\\PC{0,80}",
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = check_event_id(&id);
        let now = chrono::Utc::now();
        let verdict = verify_trigger(b"k".repeat(32).as_slice(), Some(&ts), Some(&id), Some(&sig), &body, now);
        prop_assert!(verdict.is_err());
    }

    #[test]
    fn a_signed_trigger_verifies_for_any_body_and_event_id(
        id in "[!-~]{1,64}", body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let now = chrono::Utc::now();
        let ts = now.timestamp().to_string();
        let secret = b"s".repeat(32);
        let sig = sign_trigger(&secret, &ts, &id, &body);
        prop_assert!(check_event_id(&id).is_ok());
        prop_assert!(verify_trigger(&secret, Some(&ts), Some(&id), Some(&sig), &body, now).is_ok());
        let mut tampered = body.clone();
        tampered.push(b'x');
        prop_assert!(verify_trigger(&secret, Some(&ts), Some(&id), Some(&sig), &tampered, now).is_err());
    }

    #[test]
    fn webhook_signatures_of_any_text_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..256), header in proptest::option::of("\\PC{0,100}"),
    ) {
        let _ = treasury::http::ops::busha_signature_ok(b"w".repeat(32).as_slice(), &body, header.as_deref());
    }

    #[test]
    fn provider_answers_of_any_json_never_panic(json in json_value()) {
        let text = json.to_string();
        decode_all(text.as_bytes());
    }

    #[test]
    fn provider_answers_of_any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&bytes);
    }
}

/// Every answer type the Busha and Baanx clients decode.
fn decode_all(bytes: &[u8]) {
    use treasury::provider::{baanx, busha};
    let _ = serde_json::from_slice::<busha::Quote>(bytes);
    let _ = serde_json::from_slice::<busha::Transfer>(bytes);
    let _ = serde_json::from_slice::<busha::Balance>(bytes);
    let _ = serde_json::from_slice::<busha::ResolvedBankAccount>(bytes);
    let _ = serde_json::from_slice::<busha::RecipientDetails>(bytes);
    let _ = serde_json::from_slice::<baanx::InternalWallet>(bytes);
    let _ = serde_json::from_slice::<baanx::WhitelistEntry>(bytes);
    let _ = serde_json::from_slice::<baanx::ChainWithdrawal>(bytes);
    let _ = serde_json::from_slice::<baanx::HistoryItem>(bytes);
    let _ = serde_json::from_slice::<baanx::UserProfile>(bytes);
}

/// JSON shaped like provider answers: objects with their field names and odd values.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop::sample::select(vec![
        "id",
        "amount",
        "currency",
        "status",
        "rate",
        "created_at",
        "expires_at",
        "quote_id",
        "source_amount",
        "target_amount",
        "fees",
        "pay_in",
        "pay_out",
        "type",
        "data",
        "address",
        "balance",
        "network",
        "timeline",
        "events",
        "name",
        "bank_code",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
        plain_amount().prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("2026-03-02T09:00:00Z")),
    ];
    leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..8).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}
