//! `baanx-sandbox`: the Baanx emulator as a standalone server.
//!
//! The tenant's secret key comes from `BAANX_SANDBOX_SECRET_KEY` only, never from
//! argv (where `ps` would show it).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use rust_decimal::Decimal;
use treasury::sandbox::RateLimits;
use treasury::sandbox::baanx::{
    BaanxBehaviour, BaanxClient, BaanxConfig, BaanxSandbox, Custody, NewBaanxUser, NewWallet,
    NewWhitelistEntry, RefreshLifetime, RefreshRotation, Region, SecretKeyRule,
};

/// A faithful Baanx sandbox: OAuth (hosted UI and API mode), wallets, whitelist,
/// withdrawals, consent v2, and a control surface under /_sandbox/ (see the README).
/// The secret key of --client-key is read from BAANX_SANDBOX_SECRET_KEY.
#[derive(Parser, Debug)]
#[command(name = "baanx-sandbox", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// URL to advertise as API and hosted-UI base (defaults to http://<listen>).
    #[arg(long)]
    public_url: Option<url::Url>,
    /// A TOML file of tenants: [[client]] client_key, secret_key, redirect_uris, custody, region.
    #[arg(long)]
    clients: Option<PathBuf>,
    /// Register one tenant with this client key (its secret from BAANX_SANDBOX_SECRET_KEY).
    #[arg(long, requires = "redirect_uri")]
    client_key: Option<String>,
    /// Redirect URI of --client-key (repeatable).
    #[arg(long)]
    redirect_uri: Vec<String>,
    /// Custody model of --client-key.
    #[arg(long, value_enum, default_value = "custodial")]
    custody: CustodyArg,
    /// Serve --client-key in one region only (default: both).
    #[arg(long, value_enum)]
    client_region: Option<RegionArg>,
    /// Approve every hosted-UI authorization at once for this user's email.
    #[arg(long, value_name = "EMAIL")]
    auto_consent: Option<String>,
    /// Create an international user: EMAIL:PASSWORD[:OTP], OTP a fixed SMS code (repeatable).
    #[arg(long = "user", value_name = "EMAIL:PASSWORD[:OTP]")]
    users: Vec<String>,
    /// Create a US-region user: EMAIL:PASSWORD[:OTP] (repeatable).
    #[arg(long = "us-user", value_name = "EMAIL:PASSWORD[:OTP]")]
    us_users: Vec<String>,
    /// An internal wallet with its balance: EMAIL:NETWORK/CURRENCY=AMOUNT (repeatable).
    #[arg(long = "wallet", value_name = "EMAIL:NETWORK/CURRENCY=AMOUNT")]
    wallets: Vec<String>,
    /// An approved whitelist entry: EMAIL:CURRENCY:ADDRESS:NAME (repeatable).
    #[arg(long = "whitelist", value_name = "EMAIL:CURRENCY:ADDRESS:NAME")]
    whitelist: Vec<String>,
    /// Refresh-token rotation.
    #[arg(long, value_enum, default_value = "rotate")]
    refresh_rotation: RotationArg,
    /// Refresh-token lifetime: sliding (each rotation restarts it) or absolute.
    #[arg(long, value_enum, default_value = "sliding")]
    refresh_lifetime: LifetimeArg,
    /// Refresh-token lifetime in seconds (604800 = 7 days; Baanx's reference says 15897600).
    #[arg(long, default_value_t = 604_800)]
    refresh_ttl_secs: i64,
    /// Require x-secret-key on the token endpoint (default: a missing one is accepted).
    #[arg(long)]
    require_secret_key: bool,
    /// New whitelist entries stay pending (unlisted, unpayable) this many seconds.
    #[arg(long, default_value_t = 0)]
    whitelist_approval_secs: i64,
    /// Seconds before a withdrawal shows in the wallet history.
    #[arg(long, default_value_t = 10)]
    settle_secs: i64,
    /// Multiply the sandbox's rate limits (volume tests only).
    #[arg(long, default_value_t = 1)]
    rate_limit_scale: u32,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum CustodyArg {
    Custodial,
    NonCustodial,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum RegionArg {
    International,
    Us,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum RotationArg {
    Rotate,
    NonRotating,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LifetimeArg {
    Sliding,
    Absolute,
}

#[derive(serde::Deserialize)]
struct ClientsFile {
    client: Vec<BaanxClient>,
}

/// What the flags ask for: the server's config and the world to seed.
struct Setup {
    config: BaanxConfig,
    users: Vec<NewBaanxUser>,
    /// (email, wallet)
    wallets: Vec<(String, NewWallet)>,
    /// (email, entry)
    whitelist: Vec<(String, NewWhitelistEntry)>,
}

fn parse_user(spec: &str, region: Region) -> Result<NewBaanxUser, String> {
    let mut parts = spec.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(email), Some(password), otp) if !email.is_empty() && !password.is_empty() => {
            let user = NewBaanxUser::new(email, password).region(region);
            Ok(match otp {
                Some(code) => user.otp(code),
                None => user,
            })
        }
        _ => Err(format!("--user {spec}: expected EMAIL:PASSWORD[:OTP]")),
    }
}

fn parse_wallet(spec: &str) -> Result<(String, NewWallet), String> {
    let bad = || format!("--wallet {spec}: expected EMAIL:NETWORK/CURRENCY=AMOUNT");
    let (email, rest) = spec.split_once(':').ok_or_else(bad)?;
    let (pair, amount) = rest.split_once('=').ok_or_else(bad)?;
    let (network, currency) = pair.split_once('/').ok_or_else(bad)?;
    let balance: Decimal = amount.parse().map_err(|_| bad())?;
    let wallet = NewWallet {
        network: network.to_ascii_lowercase(),
        currency: currency.to_ascii_lowercase(),
        balance,
    };
    Ok((email.to_string(), wallet))
}

fn parse_whitelist(spec: &str) -> Result<(String, NewWhitelistEntry), String> {
    let mut parts = spec.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(email), Some(currency), Some(address), Some(name)) => Ok((
            email.to_string(),
            NewWhitelistEntry {
                currency: currency.to_ascii_lowercase(),
                name: name.to_string(),
                address: address.to_string(),
                memo: None,
            },
        )),
        _ => Err(format!(
            "--whitelist {spec}: expected EMAIL:CURRENCY:ADDRESS:NAME"
        )),
    }
}

