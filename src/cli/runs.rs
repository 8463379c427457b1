//! `treasury runs list|show|approve|reject|cancel|retry|summary`.
//!
//! Every command that changes a run does so in one store transaction with its audit
//! entry, under the run's row lock, and takes the lease from any executor (see
//! `store::guards`). Account numbers are masked in all output.

use std::io::{IsTerminal, Write};

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use crate::audit::AuditEntry;
use crate::clock::Clock;
use crate::guards::{ApprovalPreview, Operator, summarise_batch};
use crate::operators::Role;
use crate::runs::{Amount, Run, RunId, RunState, mask_account};
use crate::store::{RunFilter, Store};

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Runs, newest first.
    List {
        #[arg(long)]
        job: Option<String>,
        /// created, awaiting_approval, recipient_resolved, quote_locked,
        /// transfer_submitted, settled, failed, cancelled or needs_human.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 200)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One run and its timeline from the audit log.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve a run awaiting approval, or every run of one batch occurrence.
    Approve(ApproveArgs),
    /// Reject a run awaiting approval: it is cancelled and moves no money.
    Reject {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Cancel a run while no money has moved.
    Cancel { id: String },
    /// Start a failed or needs-human run again, with a new quote.
    Retry { id: String },
    /// How one occurrence went: how many runs settled, which failed and why.
    Summary {
        job: String,
        /// The occurrence key, or its prefix shared by a batch's runs (the nominal
        /// fire time).
        occurrence: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("which").args(["id", "occurrence"]).required(true).multiple(false)))]
pub struct ApproveArgs {
    /// The run to approve.
    pub id: Option<String>,
    /// `<job>:<occurrence prefix>`: every run of one batch occurrence awaiting
    /// approval, after a summary (count, total, payees new to the job).
    #[arg(long, value_name = "JOB:OCCURRENCE")]
    pub occurrence: Option<String>,
    /// Approve the occurrence without asking.
    #[arg(long)]
    pub yes: bool,
}

fn io(e: std::io::Error) -> CliError {
    CliError(format!("cannot write output: {e}"))
}

fn run_id(s: &str) -> Result<RunId, CliError> {
    RunId::parse(s.trim()).ok_or_else(|| {
        CliError(format!(
            "{s:?} is not a run id (run_ and 24 hex digits, as `treasury runs list` prints)"
        ))
    })
}

/// The authenticated operator a state-changing command runs as (see `cli::needs`).
fn acting(who: Option<&Operator>) -> Result<&Operator, CliError> {
    who.ok_or_else(|| CliError("this command needs an authenticated operator".into()))
}

/// The role each `runs` subcommand needs, if it changes anything.
pub fn needs(cmd: &RunsCommand) -> Option<Role> {
    match cmd {
        RunsCommand::Approve(_) | RunsCommand::Reject { .. } => Some(Role::Approver),
        RunsCommand::Cancel { .. } | RunsCommand::Retry { .. } => Some(Role::Operator),
        RunsCommand::List { .. } | RunsCommand::Show { .. } | RunsCommand::Summary { .. } => None,
    }
}

