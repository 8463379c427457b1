//! SQL for the guards: halts, cap reservations, approvals, and the operator commands
//! that change a run (approve, reject, cancel, retry).
//!
//! Every change commits with its audit entry. An operator command never races an
//! executor: it reads the run under the row's write lock (SQLite's `BEGIN IMMEDIATE`,
//! PostgreSQL's `FOR UPDATE`), updates it only if it is still in the state it read, and
//! bumps the fence and clears the lease, so that an executor holding the old lease
//! writes nothing more (its next save fails with `LeaseLost` before any provider call).
//!
//! Cap check-and-reserve is one write transaction: SQLite holds the database write lock
//! for all of it; PostgreSQL takes a transaction-scoped advisory lock per cap key (the
//! job and the grant, in a fixed order), so that two processes can never both take the
//! last headroom.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;

use sqlx::AnyConnection;

use super::audit::append_audit_on;
use super::{AuditHead, Backend, Store, StoreError, Tx, from_millis, millis};
use crate::audit::NewAuditEntry;
use crate::guards::{
    Ask, CapUse, Halt, HaltScope, Operator, RunFacts, approvals_needed, check_caps, may_approve,
    may_cancel, may_retry,
};
use crate::runs::{PayoutSpec, Run, RunId, RunState};
use crate::seal::SealKeys;

/// A request to check a run's caps and reserve its amount.
pub struct CapCheck<'a> {
    pub run: &'a Run,
    pub ask: &'a Ask,
    pub at: DateTime<Utc>,
    /// The audit actor (`worker:<id>`).
    pub actor: &'a str,
}

/// A run's reservation as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Reservation {
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub estimated: bool,
    pub reserved_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
}

/// One approval of a run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalRow {
    pub approver: String,
    pub approved_at: DateTime<Utc>,
}

/// Where an approval left the run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Approved {
    /// Everyone who has approved the run so far, in order.
    pub approvers: Vec<String>,
    pub needed: u32,
    /// True when this approval was the last one needed: the run is `created` and due.
    pub released: bool,
}

/// A command's refusal, for the operator (nothing was written).
pub type Refusal = String;

/// What an operator command reads of a run under its lock.
struct Locked {
    facts: RunFacts,
    spec: PayoutSpec,
    job_id: String,
    quote_attempt: i64,
}

/// A stable advisory-lock key for a cap.
fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

impl Store {
    // ------------------------------------------------------------------ halts

