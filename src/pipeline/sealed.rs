//! The seal check before every money-moving step (issue 16 §1): the run as read from
//! its row must match what its `run.created` entry sealed, and any approval the seal
//! requires must be proven by entries that carry the worker's MAC. A mismatch moves no
//! money: the run goes to `needs_human` with the reason, audited as `run.seal_broken`
//! (which raises an alert).

use serde_json::json;

use super::*;
use crate::seal::{SealBreak, SealChecked, check_run};

impl Pipeline {
    /// `Ok(Ok(proof))` when the run matches its seal; otherwise the run has been
    /// stopped (or, if the store could not be read, made to wait).
    pub(super) async fn sealed(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        step: GateStep,
    ) -> Result<Result<SealChecked, Executed>, Stop> {
        let entries = match self.store.seal_entries(&run.id).await {
            Ok(entries) => entries,
            Err(e) if e.is_transient() => {
                let until = self.clock.now() + self.backoff(run.attempts);
                let note = format!("could not read the run's seal: {e}");
                let done = self
                    .wait(lease, run, until, note, "run.retry_scheduled")
                    .await?;
                return Ok(Err(done.unwrap_or(Executed::Waiting(until))));
            }
            Err(e) => return Err(e.into()),
        };
        match check_run(self.store.seal_keys(), run, &entries) {
            Ok(proof) => Ok(Ok(proof)),
            Err(broken) => self.seal_broken(lease, run, step, broken).await.map(Err),
        }
    }

    async fn seal_broken(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        step: GateStep,
        broken: SealBreak,
    ) -> Result<Executed, Stop> {
        let reason = format!(
            "the run does not match its seal in the audit chain: {broken}; no money was moved at {step:?}"
        );
        tracing::error!(run = %run.id, step = ?step, %broken, "seal broken: the run's row was changed outside the worker");
        // A transfer intent from an earlier attempt stays recorded: whether that call
        // landed is for the person to find out; caps stay reserved while it may have.
        if run.pending != Some(PendingOp::CreateTransfer) {
            run.pending = None;
        }
        let money_may_have_moved =
            run.pending.is_some() || run.state == RunState::TransferSubmitted;
        run.reason = Some(reason.clone());
        self.advance(run, RunState::NeedsHuman);
        let e = self.entry(
            run,
            "run.seal_broken",
            json!({ "step": format!("{step:?}"), "reason": reason }),
        );
        self.save(lease, run, vec![e]).await?;
        if !money_may_have_moved {
            self.gate.released(run).await;
        }
        Ok(Executed::Finished(RunState::NeedsHuman))
    }
}

#[cfg(test)]
mod tests {
    /// Every pipeline source file, by name.
    const SOURCES: [(&str, &str); 12] = [
        ("mod.rs", include_str!("mod.rs")),
        ("checks.rs", include_str!("checks.rs")),
        ("gate.rs", include_str!("gate.rs")),
        ("lease.rs", include_str!("lease.rs")),
        ("plumbing.rs", include_str!("plumbing.rs")),
        ("quote.rs", include_str!("quote.rs")),
        ("recipient.rs", include_str!("recipient.rs")),
        ("recipient_given.rs", include_str!("recipient_given.rs")),
        ("sealed.rs", include_str!("sealed.rs")),
        ("tokens.rs", include_str!("tokens.rs")),
        ("track.rs", include_str!("track.rs")),
        ("transfer.rs", include_str!("transfer.rs")),
    ];

    /// The Busha client's calls that move money (each takes a `SendCheck`).
    const MONEY_CALLS: [&str; 3] = [".create_recipient(", ".create_quote(", ".create_transfer("];

    /// The text of the call starting at `at`, up to its closing parenthesis.
    fn call_text(src: &str, at: usize) -> &str {
        let open = at + src[at..].find('(').unwrap_or(0);
        let mut depth = 0;
        for (i, c) in src[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return &src[at..=open + i];
                    }
                }
                _ => {}
            }
        }
        &src[at..]
    }

    #[test]
    fn every_money_moving_call_passes_the_seal_check() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/pipeline");
        let mut listed: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        listed.sort();
        let mut known: Vec<String> = SOURCES.iter().map(|(n, _)| n.to_string()).collect();
        known.sort();
        assert_eq!(
            listed, known,
            "a pipeline file is not checked here: add it to SOURCES"
        );

        let mut calls = Vec::new();
        for (file, src) in SOURCES {
            // Not this test's own text.
            let src = src.split("#[cfg(test)]").next().unwrap_or(src);
            for needle in MONEY_CALLS {
                for (at, _) in src.match_indices(needle) {
                    let call = call_text(src, at);
                    assert!(
                        call.contains("&self.cover(lease, &sealed)"),
                        "{file}: {call} moves money without the seal check's proof"
                    );
                    calls.push((file, needle));
                }
            }
            // The proof comes from one place only: the gate, which checks the seal.
            for (at, _) in src.match_indices(concat!("let sealed", " = ")) {
                let line = &src[at..at + src[at..].find('\n').unwrap_or(0)];
                assert!(
                    line.contains("self.gated(") || line.contains("self.sealed("),
                    "{file}: {line}"
                );
            }
        }
        assert_eq!(calls.len(), 3, "the three money-moving calls: {calls:?}");
        let covers: usize = SOURCES
            .iter()
            .map(|(_, s)| {
                let code = s.split("#[cfg(test)]").next().unwrap_or(s);
                code.matches("super::lease::Cover {").count()
            })
            .sum();
        assert_eq!(covers, 1, "a Cover is built in `cover` only");
    }
}