/// Runs one `runs` subcommand.
pub async fn command(
    store: &Store,
    clock: &Clock,
    cmd: RunsCommand,
    who: Option<&Operator>,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match cmd {
        RunsCommand::List {
            job,
            state,
            limit,
            json,
        } => {
            let state = state
                .map(|s| s.parse::<RunState>())
                .transpose()
                .map_err(CliError)?;
            let runs = store
                .list_runs(&RunFilter {
                    job_id: job,
                    state,
                    limit: Some(limit),
                })
                .await
                .map_err(CliError::from)?;
            if json {
                let items: Vec<Value> = runs.iter().map(run_json).collect();
                return writeln!(out, "{}", Value::Array(items)).map_err(io);
            }
            write_list(out, &runs).map_err(io)
        }
        RunsCommand::Show { id, json } => show(store, &run_id(&id)?, json, out).await,
        RunsCommand::Approve(args) => approve(store, clock, args, acting(who)?, out).await,
        RunsCommand::Reject { id, reason } => {
            let (id, who) = (run_id(&id)?, acting(who)?);
            let note = reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
            store
                .reject_run(&id, who, note, clock.now())
                .await
                .map_err(CliError::from)?
                .map_err(CliError)?;
            writeln!(out, "rejected {id}: it is cancelled and moves no money").map_err(io)
        }
        RunsCommand::Cancel { id } => {
            let (id, who) = (run_id(&id)?, acting(who)?);
            let from = store
                .cancel_run(&id, who, clock.now())
                .await
                .map_err(CliError::from)?
                .map_err(CliError)?;
            writeln!(out, "cancelled {id} (it was {from}); no money moved").map_err(io)
        }
        RunsCommand::Retry { id } => {
            let (id, who) = (run_id(&id)?, acting(who)?);
            let to = store
                .retry_run(&id, who, clock.now())
                .await
                .map_err(CliError::from)?
                .map_err(CliError)?;
            writeln!(
                out,
                "retrying {id} from {to}: it re-quotes with a new reference when the worker picks it up"
            )
            .map_err(io)
        }
        RunsCommand::Summary {
            job,
            occurrence,
            json,
        } => {
            let runs = store
                .runs_of_occurrence(&job, &occurrence)
                .await
                .map_err(CliError::from)?;
            if runs.is_empty() {
                return Err(CliError(format!(
                    "job {job} has no runs for occurrence {occurrence:?}"
                )));
            }
            let s = summarise_batch(&job, &occurrence, &runs);
            if json {
                let v = serde_json::to_value(&s).map_err(CliError::from)?;
                return writeln!(out, "{v}").map_err(io);
            }
            writeln!(
                out,
                "{job} {occurrence}: {} of {} runs settled{}",
                s.settled,
                s.runs,
                if s.settled_total.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", s.settled_total.join(", "))
                }
            )
            .map_err(io)?;
            let states: Vec<String> = s
                .by_state
                .iter()
                .map(|(st, n)| format!("{st}: {n}"))
                .collect();
            writeln!(out, "states: {}", states.join(", ")).map_err(io)?;
            if s.failed.is_empty() {
                writeln!(out, "no run failed").map_err(io)?;
            } else {
                writeln!(out, "failed:").map_err(io)?;
                for f in &s.failed {
                    writeln!(
                        out,
                        "  {} {} [{}] {}",
                        f.id,
                        f.payee,
                        f.state,
                        f.reason.as_deref().unwrap_or("(no reason recorded)")
                    )
                    .map_err(io)?;
                }
            }
            Ok(())
        }
    }
}

async fn approve(
    store: &Store,
    clock: &Clock,
    args: ApproveArgs,
    who: &Operator,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    if let Some(id) = &args.id {
        let id = run_id(id)?;
        let a = store
            .approve_run(&id, who, clock.now())
            .await
            .map_err(CliError::from)?
            .map_err(CliError)?;
        return if a.released {
            writeln!(
                out,
                "approved {id} by {}: it is due now",
                a.approvers.join(" and ")
            )
            .map_err(io)
        } else {
            writeln!(
                out,
                "recorded {who}'s approval of {id} ({} of {} distinct approvers); it waits for more",
                a.approvers.len(),
                a.needed
            )
            .map_err(io)
        };
    }
    let spec = args.occurrence.as_deref().unwrap_or_default();
    let Some((job, prefix)) = spec
        .split_once(':')
        .filter(|(j, p)| !j.is_empty() && !p.is_empty())
    else {
        return Err(CliError(format!(
            "--occurrence wants <job>:<occurrence prefix>, got {spec:?}"
        )));
    };
    let preview = crate::guards::batch::preview_occurrence(store, job, prefix)
        .await
        .map_err(CliError::from)?
        .ok_or_else(|| CliError(format!("job {job} has no runs for occurrence {prefix:?}")))?;
    write_preview(out, &preview).map_err(io)?;
    if preview.awaiting.is_empty() {
        return Err(CliError(
            "no run of this occurrence awaits approval; nothing was approved".into(),
        ));
    }
    if !args.yes && !confirm(preview.awaiting.len()).await? {
        return Err(CliError(
            "not confirmed: nothing was approved (pass --yes to approve without a prompt)".into(),
        ));
    }
    // Exactly the runs shown: a run added meanwhile is not approved unseen.
    let shown: Vec<String> = preview.awaiting.iter().map(|r| r.id.clone()).collect();
    let done = crate::guards::batch::approve_shown(store, &shown, who, clock.now())
        .await
        .map_err(CliError::from)?;
    let (released, recorded, refused) = (done.released, done.recorded, done.refused);
    writeln!(
        out,
        "approved as {who}: {released} run(s) now due, {recorded} waiting for more approvers, {} refused",
        refused.len()
    )
    .map_err(io)?;
    for why in &refused {
        writeln!(out, "  refused: {why}").map_err(io)?;
    }
    if refused.len() == preview.awaiting.len() {
        return Err(CliError("no run was approved".into()));
    }
    Ok(())
}

