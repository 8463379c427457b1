//! `busha-sandbox`: the Busha emulator as a standalone server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use rust_decimal::Decimal;
use treasury::sandbox::{
    DuplicateTransfers, ExpiredQuoteTransfers, NewUser, OAuthClientConfig, RateLimits, Sandbox,
    SandboxConfig,
};

/// A faithful Busha sandbox: OAuth2/OIDC issuer, resource API and a control surface
/// under /_sandbox/ (see the README).
#[derive(Parser, Debug)]
#[command(name = "busha-sandbox", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// URL to advertise as issuer and API base (defaults to http://<listen>).
    #[arg(long)]
    public_url: Option<url::Url>,
    /// A TOML file of OAuth clients: [[client]] client_id, client_secret, redirect_uris, scopes.
    #[arg(long)]
    clients: Option<PathBuf>,
    /// Register one OAuth client with this id (with --client-secret and --redirect-uri).
    #[arg(long, requires_all = ["client_secret", "redirect_uri"])]
    client_id: Option<String>,
    /// Secret of --client-id.
    #[arg(long, env = "BUSHA_SANDBOX_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Redirect URI of --client-id (repeatable).
    #[arg(long)]
    redirect_uri: Vec<String>,
    /// Approved scopes of --client-id, space-separated (default: the whole catalogue).
    #[arg(long)]
    scopes: Option<String>,
    /// Approve every authorization at once for this sandbox user.
    #[arg(long, value_name = "USER")]
    auto_consent: Option<String>,
    /// Create a user: NAME or NAME:PASSWORD (repeatable).
    #[arg(long = "user", value_name = "NAME[:PASSWORD]")]
    users: Vec<String>,
    /// Opening balance: USER:CURRENCY=AMOUNT (repeatable).
    #[arg(long = "balance", value_name = "USER:CURRENCY=AMOUNT")]
    balances: Vec<String>,
    /// A bank account for name enquiry: BANK_CODE:ACCOUNT_NUMBER:ACCOUNT NAME (repeatable).
    #[arg(long = "bank-account")]
    bank_accounts: Vec<String>,
    /// Quote lifetime in seconds.
    #[arg(long, default_value_t = 1800)]
    quote_ttl_secs: i64,
    /// Seconds a transfer spends in each status.
    #[arg(long, default_value_t = 5)]
    transfer_step_secs: i64,
    /// Multiply Busha's documented rate limits (volume tests only).
    #[arg(long, default_value_t = 1)]
    rate_limit_scale: u32,
    /// A second transfer for the same quote.
    #[arg(long, value_enum, default_value = "refuse")]
    duplicate_transfers: DupArg,
    /// A transfer on an expired quote.
    #[arg(long, value_enum, default_value = "refuse")]
    expired_quotes: ExpiredArg,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DupArg {
    Refuse,
    Allow,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExpiredArg {
    Refuse,
    Reprice,
}

#[derive(serde::Deserialize)]
struct ClientsFile {
    client: Vec<OAuthClientConfig>,
}

/// What the flags ask for: the server's config, users to create and bank accounts.
struct Setup {
    config: SandboxConfig,
    users: Vec<NewUser>,
    /// (bank code, account number, account name)
    accounts: Vec<(String, String, String)>,
}

fn parse_args(args: &Args) -> Result<Setup, String> {
    let mut config = SandboxConfig {
        listen: args.listen,
        public_url: args.public_url.clone(),
        auto_consent: args.auto_consent.clone(),
        rate_limits: RateLimits::busha().scaled(args.rate_limit_scale),
        quote_ttl: chrono::Duration::seconds(args.quote_ttl_secs),
        transfer_step: chrono::Duration::seconds(args.transfer_step_secs),
        ..SandboxConfig::default()
    };
    config.behaviour.duplicate_transfers = match args.duplicate_transfers {
        DupArg::Refuse => DuplicateTransfers::Refuse,
        DupArg::Allow => DuplicateTransfers::Allow,
    };
    config.behaviour.expired_quote_transfers = match args.expired_quotes {
        ExpiredArg::Refuse => ExpiredQuoteTransfers::Refuse,
        ExpiredArg::Reprice => ExpiredQuoteTransfers::Reprice,
    };
    if let Some(path) = &args.clients {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: ClientsFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config.clients.extend(file.client);
    }
    if let (Some(id), Some(secret)) = (&args.client_id, &args.client_secret) {
        let mut client = OAuthClientConfig::new(id, secret, &args.redirect_uri[0]);
        client.redirect_uris = args.redirect_uri.clone();
        if let Some(scopes) = &args.scopes {
            client.scopes = scopes.split_whitespace().map(str::to_string).collect();
        }
        config.clients.push(client);
    }
    let mut users: Vec<NewUser> = args
        .users
        .iter()
        .map(|u| match u.split_once(':') {
            Some((name, password)) => NewUser::new(name).password(password),
            None => NewUser::new(u),
        })
        .collect();
    for b in &args.balances {
        let bad = || format!("--balance {b}: expected USER:CURRENCY=AMOUNT");
        let (user, rest) = b.split_once(':').ok_or_else(bad)?;
        let (currency, amount) = rest.split_once('=').ok_or_else(bad)?;
        let amount: Decimal = amount.parse().map_err(|_| bad())?;
        let entry = users
            .iter_mut()
            .find(|u| u.name == user)
            .ok_or_else(|| format!("--balance {b}: no --user {user}"))?;
        entry.balances.insert(currency.to_ascii_uppercase(), amount);
    }
    let accounts = args
        .bank_accounts
        .iter()
        .map(|a| {
            let mut parts = a.splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(code), Some(number), Some(name)) => {
                    Ok((code.into(), number.into(), name.into()))
                }
                _ => Err(format!(
                    "--bank-account {a}: expected BANK_CODE:ACCOUNT_NUMBER:ACCOUNT NAME"
                )),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Setup {
        config,
        users,
        accounts,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let Setup {
        config,
        users,
        accounts,
    } = match parse_args(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("busha-sandbox: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let sandbox = match Sandbox::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("busha-sandbox: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::from(1);
        }
    };
    for user in users {
        let created = sandbox.create_user(user);
        println!("user {} id={}", created.name, created.id);
    }
    for (code, number, name) in accounts {
        sandbox.add_bank_account(&code, &number, &name);
    }
    println!("busha-sandbox listening on {}", sandbox.url());
    let _ = tokio::signal::ctrl_c().await;
    sandbox.shutdown().await;
    std::process::ExitCode::SUCCESS
}
