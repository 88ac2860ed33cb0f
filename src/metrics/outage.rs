//! Outages: run-wide windows in which commands fail with `connection_error`, `timeout` or
//! `cluster_error`, merged from every worker's health edges.
//!
//! Workers record nothing extra per command. A worker is *failing* from its first command that
//! fails with one of those classes (after a success, or since the start) until its next
//! successful command. It notes only the two edges, as [`HealthEdge`]s in its interval data:
//! `Failing` stamped with the time the first failed command was *sent* (a timeout is detected
//! one socket timeout later, but the server stopped answering by the send), and `Recovered`
//! stamped with the time the first successful reply arrived, carrying how many commands failed
//! with an outage class in between. A worker still failing when it finishes hands in
//! `Unresolved` with that count. Edges are rare, so the worker publishes its shard right away
//! and the reporter, which gathers at least every second, learns of an outage within about a
//! second.
//!
//! The reporter feeds edges to an [`OutageTracker`]. Each worker's failing period is an
//! *episode* `[Failing, Recovered]` (open episodes end at the run's end). An **outage window**
//! is a maximal union of overlapping episodes: it is open while at least one worker is
//! failing, starts at the earliest episode start and ends when the last overlapping episode
//! ends. Per window: `failed_commands` is the sum of its episodes' counts, and
//! `time_to_first_success` is the time from the window's start to the first recovery of any of
//! its workers. The console's live start/end lines use the same rule incrementally (edges in
//! time order per gathering); the final windows are recomputed from all episodes, so an edge
//! handed in late by a worker stuck in a read still lands in the right window.
//! Not here: counting the failed commands themselves (per-op error counters), reconnects.

use std::time::{Duration, Instant};

use crate::error::ErrorClass;

/// Edges a worker keeps per interval before it merges episodes (see [`push_edge`]).
pub const EDGE_CAPACITY: usize = 16;

/// Whether an error of `class` means the server (or the path to it) is unavailable.
#[inline]
pub fn is_outage_class(class: ErrorClass) -> bool {
    matches!(
        class,
        ErrorClass::ConnectionError | ErrorClass::Timeout | ErrorClass::ClusterError
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// First outage-class failure after a success; `at` = when that command was sent.
    Failing,
    /// First success after failures; `at` = when its reply arrived.
    Recovered,
    /// The worker finished while still failing.
    Unresolved,
}

/// One worker's change of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthEdge {
    pub worker: u32,
    pub kind: EdgeKind,
    pub at: Instant,
    /// `Recovered` / `Unresolved`: commands that failed with an outage class in the episode.
    pub failed: u64,
}

/// Appends `edge` to a worker's interval buffer without growing it past [`EDGE_CAPACITY`]: when
/// full, a new `Failing` edge instead removes the preceding `Recovered` one, merging the two
/// episodes (the window only gets wider, never lost). Returns the failure count of a removed
/// `Recovered` edge, which the worker carries into the merged episode.
pub fn push_edge(edges: &mut Vec<HealthEdge>, overflow: &mut u64, edge: HealthEdge) -> u64 {
    if edges.len() >= edges.capacity().max(EDGE_CAPACITY)
        && edge.kind == EdgeKind::Failing
        && let Some(last) = edges.last()
        && last.kind == EdgeKind::Recovered
        && last.worker == edge.worker
    {
        *overflow += 1;
        return edges.pop().map_or(0, |e| e.failed);
    }
    edges.push(edge);
    0
}

/// What the console prints live.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LiveEvent {
    /// The first worker started failing; seconds since the run's start.
    Started { at_s: f64 },
    /// The last failing worker recovered.
    Ended { start_s: f64, end_s: f64 },
}

/// One merged outage window, in times since the run's start.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageWindow {
    pub start: Duration,
    pub end: Duration,
    pub failed_commands: u64,
    /// From `start` to the first recovery of any worker in the window; `None` if none
    /// recovered before the run ended.
    pub time_to_first_success: Option<Duration>,
    /// Workers that failed in the window.
    pub workers: usize,
    /// Still open when the run ended (`end` is the run's end).
    pub open_at_end: bool,
}

#[derive(Debug, Clone, Copy)]
struct Episode {
    worker: u32,
    start: Instant,
    end: Option<Instant>,
    failed: u64,
}

/// Turns workers' edges into live events and the run's outage windows.
#[derive(Debug)]
pub struct OutageTracker {
    origin: Instant,
    episodes: Vec<Episode>,
    /// Per worker: its open episode.
    open: Vec<Option<usize>>,
    failing_now: usize,
    live_start: Option<Instant>,
}