/// Asks on the terminal; without one, the answer is no (use `--yes`).
async fn confirm(n: usize) -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    tokio::task::spawn_blocking(move || {
        eprint!("approve these {n} run(s)? [y/N] ");
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map(|_| matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
    })
    .await
    .map_err(|e| CliError(format!("cannot read the answer: {e}")))?
    .map_err(|e| CliError(format!("cannot read the answer: {e}")))
}

fn write_preview(out: &mut (dyn Write + Send), p: &ApprovalPreview) -> std::io::Result<()> {
    writeln!(
        out,
        "occurrence {} of job {}: {} run(s) awaiting approval, {} other run(s) left alone",
        p.occurrence,
        p.job_id,
        p.awaiting.len(),
        p.others
    )?;
    writeln!(
        out,
        "total: {}",
        if p.total.is_empty() {
            "-".to_string()
        } else {
            p.total.join(", ")
        }
    )?;
    if p.new_payees.is_empty() {
        writeln!(
            out,
            "new payees: none (every payee was paid by an earlier run of the job)"
        )?;
    } else {
        writeln!(out, "new payees ({}):", p.new_payees.len())?;
        for payee in &p.new_payees {
            writeln!(out, "  NEW {payee}")?;
        }
    }
    for r in &p.awaiting {
        writeln!(out, "  {} {:<40} {}", r.id, r.payee, r.amount)?;
    }
    Ok(())
}

// ------------------------------------------------------------------ list, show

fn amount_text(run: &Run) -> String {
    match &run.spec.amount {
        Amount::Source { amount } => format!("{amount} {}", run.spec.source_currency),
        Amount::Target { amount } => format!(
            "{amount} {} from {}",
            run.spec.target_currency, run.spec.source_currency
        ),
    }
}

