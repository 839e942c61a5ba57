//! The timer driven through a real container with tokio's paused clock: every assertion is about
//! when ticks happen, and paused time makes those instants exact and the tests instant.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use nameko_core::testing::entrypoint_hook;
use nameko_core::{Config, RemoteError, Service, ServiceContainer, Worker};
use nameko_timer::timer;
use tokio::sync::mpsc;
use tokio::time::Instant;

const SECOND: Duration = Duration::from_secs(1);

/// Starts a one-timer service whose ticks report their start time (relative to `t0`) and run
/// `work` (how long tick n takes).
async fn run_timer(
    eager: bool,
    work: impl Fn(u32) -> Duration + Clone + Send + Sync + 'static,
) -> (ServiceContainer, mpsc::UnboundedReceiver<Duration>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let t0 = Instant::now();
    let count = Arc::new(AtomicU32::new(0));
    let handler = move |_: Worker| {
        let (tx, work, count) = (tx.clone(), work.clone(), count.clone());
        async move {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(t0.elapsed());
            tokio::time::sleep(work(n)).await;
        }
    };
    let service = Service::new("service").entrypoint(timer(SECOND, "ping", handler).eager(eager));
    let container = ServiceContainer::new(service, Config::new()).unwrap();
    container.start().await.unwrap();
    (container, rx)
}

async fn ticks(rx: &mut mpsc::UnboundedReceiver<Duration>, n: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(rx.recv().await.unwrap());
    }
    out
}

fn secs(values: &[f64]) -> Vec<Duration> {
    values.iter().map(|s| Duration::from_secs_f64(*s)).collect()
}

#[tokio::test(start_paused = true)]
async fn fires_every_interval_after_the_first_interval() {
    let (container, mut rx) = run_timer(false, |_| Duration::from_millis(100)).await;
    assert_eq!(ticks(&mut rx, 3).await, secs(&[1.0, 2.0, 3.0]));
    container.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_eager_timer_fires_at_once() {
    let (container, mut rx) = run_timer(true, |_| Duration::ZERO).await;
    assert_eq!(ticks(&mut rx, 3).await, secs(&[0.0, 1.0, 2.0]));
    container.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_long_tick_never_overlaps_and_skips_the_due_points_it_overran() {
    // The first tick (at 1 s) takes 2.5 s: nothing fires at 2 s or 3 s, the next tick is at 4 s,
    // on the original phase.
    let (container, mut rx) = run_timer(false, |n| {
        if n == 0 {
            Duration::from_millis(2500)
        } else {
            Duration::ZERO
        }
    })
    .await;
    assert_eq!(ticks(&mut rx, 3).await, secs(&[1.0, 4.0, 5.0]));
    container.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_tick_does_not_stop_the_timer() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = move |_: Worker| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(());
            Err::<(), _>(RemoteError::generic("tick failed"))
        }
    };
    let service = Service::new("service").entrypoint(timer(SECOND, "ping", handler));
    let container = ServiceContainer::new(service, Config::new()).unwrap();
    container.start().await.unwrap();
    for _ in 0..3 {
        rx.recv().await.unwrap();
    }
    container.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stop_waits_for_the_running_tick_and_ends_the_timer() {
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let handler = {
        let finished = finished.clone();
        move |_: Worker| {
            let (finished, started_tx) = (finished.clone(), started_tx.clone());
            async move {
                let _ = started_tx.send(());
                tokio::time::sleep(Duration::from_secs(5)).await;
                finished.store(true, Ordering::SeqCst);
            }
        }
    };
    let service = Service::new("service").entrypoint(timer(SECOND, "ping", handler));
    let container = ServiceContainer::new(service, Config::new()).unwrap();
    container.start().await.unwrap();
    started.recv().await.unwrap();
    let before = Instant::now();
    container.stop().await;
    assert!(
        finished.load(Ordering::SeqCst),
        "stop returned before the tick finished"
    );
    assert_eq!(before.elapsed(), Duration::from_secs(5));
    // No tick starts after the stop.
    assert!(started.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn kill_abandons_the_running_tick() {
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let handler = {
        let finished = finished.clone();
        move |_: Worker| {
            let (finished, started_tx) = (finished.clone(), started_tx.clone());
            async move {
                let _ = started_tx.send(());
                tokio::time::sleep(Duration::from_secs(60)).await;
                finished.store(true, Ordering::SeqCst);
            }
        }
    };
    let service = Service::new("service").entrypoint(timer(SECOND, "ping", handler));
    let container = ServiceContainer::new(service, Config::new()).unwrap();
    container.start().await.unwrap();
    started.recv().await.unwrap();
    let before = Instant::now();
    container.kill().await;
    assert!(before.elapsed() < SECOND);
    assert!(!finished.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_tick_can_be_run_through_the_entrypoint_hook() {
    let handler = |w: Worker| async move {
        Ok::<_, RemoteError>(format!(
            "{} {}",
            w.service_name(),
            w.entrypoint().method_name()
        ))
    };
    let service =
        Service::new("service").entrypoint(timer(Duration::from_secs(3600), "ping", handler));
    let container = ServiceContainer::new(service, Config::new()).unwrap();
    container.start().await.unwrap();
    let result = entrypoint_hook(&container, "ping")
        .unwrap()
        .call(vec![], Default::default())
        .await
        .unwrap();
    assert_eq!(result.unwrap(), "service ping");
    container.stop().await;
}