impl OutageTracker {
    /// `origin` is the run's start (times are reported relative to it).
    pub fn new(origin: Instant, workers: usize) -> Self {
        OutageTracker {
            origin,
            episodes: Vec::new(),
            open: vec![None; workers],
            failing_now: 0,
            live_start: None,
        }
    }

    fn secs(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.origin).as_secs_f64()
    }

    /// Consumes `edges` (one gathering's worth), appending live events to `events`.
    pub fn feed(&mut self, edges: &mut Vec<HealthEdge>, events: &mut Vec<LiveEvent>) {
        edges.sort_by_key(|e| e.at);
        for e in edges.drain(..) {
            let w = e.worker as usize;
            if w >= self.open.len() {
                self.open.resize(w + 1, None);
            }
            match e.kind {
                EdgeKind::Failing => {
                    if self.open[w].is_some() {
                        continue;
                    }
                    self.open[w] = Some(self.episodes.len());
                    self.episodes.push(Episode {
                        worker: e.worker,
                        start: e.at,
                        end: None,
                        failed: 0,
                    });
                    self.failing_now += 1;
                    if self.failing_now == 1 {
                        self.live_start = Some(e.at);
                        events.push(LiveEvent::Started {
                            at_s: self.secs(e.at),
                        });
                    }
                }
                EdgeKind::Recovered => {
                    // A recovery without a start (e.g. it failed during warm-up) is ignored.
                    let Some(i) = self.open[w].take() else {
                        continue;
                    };
                    let ep = &mut self.episodes[i];
                    ep.end = Some(e.at.max(ep.start));
                    ep.failed += e.failed;
                    self.failing_now -= 1;
                    if self.failing_now == 0 {
                        let start = self.live_start.take().unwrap_or(e.at);
                        events.push(LiveEvent::Ended {
                            start_s: self.secs(start),
                            end_s: self.secs(e.at),
                        });
                    }
                }
                EdgeKind::Unresolved => {
                    if let Some(i) = self.open[w] {
                        self.episodes[i].failed += e.failed;
                    }
                }
            }
        }
    }

    /// Workers failing right now (as far as the reporter knows).
    pub fn failing_now(&self) -> usize {
        self.failing_now
    }

    /// The merged windows; episodes still open end at `run_end`.
    pub fn windows(&self, run_end: Instant) -> Vec<OutageWindow> {
        let mut eps = self.episodes.clone();
        eps.sort_by_key(|e| e.start);
        let rel = |t: Instant| t.saturating_duration_since(self.origin);
        let mut out: Vec<OutageWindow> = Vec::new();
        let mut cur: Option<(Instant, Instant, Vec<u32>)> = None;
        let mut first_success: Option<Instant> = None;
        let mut failed = 0;
        let mut open_at_end = false;
        let mut close = |start: Instant,
                         end: Instant,
                         workers: &mut Vec<u32>,
                         first: Option<Instant>,
                         failed: u64,
                         open: bool| {
            workers.sort_unstable();
            workers.dedup();
            out.push(OutageWindow {
                start: rel(start),
                end: rel(end),
                failed_commands: failed,
                time_to_first_success: first.map(|f| f.saturating_duration_since(start)),
                workers: workers.len(),
                open_at_end: open,
            });
        };
        for ep in eps {
            let end = ep.end.unwrap_or(run_end).max(ep.start);
            match &mut cur {
                Some((_, cur_end, workers)) if ep.start <= *cur_end => {
                    *cur_end = (*cur_end).max(end);
                    workers.push(ep.worker);
                }
                _ => {
                    if let Some((s, e, mut w)) = cur.take() {
                        close(s, e, &mut w, first_success, failed, open_at_end);
                    }
                    cur = Some((ep.start, end, vec![ep.worker]));
                    first_success = None;
                    failed = 0;
                    open_at_end = false;
                }
            }
            failed += ep.failed;
            open_at_end |= ep.end.is_none();
            if let Some(e) = ep.end {
                first_success = Some(first_success.map_or(e, |f| f.min(e)));
            }
        }
        if let Some((s, e, mut w)) = cur.take() {
            close(s, e, &mut w, first_success, failed, open_at_end);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(worker: u32, kind: EdgeKind, origin: Instant, ms: u64, failed: u64) -> HealthEdge {
        HealthEdge {
            worker,
            kind,
            at: origin + Duration::from_millis(ms),
            failed,
        }
    }

    #[test]
    fn overlapping_workers_merge_into_one_window() {
        use EdgeKind::*;
        let t0 = Instant::now();
        let mut tr = OutageTracker::new(t0, 3);
        let mut ev = Vec::new();
        // Worker 1's edges arrive a gathering late and out of order: still merged.
        tr.feed(
            &mut vec![
                edge(0, Failing, t0, 1000, 0),
                edge(2, Failing, t0, 1500, 0),
                edge(0, Recovered, t0, 2500, 7),
            ],
            &mut ev,
        );
        tr.feed(
            &mut vec![
                edge(2, Recovered, t0, 3000, 5),
                edge(1, Recovered, t0, 2800, 1),
                edge(1, Failing, t0, 1200, 0),
            ],
            &mut ev,
        );
        let w = tr.windows(t0 + Duration::from_secs(10));
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].start, Duration::from_millis(1000));
        assert_eq!(w[0].end, Duration::from_millis(3000));
        assert_eq!(w[0].failed_commands, 13);
        assert_eq!(w[0].workers, 3);
        assert_eq!(
            w[0].time_to_first_success,
            Some(Duration::from_millis(1500))
        );
        assert!(!w[0].open_at_end);
        assert_eq!(ev[0], LiveEvent::Started { at_s: 1.0 });
        assert_eq!(ev.len(), 2, "one start, one end: {ev:?}");
        assert!(matches!(ev[1], LiveEvent::Ended { end_s, .. } if (end_s - 3.0).abs() < 1e-9));
    }

    #[test]
    fn separate_windows_stay_separate_and_open_ones_end_at_run_end() {
        use EdgeKind::*;
        let t0 = Instant::now();
        let mut tr = OutageTracker::new(t0, 2);
        let mut ev = Vec::new();
        tr.feed(
            &mut vec![
                edge(0, Failing, t0, 1000, 0),
                edge(0, Recovered, t0, 1400, 3),
                edge(1, Failing, t0, 2000, 0),
                edge(0, Failing, t0, 2100, 0),
                edge(0, Recovered, t0, 2600, 2),
                edge(1, Recovered, t0, 2500, 4),
                edge(1, Failing, t0, 5000, 0),
                edge(1, Unresolved, t0, 6000, 9),
                // A recovery with no start (failed during warm-up): ignored.
                edge(0, Recovered, t0, 5500, 1),
            ],
            &mut ev,
        );
        let w = tr.windows(t0 + Duration::from_secs(8));
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(
            (w[0].start, w[0].end),
            (Duration::from_millis(1000), Duration::from_millis(1400))
        );
        assert_eq!(w[0].failed_commands, 3);
        assert_eq!(
            (w[1].start, w[1].end),
            (Duration::from_millis(2000), Duration::from_millis(2600))
        );
        assert_eq!(w[1].failed_commands, 6);
        assert_eq!(w[1].time_to_first_success, Some(Duration::from_millis(500)));
        assert_eq!(w[2].end, Duration::from_secs(8));
        assert!(w[2].open_at_end);
        assert_eq!(w[2].time_to_first_success, None);
        assert_eq!(w[2].failed_commands, 9);
        assert_eq!(tr.failing_now(), 1);
        let starts = ev
            .iter()
            .filter(|e| matches!(e, LiveEvent::Started { .. }))
            .count();
        assert_eq!(starts, 3);
    }

    #[test]
    fn a_full_edge_buffer_merges_episodes_instead_of_losing_them() {
        use EdgeKind::*;
        let t0 = Instant::now();
        let mut edges = Vec::with_capacity(EDGE_CAPACITY);
        let mut overflow = 0;
        let mut carried = 0;
        for i in 0..20u64 {
            carried += push_edge(&mut edges, &mut overflow, edge(0, Failing, t0, i * 100, 0));
            push_edge(
                &mut edges,
                &mut overflow,
                edge(0, Recovered, t0, i * 100 + 50, 1 + carried),
            );
            carried = 0;
        }
        assert!(edges.len() <= EDGE_CAPACITY);
        assert_eq!(edges.capacity(), EDGE_CAPACITY, "never grew");
        assert_eq!(overflow, 12);
        let mut tr = OutageTracker::new(t0, 1);
        tr.feed(&mut edges, &mut Vec::new());
        let w = tr.windows(t0 + Duration::from_secs(5));
        assert_eq!(w.last().unwrap().end, Duration::from_millis(1950));
        assert_eq!(w.iter().map(|w| w.failed_commands).sum::<u64>(), 20);
    }
}
