//! `benchmark`: a load generator for servers of the etcd v3 API, so it measures xline and etcd
//! the same way.
//!
//! It speaks the etcd API over gRPC with the workspace's generated clients (`xline-proto`), and
//! offers etcd's benchmark tool's workloads and flags:
//!
//! ```text
//! benchmark --endpoints 127.0.0.1:2379 --clients 100 --conns 10 \
//!     put --total 100000 --key-size 8 --val-size 256 --key-space-size 100000
//! ```
//!
//! How a run works: [`cli`] turns the flags into a [`cli::Plan`]; [`conn`] opens `--conns`
//! connections (to the leader only with `--target-leader`); [`runner`] drives `--clients` tasks
//! that claim request numbers from one [`schedule::Schedule`] (a count or a duration, optionally
//! paced by `--rate`) and send the [`workload`]'s request for each; every client records into its
//! own [`report::Recorder`], and the merged recorders become a [`report::Summary`] (requests/s,
//! percentiles, histogram), printed as text or JSON. `watch-latency` has its own driver in
//! [`watch_latency`].
//!
//! With `--native` the connections are xline's CURP clients on the members' peer URLs instead
//! of gRPC channels ([`native`]): the same runner drives them, and the report adds how many
//! requests completed on the fast path ([`native::NativeStats`]).

pub mod cli;
pub mod conn;
pub mod error;
pub mod keys;
pub mod native;
pub mod progress;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod wan;
pub mod watch_latency;
pub mod workload;

use std::sync::Arc;

use serde::Serialize;

use crate::cli::{Job, Params, Plan};
use crate::conn::Conn;
use crate::error::BenchError;
use crate::native::NativeStats;
use crate::report::Summary;

/// Everything a run reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The settings of the run.
    pub params: Params,
    /// The endpoints the requests went to (after `--target-leader`).
    pub targets: Vec<String>,
    /// The measured workload (for watch-latency: put-to-event latencies).
    pub summary: Summary,
    /// watch-latency only: the puts that caused the events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub put_summary: Option<Summary>,
    /// `--native` only: how the requests completed (fast path, fallback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native: Option<NativeStats>,
}

impl Report {
    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{} against {} ({} clients, {} conns)\n\n{}",
            self.params.workload,
            self.targets.join(","),
            self.params.clients,
            self.params.conns,
            self.summary.to_text()
        );
        if let Some(puts) = &self.put_summary {
            text.push('\n');
            text.push_str(&puts.to_text());
        }
        if let Some(native) = &self.native {
            text.push('\n');
            text.push_str(&native.to_text());
        }
        text
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Only strings, numbers and maps with string keys: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// True when requests were sent and every one failed (the exit status reports it).
    pub fn all_failed(&self) -> bool {
        self.summary.requests == 0 && self.summary.errors > 0
    }
}

/// Connects and runs `plan`.
pub async fn execute(plan: &Plan) -> Result<Report, BenchError> {
    if plan.native {
        return execute_native(plan).await;
    }
    let targets = if plan.target_leader {
        vec![conn::find_leader(&plan.urls).await?]
    } else {
        plan.urls.clone()
    };
    let channels = conn::connect_all(&targets, plan.conns).await?;
    let (summary, put_summary) = match &plan.job {
        Job::Simple(workload) => {
            let name = workload.name();
            let conns: Vec<Conn> = channels.into_iter().map(Conn::Grpc).collect();
            let outcome = runner::run(Arc::new(workload.clone()), &conns, &plan.run).await?;
            let summary = Summary::new(name, &outcome.recorder, outcome.elapsed);
            (summary, None)
        }
        Job::Watch(spec) => {
            let outcome = watch_latency::run(spec, &channels, &plan.run).await?;
            let puts = &outcome.puts;
            let summary = Summary::new("watch-latency", &outcome.events, puts.elapsed);
            let put_summary = Summary::new("watch-latency puts", &puts.recorder, puts.elapsed);
            (summary, Some(put_summary))
        }
    };
    Ok(Report {
        params: plan.params.clone(),
        targets,
        summary,
        put_summary,
        native: None,
    })
}

/// Runs a `--native` plan: native clients on the peer URLs, the fast path for every request.
async fn execute_native(plan: &Plan) -> Result<Report, BenchError> {
    native::check_workload(&plan.params.workload)?;
    let Job::Simple(workload) = &plan.job else {
        return Err(BenchError::InvalidArgs(
            "--native runs request-per-iteration workloads only".to_owned(),
        ));
    };
    let clients = native::connect_all(&plan.urls, plan.conns, plan.run.request_timeout).await?;
    let conns: Vec<Conn> = clients.iter().cloned().map(Conn::Native).collect();
    let outcome = runner::run(Arc::new(workload.clone()), &conns, &plan.run).await?;
    Ok(Report {
        params: plan.params.clone(),
        targets: plan.urls.clone(),
        summary: Summary::new(workload.name(), &outcome.recorder, outcome.elapsed),
        put_summary: None,
        native: Some(NativeStats::sum(&clients)),
    })
}
