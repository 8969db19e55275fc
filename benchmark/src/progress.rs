//! A one-line progress bar on stderr, drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::schedule::Budget;

/// How often the bar is redrawn.
const REDRAW: Duration = Duration::from_millis(200);
/// Characters in the bar itself.
const BAR_CHARS: usize = 30;

/// The bar for `done` requests after `elapsed` of a run with `budget`.
pub fn render(done: u64, elapsed: Duration, budget: Budget) -> String {
    let secs = elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let (fraction, position) = match budget {
        Budget::Total(total) => {
            #[allow(clippy::cast_precision_loss)]
            let f = if total == 0 {
                1.0
            } else {
                done as f64 / total as f64
            };
            (f, format!("{done}/{total}"))
        }
        Budget::Duration(limit) => {
            let f = secs / limit.as_secs_f64().max(f64::MIN_POSITIVE);
            (
                f,
                format!("{done} in {secs:.1}/{:.1}s", limit.as_secs_f64()),
            )
        }
    };
    let fraction = fraction.clamp(0.0, 1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let filled = ((fraction * BAR_CHARS as f64).round() as usize).min(BAR_CHARS);
    format!(
        "[{}{}] {:>3.0}% {position} {rate:.0} req/s",
        "#".repeat(filled),
        "-".repeat(BAR_CHARS - filled),
        fraction * 100.0
    )
}

/// A running progress bar; [`Progress::finish`] erases it.
#[derive(Debug)]
pub struct Progress {
    task: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Progress {
    /// Starts redrawing the count in `done` if `enabled` and stderr is a terminal.
    pub fn start(done: Arc<AtomicU64>, budget: Budget, enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Self { task: None };
        }
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let start = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REDRAW);
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = tick.tick() => {
                        let line = render(done.load(Ordering::Relaxed), start.elapsed(), budget);
                        let _ = write!(std::io::stderr().lock(), "\r{line}\x1b[K");
                    }
                }
            }
            // Erase the bar so the report starts on a clean line.
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        });
        Self {
            task: Some((stop_tx, task)),
        }
    }

    /// Stops and erases the bar.
    pub async fn finish(self) {
        if let Some((stop, task)) = self.task {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_budget_shows_count_percentage_and_rate() {
        let line = render(250, Duration::from_secs(2), Budget::Total(1000));
        assert_eq!(
            line,
            format!(
                "[{}{}]  25% 250/1000 125 req/s",
                "#".repeat(8),
                "-".repeat(22)
            )
        );
    }

    #[test]
    fn a_duration_budget_shows_time() {
        let line = render(
            10,
            Duration::from_secs(5),
            Budget::Duration(Duration::from_secs(10)),
        );
        assert!(line.contains(" 50% 10 in 5.0/10.0s 2 req/s"), "{line}");
    }

    #[test]
    fn the_bar_never_overflows() {
        let line = render(5, Duration::from_secs(20), Budget::Total(3));
        assert!(
            line.starts_with(&format!("[{}] 100%", "#".repeat(BAR_CHARS))),
            "{line}"
        );
        let line = render(0, Duration::ZERO, Budget::Total(0));
        assert!(line.contains("100% 0/0 0 req/s"), "{line}");
    }
}