fn write_list(out: &mut (dyn Write + Send), runs: &[Run]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<28} {:<20} {:<28} {:<18} {:<24} {:<10} {:<24} REASON",
        "ID", "JOB", "OCCURRENCE", "STATE", "AMOUNT", "RATE", "TRANSFER"
    )?;
    for r in runs {
        writeln!(
            out,
            "{:<28} {:<20} {:<28} {:<18} {:<24} {:<10} {:<24} {}",
            r.id,
            r.job_id,
            r.occurrence_key,
            r.state,
            amount_text(r),
            r.quote.as_ref().map_or("-".into(), |q| q.rate.to_string()),
            r.transfer_id.as_deref().unwrap_or("-"),
            r.reason.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// Masks account numbers anywhere in a JSON value (keys `account_number` and
/// `account`), leaving names and ids alone.
pub fn mask_json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                match val {
                    Value::String(s) if k == "account_number" || k == "account" => {
                        *s = mask_account(s);
                    }
                    other => mask_json(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_json),
        _ => {}
    }
}

fn run_json(run: &Run) -> Value {
    let mut v = serde_json::to_value(run).unwrap_or(Value::Null);
    mask_json(&mut v);
    v["payee"] = Value::String(crate::runs::payee_shown(run));
    v
}

/// The fields of an audit payload worth a timeline line: ids, rate, fees, amounts,
/// status and reason.
const TIMELINE_KEYS: [&str; 23] = [
    "recipient_id",
    "holder_name",
    "quote_id",
    "transfer_id",
    "reference",
    "request_id",
    "rate",
    "fees",
    "source_amount",
    "source_currency",
    "target_amount",
    "target_currency",
    "amount",
    "currency",
    "status",
    "how",
    "approver",
    "operator",
    "from",
    "to",
    "account",
    "reason",
    "until",
];

fn timeline_json(e: &AuditEntry) -> Value {
    let mut payload = e.payload.clone();
    mask_json(&mut payload);
    json!({ "seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action, "details": payload })
}

fn timeline_line(e: &AuditEntry) -> String {
    let mut payload = e.payload.clone();
    mask_json(&mut payload);
    let mut parts = Vec::new();
    if let Value::Object(map) = &payload {
        for key in TIMELINE_KEYS {
            match map.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => parts.push(format!("{key}={s}")),
                Some(other) => parts.push(format!("{key}={other}")),
            }
        }
    }
    format!(
        "#{:<6} {}  {:<22} {:<26} {}",
        e.seq,
        e.at.format("%Y-%m-%d %H:%M:%S%.3fZ"),
        e.actor,
        e.action,
        parts.join(" ")
    )
}

async fn show(
    store: &Store,
    id: &RunId,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let run = store
        .get_run(id)
        .await
        .map_err(CliError::from)?
        .ok_or_else(|| CliError(format!("no run {id}")))?;
    let timeline = store
        .audit_entries(None, Some(id.as_str()))
        .await
        .map_err(CliError::from)?;
    let approvals = store.run_approvals(id).await.map_err(CliError::from)?;
    let reservation = store.cap_reservation(id).await.map_err(CliError::from)?;
    if json {
        let v = json!({
            "run": run_json(&run),
            "approvals": approvals,
            "reservation": reservation,
            "timeline": timeline.iter().map(timeline_json).collect::<Vec<_>>(),
        });
        return writeln!(out, "{v}").map_err(io);
    }
    let w = |out: &mut (dyn Write + Send)| -> std::io::Result<()> {
        writeln!(out, "run {}", run.id)?;
        writeln!(
            out,
            "  job:         {} (version {})",
            run.job_id, run.job_version
        )?;
        writeln!(out, "  occurrence:  {}", run.occurrence_key)?;
        writeln!(out, "  state:       {}", run.state)?;
        if let Some(r) = &run.reason {
            writeln!(out, "  reason:      {r}")?;
        }
        writeln!(out, "  grant:       {}", run.spec.grant)?;
        writeln!(out, "  amount:      {}", amount_text(&run))?;
        writeln!(out, "  payee:       {}", crate::runs::payee_shown(&run))?;
        writeln!(
            out,
            "  recipient:   {}",
            run.recipient_id.as_deref().unwrap_or("-")
        )?;
        match &run.quote {
            Some(q) => writeln!(
                out,
                "  quote:       {} ref {} rate {} source {} {} target {} {} fees {} {} expires {}",
                q.id,
                q.reference,
                q.rate,
                q.source_amount,
                run.spec.source_currency,
                q.target_amount,
                run.spec.target_currency,
                q.fees,
                run.spec.source_currency,
                q.expires_at.to_rfc3339()
            )?,
            None => writeln!(
                out,
                "  quote:       - (attempts so far: {})",
                run.quote_attempt
            )?,
        }
        writeln!(
            out,
            "  transfer:    {} {}",
            run.transfer_id.as_deref().unwrap_or("-"),
            run.transfer_status.as_deref().unwrap_or("")
        )?;
        if !approvals.is_empty() {
            let list: Vec<String> = approvals
                .iter()
                .map(|a| format!("{} at {}", a.approver, a.approved_at.to_rfc3339()))
                .collect();
            writeln!(out, "  approvals:   {}", list.join(", "))?;
        }
        if let Some(r) = &reservation {
            writeln!(
                out,
                "  reserved:    {} {}{} at {}{}",
                r.amount,
                r.currency,
                if r.estimated { " (estimate)" } else { "" },
                r.reserved_at.to_rfc3339(),
                r.released_at
                    .map(|t| format!(", released at {}", t.to_rfc3339()))
                    .unwrap_or_default()
            )?;
        }
        writeln!(out, "  created:     {}", run.created_at.to_rfc3339())?;
        writeln!(out, "  updated:     {}", run.updated_at.to_rfc3339())?;
        writeln!(out, "timeline ({} audit entries):", timeline.len())?;
        for e in &timeline {
            writeln!(out, "  {}", timeline_line(e))?;
        }
        Ok(())
    };
    w(out).map_err(io)
}