fn behaviour(args: &Args) -> BaanxBehaviour {
    BaanxBehaviour {
        refresh_rotation: match args.refresh_rotation {
            RotationArg::Rotate => RefreshRotation::Rotate,
            RotationArg::NonRotating => RefreshRotation::NonRotating,
        },
        refresh_lifetime: match args.refresh_lifetime {
            LifetimeArg::Sliding => RefreshLifetime::Sliding,
            LifetimeArg::Absolute => RefreshLifetime::Absolute,
        },
        refresh_token_secs: args.refresh_ttl_secs,
        secret_key: if args.require_secret_key {
            SecretKeyRule::Required
        } else {
            SecretKeyRule::Optional
        },
        whitelist_approval_secs: args.whitelist_approval_secs,
        withdraw_settle_secs: args.settle_secs,
        ..BaanxBehaviour::default()
    }
}

fn tenant(args: &Args, key: &str) -> Result<BaanxClient, String> {
    let secret = std::env::var("BAANX_SANDBOX_SECRET_KEY").map_err(|_| {
        format!("--client-key {key}: set its secret key in BAANX_SANDBOX_SECRET_KEY")
    })?;
    let mut client = BaanxClient::new(key, &secret, &args.redirect_uri[0]);
    client.redirect_uris = args.redirect_uri.clone();
    client.custody = match args.custody {
        CustodyArg::Custodial => Custody::Custodial,
        CustodyArg::NonCustodial => Custody::NonCustodial,
    };
    client.region = args.client_region.map(|r| match r {
        RegionArg::International => Region::International,
        RegionArg::Us => Region::Us,
    });
    Ok(client)
}

fn parse_args(args: &Args) -> Result<Setup, String> {
    let mut config = BaanxConfig {
        listen: args.listen,
        public_url: args.public_url.clone(),
        auto_consent: args.auto_consent.clone(),
        behaviour: behaviour(args),
        rate_limits: RateLimits::baanx().scaled(args.rate_limit_scale),
        ..BaanxConfig::default()
    };
    if let Some(path) = &args.clients {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: ClientsFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config.clients.extend(file.client);
    }
    if let Some(key) = &args.client_key {
        config.clients.push(tenant(args, key)?);
    }
    let mut users = Vec::new();
    for spec in &args.users {
        users.push(parse_user(spec, Region::International)?);
    }
    for spec in &args.us_users {
        users.push(parse_user(spec, Region::Us)?);
    }
    let wallets = args
        .wallets
        .iter()
        .map(|w| parse_wallet(w))
        .collect::<Result<_, _>>()?;
    let whitelist = args
        .whitelist
        .iter()
        .map(|w| parse_whitelist(w))
        .collect::<Result<_, _>>()?;
    Ok(Setup {
        config,
        users,
        wallets,
        whitelist,
    })
}

/// Creates the flags' users, wallets and whitelist entries.
fn seed(sandbox: &BaanxSandbox, setup: Setup) -> Result<(), String> {
    for user in setup.users {
        let created = sandbox.create_user(user);
        println!("user {} id={}", created.email, created.id);
    }
    let id_of = |email: &str, flag: &str| {
        sandbox
            .user_id(email)
            .ok_or_else(|| format!("{flag}: no --user {email}"))
    };
    for (email, wallet) in setup.wallets {
        let id = id_of(&email, "--wallet")?;
        let pair = format!("{}/{}", wallet.network, wallet.currency);
        let info = sandbox
            .set_wallet(&id, wallet)
            .ok_or_else(|| format!("--wallet {email}:{pair}: unsupported network/currency"))?;
        println!("wallet {email} {pair} address={}", info.address);
    }
    for (email, entry) in setup.whitelist {
        let id = id_of(&email, "--whitelist")?;
        sandbox.add_whitelist(&id, entry);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let setup = match parse_args(&args) {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("baanx-sandbox: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let sandbox = match BaanxSandbox::start(setup.config.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("baanx-sandbox: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::from(1);
        }
    };
    if let Err(e) = seed(&sandbox, setup) {
        eprintln!("baanx-sandbox: {e}");
        sandbox.shutdown().await;
        return std::process::ExitCode::from(2);
    }
    println!("baanx-sandbox listening on {}", sandbox.url());
    let _ = tokio::signal::ctrl_c().await;
    sandbox.shutdown().await;
    std::process::ExitCode::SUCCESS
}
