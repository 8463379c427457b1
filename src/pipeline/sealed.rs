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
    const SOURCES: [(&str, &str); 13] = [
        ("mod.rs", include_str!("mod.rs")),
        ("checks.rs", include_str!("checks.rs")),
        ("gate.rs", include_str!("gate.rs")),
        ("lease.rs", include_str!("lease.rs")),
        ("plumbing.rs", include_str!("plumbing.rs")),
        ("promises.rs", include_str!("promises.rs")),
        ("quote.rs", include_str!("quote.rs")),
        ("recipient.rs", include_str!("recipient.rs")),
        ("recipient_given.rs", include_str!("recipient_given.rs")),
        ("sealed.rs", include_str!("sealed.rs")),
        ("tokens.rs", include_str!("tokens.rs")),
        ("track.rs", include_str!("track.rs")),
        ("transfer.rs", include_str!("transfer.rs")),
    ];

    /// Module paths and client types of providers' wire sides: none may be named in the
    /// pipeline, which speaks the provider boundary only.
    const WIRE_SIDES: [&str; 4] = [
        "provider::busha",
        "provider::baanx",
        "BushaClient",
        "BaanxClient",
    ];

    /// What of `WIRE_SIDES` a source's text names, whether in a `use`, a path, or in
    /// a group such as `crate::provider::{boundary::{..}, busha}`.
    fn wire_names(src: &str) -> Vec<&'static str> {
        let flat: String = src.chars().filter(|c| !c.is_whitespace()).collect();
        let mut named: Vec<&'static str> = WIRE_SIDES
            .into_iter()
            .filter(|w| flat.contains(w))
            .collect();
        for grouped in flat.split("provider::{").skip(1) {
            // The group up to its own closing brace; its top-level items only.
            let (mut depth, mut items, mut item) = (0, Vec::new(), String::new());
            for c in grouped.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ => item.push(c),
                }
            }
            items.push(item);
            for m in ["busha", "baanx"] {
                if items
                    .iter()
                    .any(|i| i == m || i.starts_with(&format!("{m}::")))
                {
                    named.push(if m == "busha" {
                        "provider::busha"
                    } else {
                        "provider::baanx"
                    });
                }
            }
        }
        named
    }

    #[test]
    fn no_pipeline_file_names_a_provider_wire_type() {
        // The scan itself must see each way of naming a wire side.
        for (src, want) in [
            (
                "use crate::provider::busha::{Quote, Pager};",
                "provider::busha",
            ),
            ("let c: crate::provider::baanx::Client;", "provider::baanx"),
            (
                "use crate::provider::{AccessToken, busha};",
                "provider::busha",
            ),
            (
                "use crate::provider::{boundary::{A, B}, busha};",
                "provider::busha",
            ),
            (
                "use crate::provider::{\n    baanx::Wallet,\n};",
                "provider::baanx",
            ),
            ("busha: BushaClient,", "BushaClient"),
        ] {
            assert!(wire_names(src).contains(&want), "{src} names {want}");
        }
        assert!(wire_names("use crate::provider::boundary::Quote; // Busha's quote").is_empty());

        let named: Vec<(&str, Vec<&str>)> = SOURCES
            .iter()
            .map(|(file, src)| {
                // Test code counts too, but for this test's own examples.
                let src = match *file {
                    "sealed.rs" => src.split("mod tests {").next().unwrap_or(src),
                    _ => src,
                };
                (*file, wire_names(src))
            })
            .filter(|(_, names)| !names.is_empty())
            .collect();
        assert!(
            named.is_empty(),
            "src/pipeline/ must speak the provider boundary only: {named:?}"
        );
    }

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