    /// Halts `scope`. Returns false if it was already halted (nothing changes then).
    pub async fn set_halt(
        &self,
        scope: &HaltScope,
        reason: Option<&str>,
        by: &Operator,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO halts (scope, target, reason, halted_by, halted_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(scope.kind())
        .bind(scope.target())
        .bind(reason)
        .bind(by.as_str())
        .bind(millis(at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            let entry = scoped(
                NewAuditEntry::new(
                    by.actor(),
                    "halt.on",
                    json!({ "scope": scope.kind(), "target": scope.target(), "reason": reason, "operator": by.as_str() }),
                ),
                scope,
            );
            let entry = self.seal_keys().sign(entry, at);
            self.append_audit_in(&mut tx, at, entry).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Lifts the halt on exactly `scope`. Returns false if there was none.
    pub async fn clear_halt(
        &self,
        scope: &HaltScope,
        by: &Operator,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // A halt whose row was deleted behind the worker's back still stands in the
        // chain (and still stops money): resuming it must lift it there too.
        let in_chain = crate::seal::halts_in_force(self.seal_keys(), &self.halt_entries().await?)
            .iter()
            .any(|h| &h.scope == scope);
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM halts WHERE scope = $1 AND target = $2")
            .bind(scope.kind())
            .bind(scope.target())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1
            || in_chain;
        if deleted {
            let entry = scoped(
                NewAuditEntry::new(
                    by.actor(),
                    "halt.off",
                    json!({ "scope": scope.kind(), "target": scope.target(), "operator": by.as_str() }),
                ),
                scope,
            );
            let entry = self.seal_keys().sign(entry, at);
            self.append_audit_in(&mut tx, at, entry).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Every active halt.
    pub async fn halts(&self) -> Result<Vec<Halt>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope, target, reason, halted_by, halted_at FROM halts ORDER BY halted_at, scope, target",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(halt_from_row).collect()
    }

    /// The halts that stop a run of `job_id` on `grant`: those of the table, and those
    /// the chain's MAC'd entries say are in force (a halt row deleted in the store
    /// still stops money).
    pub async fn halts_covering(&self, job_id: &str, grant: &str) -> Result<Vec<Halt>, StoreError> {
        let mut halts = self.halt_rows_covering(job_id, grant).await?;
        let sealed = crate::seal::halts_in_force(self.seal_keys(), &self.halt_entries().await?);
        for h in sealed {
            let covers = match &h.scope {
                HaltScope::All => true,
                HaltScope::Job(j) => j == job_id,
                HaltScope::Grant(g) => g == grant,
            };
            if covers && !halts.iter().any(|t| t.scope == h.scope) {
                halts.push(h);
            }
        }
        Ok(halts)
    }

    async fn halt_rows_covering(&self, job_id: &str, grant: &str) -> Result<Vec<Halt>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope, target, reason, halted_by, halted_at FROM halts \
             WHERE scope = 'all' OR (scope = 'job' AND target = $1) OR (scope = 'grant' AND target = $2)",
        )
        .bind(job_id)
        .bind(grant)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(halt_from_row).collect()
    }

    // ------------------------------------------------------------------ caps

    /// Checks the run's ask against its limits and what other runs hold, and reserves
    /// it, atomically across processes. `Ok(Err(reason))`: refused, nothing reserved.
    pub async fn reserve_caps(
        &self,
        c: CapCheck<'_>,
    ) -> Result<Result<CapUse, Refusal>, StoreError> {
        let (backend, seal) = (self.backend, self.seal.clone());
        let (run, ask, at, actor) = (c.run.clone(), c.ask.clone(), c.at, c.actor.to_string());
        self.write(Box::new(move |conn, head| {
            let (run, ask, actor, seal) = (run.clone(), ask.clone(), actor.clone(), seal.clone());
            Box::pin(async move {
                let c = CapCheck {
                    run: &run,
                    ask: &ask,
                    at,
                    actor: &actor,
                };
                reserve_caps_on(backend, &seal, conn, head, c).await
            })
        }))
        .await
    }

    /// Releases the run's reservation, if it holds one. Idempotent.
    pub async fn release_caps(
        &self,
        run_id: &RunId,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let (backend, seal) = (self.backend, self.seal.clone());
        let (run_id, actor) = (run_id.clone(), actor.to_string());
        self.write(Box::new(move |conn, head| {
            let (run_id, actor, seal) = (run_id.clone(), actor.clone(), seal.clone());
            Box::pin(async move {
                release_caps_on(backend, &seal, conn, head, &run_id, at, &actor).await
            })
        }))
        .await
    }

    async fn release_caps_in(
        &self,
        tx: &mut Tx,
        run_id: &RunId,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        release_caps_on(
            self.backend,
            &self.seal,
            tx,
            &mut AuditHead::default(),
            run_id,
            at,
            actor,
        )
        .await
    }

    /// The run's reservation, released or not.
    pub async fn cap_reservation(&self, run_id: &RunId) -> Result<Option<Reservation>, StoreError> {
        let row = sqlx::query(
            "SELECT currency, amount, estimated, reserved_at, released_at FROM cap_reservations WHERE run_id = $1",
        )
        .bind(run_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(Reservation {
                currency: r.try_get(0)?,
                amount: decimal(&r.try_get::<String, _>(1)?)?,
                estimated: r.try_get::<i64, _>(2)? == 1,
                reserved_at: from_millis(r.try_get(3)?)?,
                released_at: r
                    .try_get::<Option<i64>, _>(4)?
                    .map(from_millis)
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// What counts against a job's and a grant's caps now, in `currency`.
    pub async fn cap_usage(
        &self,
        job_id: &str,
        grant: &str,
        currency: &str,
        at: DateTime<Utc>,
    ) -> Result<CapUse, StoreError> {
        let rows = sqlx::query(
            "SELECT r.job_id, r.grant_alias, r.amount FROM cap_reservations r JOIN runs u ON u.id = r.run_id \
             WHERE r.released_at IS NULL AND r.reserved_at > $1 AND r.currency = $2 \
             AND u.state NOT IN ('failed', 'cancelled', 'needs_human') \
             AND (r.job_id = $3 OR r.grant_alias = $4)",
        )
        .bind(millis(at - Duration::hours(24)))
        .bind(currency)
        .bind(job_id)
        .bind(grant)
        .fetch_all(self.pool())
        .await?;
        let mut used = CapUse::default();
        for row in &rows {
            let amount = decimal(&row.try_get::<String, _>(2)?)?;
            if row.try_get::<String, _>(0)? == job_id {
                used.job += amount;
            }
            if row.try_get::<String, _>(1)? == grant {
                used.grant += amount;
            }
        }
        Ok(used)
    }

    // ------------------------------------------------------------------ operator commands

    /// Reads the run under its write lock (see the module docs).
    async fn lock_run(&self, tx: &mut Tx, id: &RunId) -> Result<Option<Locked>, StoreError> {
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT state, spec, pending_op, transfer_id, transfer_status, recipient_id, job_id, quote_attempt \
                 FROM runs WHERE id = $1 FOR UPDATE"
            }
            Backend::Sqlite => {
                "SELECT state, spec, pending_op, transfer_id, transfer_status, recipient_id, job_id, quote_attempt \
                 FROM runs WHERE id = $1"
            }
        };
        let Some(row) = sqlx::query(sql)
            .bind(id.as_str())
            .fetch_optional(&mut **tx)
            .await?
        else {
            return Ok(None);
        };
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("run {id} {what}: {e}"))
        };
        let state: String = row.try_get(0)?;
        let spec: String = row.try_get(1)?;
        let pending: Option<String> = row.try_get(2)?;
        Ok(Some(Locked {
            facts: RunFacts {
                state: state.parse().map_err(|e: String| corrupt("state", &e))?,
                pending_create_transfer: pending.as_deref() == Some("create_transfer"),
                transfer_id: row.try_get(3)?,
                transfer_status: row.try_get(4)?,
                recipient_id: row.try_get(5)?,
            },
            spec: serde_json::from_str(&spec).map_err(|e| corrupt("spec", &e))?,
            job_id: row.try_get(6)?,
            quote_attempt: row.try_get(7)?,
        }))
    }

    /// Records `who`'s approval of a run awaiting it. When the run has as many distinct
    /// approvers as its rule needs, it becomes `created` and due now.
    pub async fn approve_run(
        &self,
        id: &RunId,
        who: &Operator,
        at: DateTime<Utc>,
    ) -> Result<Result<Approved, Refusal>, StoreError> {
        let mut tx = self.begin().await?;
        let Some(run) = self.lock_run(&mut tx, id).await? else {
            return Ok(Err(format!("no run {id}")));
        };
        if run.facts.state != RunState::AwaitingApproval {
            return Ok(Err(format!(
                "run {id} is {}, not awaiting approval",
                run.facts.state
            )));
        }
        if let Err(reason) = may_approve(&run.spec, who) {
            return Ok(Err(format!("{reason}: run {id} was not approved")));
        }
        let needed = approvals_needed(&run.spec);
        let inserted = sqlx::query(
            "INSERT INTO run_approvals (run_id, approver, approver_display, approved_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id.as_str())
        .bind(who.key())
        .bind(who.as_str())
        .bind(millis(at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let approvers: Vec<String> = sqlx::query(
            "SELECT approver_display FROM run_approvals WHERE run_id = $1 ORDER BY approved_at, approver",
        )
        .bind(id.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
        if !inserted {
            return Ok(Err(format!(
                "{who} has already approved run {id}; an approver counts once ({} of {needed} distinct approvals)",
                approvers.len()
            )));
        }
        let released = approvers.len() as u64 >= u64::from(needed);
        if released {
            let reason = format!("approved by {}", approvers.join(" and "));
            let n = sqlx::query(
                "UPDATE runs SET state = 'created', reason = $1, next_attempt_at = $2, updated_at = $2, attempts = 0, \
                 fence = fence + 1, lease_owner = NULL, lease_until = NULL \
                 WHERE id = $3 AND state = 'awaiting_approval'",
            )
            .bind(&reason)
            .bind(millis(at))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                return Ok(Err(format!("run {id} changed meanwhile; try again")));
            }
        }
        let entry = NewAuditEntry::new(
            who.actor(),
            "run.approved",
            json!({ "approver": who.as_str(), "approver_id": who.key(), "approvals": approvers.len(), "needed": needed, "approvers": approvers, "released": released }),
        )
        .run(id.as_str())
        .job(&run.job_id)
        .grant(&run.spec.grant);
        let entry = self.seal_keys().sign(entry, at);
        self.append_audit_in(&mut tx, at, entry).await?;
        tx.commit().await?;
        Ok(Ok(Approved {
            approvers,
            needed,
            released,
        }))
    }

    /// Rejects a run awaiting approval: it is cancelled and never moves money.
    pub async fn reject_run(
        &self,
        id: &RunId,
        who: &Operator,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let mut tx = self.begin().await?;
        let Some(run) = self.lock_run(&mut tx, id).await? else {
            return Ok(Err(format!("no run {id}")));
        };
        if run.facts.state != RunState::AwaitingApproval {
            return Ok(Err(format!(
                "run {id} is {}, not awaiting approval; use `treasury runs cancel` while no money has moved",
                run.facts.state
            )));
        }
        let reason = match note {
            Some(n) => format!("rejected by {who}: {n}"),
            None => format!("rejected by {who}"),
        };
        self.end_run_in(&mut tx, id, RunState::AwaitingApproval, &reason, at)
            .await?;
        self.release_caps_in(&mut tx, id, at, &who.actor()).await?;
        let entry = NewAuditEntry::new(
            who.actor(),
            "run.rejected",
            json!({ "operator": who.as_str(), "reason": reason }),
        )
        .run(id.as_str())
        .job(&run.job_id)
        .grant(&run.spec.grant);
        self.append_audit_in(&mut tx, at, entry).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Cancels a run while no money has moved (see [`may_cancel`]).
    pub async fn cancel_run(
        &self,
        id: &RunId,
        who: &Operator,
        at: DateTime<Utc>,
    ) -> Result<Result<RunState, Refusal>, StoreError> {
        let mut tx = self.begin().await?;
        let Some(run) = self.lock_run(&mut tx, id).await? else {
            return Ok(Err(format!("no run {id}")));
        };
        if let Err(why) = may_cancel(&run.facts) {
            return Ok(Err(format!("run {id} cannot be cancelled: {why}")));
        }
        let from = run.facts.state;
        let reason = format!("cancelled by {who} (was {from})");
        if !self.end_run_in(&mut tx, id, from, &reason, at).await? {
            return Ok(Err(format!("run {id} changed meanwhile; try again")));
        }
        let released = self.release_caps_in(&mut tx, id, at, &who.actor()).await?;
        let entry = NewAuditEntry::new(
            who.actor(),
            "run.cancelled",
            json!({ "operator": who.as_str(), "from": from.as_str(), "reservation_released": released }),
        )
        .run(id.as_str())
        .job(&run.job_id)
        .grant(&run.spec.grant);
        self.append_audit_in(&mut tx, at, entry).await?;
        tx.commit().await?;
        Ok(Ok(from))
    }

    /// Moves a run from `from` to `cancelled` if it is still there and no transfer may
    /// exist, taking the lease from any executor.
    async fn end_run_in(
        &self,
        tx: &mut Tx,
        id: &RunId,
        from: RunState,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE runs SET state = 'cancelled', reason = $1, pending_op = NULL, updated_at = $2, \
             fence = fence + 1, lease_owner = NULL, lease_until = NULL \
             WHERE id = $3 AND state = $4 AND transfer_id IS NULL \
             AND (pending_op IS NULL OR pending_op <> 'create_transfer')",
        )
        .bind(reason)
        .bind(millis(at))
        .bind(id.as_str())
        .bind(from.as_str())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Restarts a failed or needs-human run (see [`may_retry`]): it re-quotes (the next
    /// quote attempt number, so a new reference) and is due now. Returns the state it
    /// restarts from.
    pub async fn retry_run(
        &self,
        id: &RunId,
        who: &Operator,
        at: DateTime<Utc>,
    ) -> Result<Result<RunState, Refusal>, StoreError> {
        let mut tx = self.begin().await?;
        let Some(run) = self.lock_run(&mut tx, id).await? else {
            return Ok(Err(format!("no run {id}")));
        };
        let to = match may_retry(&run.facts) {
            Ok(to) => to,
            Err(why) => return Ok(Err(format!("run {id} cannot be retried: {why}"))),
        };
        let from = run.facts.state;
        let reason = format!("retried by {who} (was {from})");
        let n = sqlx::query(
            "UPDATE runs SET state = $1, reason = $2, quote = NULL, transfer_id = NULL, transfer_status = NULL, \
             pending_op = NULL, quote_ask = NULL, attempts = 0, next_attempt_at = $3, updated_at = $3, quote_attempt_base = quote_attempt, \
             fence = fence + 1, lease_owner = NULL, lease_until = NULL \
             WHERE id = $4 AND state = $5",
        )
        .bind(to.as_str())
        .bind(&reason)
        .bind(millis(at))
        .bind(id.as_str())
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(Err(format!("run {id} changed meanwhile; try again")));
        }
        self.release_caps_in(&mut tx, id, at, &who.actor()).await?;
        let entry = NewAuditEntry::new(
            who.actor(),
            "run.retried",
            json!({
                "operator": who.as_str(), "from": from.as_str(), "to": to.as_str(),
                "previous_transfer_id": run.facts.transfer_id,
                "previous_transfer_status": run.facts.transfer_status,
                "next_quote_reference": id.quote_reference(u32::try_from(run.quote_attempt + 1).unwrap_or(u32::MAX)),
            }),
        )
        .run(id.as_str())
        .job(&run.job_id)
        .grant(&run.spec.grant);
        self.append_audit_in(&mut tx, at, entry).await?;
        tx.commit().await?;
        Ok(Ok(to))
    }

    /// Everyone who approved a run, in order.
    pub async fn run_approvals(&self, id: &RunId) -> Result<Vec<ApprovalRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT approver_display, approved_at FROM run_approvals WHERE run_id = $1 ORDER BY approved_at, approver",
        )
        .bind(id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApprovalRow {
                    approver: r.try_get(0)?,
                    approved_at: from_millis(r.try_get(1)?)?,
                })
            })
            .collect()
    }

    /// The runs of one occurrence of a job: every run whose occurrence key starts with
    /// `prefix` (a batch's runs share the nominal fire time and differ by payee).
    pub async fn runs_of_occurrence(
        &self,
        job_id: &str,
        prefix: &str,
    ) -> Result<Vec<Run>, StoreError> {
        let ids = sqlx::query(
            "SELECT id FROM runs WHERE job_id = $1 \
             AND substr(occurrence_key, 1, length(CAST($2 AS TEXT))) = CAST($2 AS TEXT) \
             ORDER BY occurrence_key, id",
        )
        .bind(job_id)
        .bind(prefix)
        .fetch_all(self.pool())
        .await?;
        let mut runs = Vec::with_capacity(ids.len());
        for row in &ids {
            let id: String = row.try_get(0)?;
            let id =
                RunId::parse(&id).ok_or_else(|| StoreError::Corrupt(format!("run id {id:?}")))?;
            if let Some(run) = self.get_run(&id).await? {
                runs.push(run);
            }
        }
        Ok(runs)
    }
}

fn scoped(entry: NewAuditEntry, scope: &HaltScope) -> NewAuditEntry {
    match scope {
        HaltScope::All => entry,
        HaltScope::Job(j) => entry.job(j),
        HaltScope::Grant(g) => entry.grant(g),
    }
}

/// Check-and-reserve on `conn`, inside the write transaction open there.
async fn reserve_caps_on(
    backend: Backend,
    seal: &SealKeys,
    conn: &mut AnyConnection,
    head: &mut AuditHead,
    c: CapCheck<'_>,
) -> Result<Result<CapUse, Refusal>, StoreError> {
    let run = c.run;
    let currency = run.spec.source_currency.as_str();
    if backend == Backend::Postgres {
        // Fixed order (grant before job) so that two reservations never deadlock.
        for key in [
            format!("cap:grant:{}", run.spec.grant),
            format!("cap:job:{}", run.job_id),
        ] {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_key(&key))
                .execute(&mut *conn)
                .await?;
        }
    }
    // What other runs hold matters only to a daily cap. A run without one skips the
    // scan (its reservation still counts against the caps of the grant's other jobs).
    let limits = &run.spec.limits;
    let daily = limits.job_daily_cap.is_some() || limits.grant_daily_cap.is_some();
    let mut used = CapUse::default();
    if daily {
        let since = c.at - Duration::hours(24);
        let rows = sqlx::query(
            "SELECT r.job_id, r.grant_alias, r.amount FROM cap_reservations r JOIN runs u ON u.id = r.run_id \
             WHERE r.released_at IS NULL AND r.reserved_at > $1 AND r.currency = $2 AND r.run_id <> $3 \
             AND u.state NOT IN ('failed', 'cancelled', 'needs_human') \
             AND (r.job_id = $4 OR r.grant_alias = $5)",
        )
        .bind(millis(since))
        .bind(currency)
        .bind(run.id.as_str())
        .bind(&run.job_id)
        .bind(&run.spec.grant)
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            let job: String = row.try_get(0)?;
            let grant: String = row.try_get(1)?;
            let amount = decimal(&row.try_get::<String, _>(2)?)?;
            if job == run.job_id {
                used.job += amount;
            }
            if grant == run.spec.grant {
                used.grant += amount;
            }
        }
    }
    if let Err(reason) = check_caps(run, c.ask, &used) {
        return Ok(Err(reason));
    }
    let (amount, estimated) = match c.ask {
        Ask::Amount { amount, estimated } => (*amount, *estimated),
        Ask::Headroom => (Decimal::ZERO, true),
    };
    let mine = sqlx::query(
        "SELECT amount, estimated, released_at FROM cap_reservations WHERE run_id = $1",
    )
    .bind(run.id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = &mine {
        let same = decimal(&row.try_get::<String, _>(0)?)? == amount
            && (row.try_get::<i64, _>(1)? == 1) == estimated
            && row.try_get::<Option<i64>, _>(2)?.is_none();
        if same {
            // A retried step asks again for what it holds: nothing to write.
            return Ok(Ok(used));
        }
    }
    // A live reservation keeps its time (the 24 hours run from the first lock); a
    // released one (the run was retried) starts again.
    sqlx::query(
        "INSERT INTO cap_reservations (run_id, job_id, grant_alias, currency, amount, estimated, reserved_at, released_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL) \
         ON CONFLICT (run_id) DO UPDATE SET amount = excluded.amount, estimated = excluded.estimated, \
         currency = excluded.currency, \
         reserved_at = CASE WHEN cap_reservations.released_at IS NULL THEN cap_reservations.reserved_at ELSE excluded.reserved_at END, \
         released_at = NULL",
    )
    .bind(run.id.as_str())
    .bind(&run.job_id)
    .bind(&run.spec.grant)
    .bind(currency)
    .bind(amount.to_string())
    .bind(i64::from(estimated))
    .bind(millis(c.at))
    .execute(&mut *conn)
    .await?;
    let (job_used, grant_used) = if daily {
        (Some(used.job.to_string()), Some(used.grant.to_string()))
    } else {
        (None, None)
    };
    let entry = NewAuditEntry::new(
        c.actor,
        "run.cap.reserved",
        json!({
            "amount": amount.to_string(), "currency": currency, "estimated": estimated,
            "job_used": job_used, "grant_used": grant_used,
            "max_per_run": limits.max_per_run.map(|d| d.to_string()),
            "job_daily_cap": limits.job_daily_cap.map(|d| d.to_string()),
            "grant_daily_cap": limits.grant_daily_cap.map(|d| d.to_string()),
        }),
    )
    .run(run.id.as_str())
    .job(&run.job_id)
    .grant(&run.spec.grant);
    let entry = seal.sign(entry, c.at);
    append_audit_on(backend, conn, head, c.at, entry).await?;
    Ok(Ok(used))
}

async fn release_caps_on(
    backend: Backend,
    seal: &SealKeys,
    conn: &mut AnyConnection,
    head: &mut AuditHead,
    run_id: &RunId,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "UPDATE cap_reservations SET released_at = $1 WHERE run_id = $2 AND released_at IS NULL \
         RETURNING amount, currency, job_id, grant_alias",
    )
    .bind(millis(at))
    .bind(run_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let amount: String = row.try_get(0)?;
    let currency: String = row.try_get(1)?;
    let job: String = row.try_get(2)?;
    let grant: String = row.try_get(3)?;
    let entry = NewAuditEntry::new(
        actor,
        "run.cap.released",
        json!({ "amount": amount, "currency": currency }),
    )
    .run(run_id.as_str())
    .job(job)
    .grant(grant);
    let entry = seal.sign(entry, at);
    append_audit_on(backend, conn, head, at, entry).await?;
    Ok(true)
}

fn decimal(s: &str) -> Result<Decimal, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("amount {s:?}: {e}")))
}

fn halt_from_row(row: &sqlx::any::AnyRow) -> Result<Halt, StoreError> {
    let kind: String = row.try_get(0)?;
    let target: String = row.try_get(1)?;
    Ok(Halt {
        scope: HaltScope::from_parts(&kind, &target)
            .ok_or_else(|| StoreError::Corrupt(format!("halt scope {kind:?} {target:?}")))?,
        reason: row.try_get(2)?,
        halted_by: row.try_get(3)?,
        halted_at: from_millis(row.try_get(4)?)?,
    })
}
