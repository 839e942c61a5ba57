//! The container, runner and testing helpers exercised in process, without a broker, through the
//! same helpers users get (`entrypoint_hook`, `entrypoint_waiter`, `worker_factory`, ...).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nameko_core::testing::{
    TestingError, dummy, entrypoint_hook, entrypoint_waiter, once, restrict_entrypoints,
    worker_factory,
};
use nameko_core::{
    BoxError, Config, Container, ContainerError, ContainerState, DependencyProvider, DirectCall,
    Entrypoint, EntrypointInfo, Extension, RemoteError, RunnerError, Service, ServiceContainer,
    ServiceRunner, Worker, WorkerContext, WorkerResult,
};
use serde_json::{Value, json};

/// A log of lifecycle events shared by the test extensions.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// A custom dependency provider, as a user would write one: holds a greeting prefix and
/// records every hook.
#[derive(Clone)]
struct Greeter {
    prefix: &'static str,
    log: Log,
}

impl Extension for Greeter {
    async fn setup(&self, _: &Container) -> Result<(), BoxError> {
        self.log.push("dependency setup");
        Ok(())
    }
    async fn start(&self, _: &Container) -> Result<(), BoxError> {
        self.log.push("dependency start");
        Ok(())
    }
    async fn stop(&self) {
        self.log.push("dependency stop");
    }
}

impl Greeter {
    fn prefix(&self, _worker: &WorkerContext) -> &'static str {
        self.log.push("prefix read");
        self.prefix
    }
}

impl DependencyProvider for Greeter {
    async fn worker_setup(&self, _: &WorkerContext) {
        self.log.push("worker_setup");
    }
    async fn worker_result(&self, _: &WorkerContext, result: &WorkerResult) {
        self.log.push(format!("worker_result {}", result.is_ok()));
    }
    async fn worker_teardown(&self, _: &WorkerContext) {
        self.log.push("worker_teardown");
    }
}

/// The greeting service's state.
struct Greeting {
    greeter: Greeter,
}

async fn greet(worker: Worker<Greeting>, call: DirectCall) -> Result<String, RemoteError> {
    let prefix = worker.service().greeter.prefix(&worker);
    let name = call
        .args
        .first()
        .and_then(Value::as_str)
        .unwrap_or("nobody");
    Ok(format!("{prefix}, {name}!"))
}

fn greeting_service(log: &Log) -> Service<Greeting> {
    greeting_service_with(Greeter {
        prefix: "Hello",
        log: log.clone(),
    })
}

fn greeting_service_with(greeter: Greeter) -> Service<Greeting> {
    Service::with_state("greeting_service", |deps| Greeting {
        greeter: deps.add("greeter", greeter),
    })
    .entrypoint(dummy("hello", greet))
}

#[tokio::test]
async fn a_custom_dependency_is_reached_through_the_state_and_its_hooks_run_in_nameko_order() {
    let log = Log::default();
    let container = ServiceContainer::new(greeting_service(&log), Config::new()).unwrap();
    container.start().await.unwrap();
    assert_eq!(log.take(), ["dependency setup", "dependency start"]);

    let hook = entrypoint_hook(&container, "hello").unwrap();
    let result = hook
        .call(vec![json!("Matt")], Default::default())
        .await
        .unwrap();
    assert_eq!(result.unwrap(), "Hello, Matt!");
    assert_eq!(
        log.take(),
        [
            "worker_setup",
            "prefix read",
            "worker_result true",
            "worker_teardown"
        ]
    );

    container.stop().await;
    assert_eq!(log.take(), ["dependency stop"]);
    assert_eq!(container.state(), ContainerState::Stopped);
}

#[tokio::test]
async fn a_failing_or_panicking_handler_is_an_error_for_that_call_only() {
    async fn fails(_: Worker, call: DirectCall) -> Result<Value, RemoteError> {
        match call.args.first().and_then(Value::as_str) {
            Some("panic") => panic!("handler blew up"),
            Some("fail") => Err(RemoteError::new("ValueError", "builtins.ValueError", "bad")),
            _ => Ok(json!("fine")),
        }
    }
    let service = Service::new("svc").entrypoint(dummy("work", fails));
    let container = ServiceContainer::new(service, Config::new()).unwrap();
    container.start().await.unwrap();
    let hook = entrypoint_hook(&container, "work").unwrap();

    let panicked = hook
        .call(vec![json!("panic")], Default::default())
        .await
        .unwrap();
    let err = panicked.unwrap_err();
    assert_eq!(err.exc_type, "HandlerPanicked");
    assert_eq!(err.value, "handler blew up");

    let failed = hook
        .call(vec![json!("fail")], Default::default())
        .await
        .unwrap();
    assert_eq!(failed.unwrap_err().exc_path, "builtins.ValueError");

    let fine = hook.call(vec![], Default::default()).await.unwrap();
    assert_eq!(fine.unwrap(), "fine");
    assert_eq!(container.state(), ContainerState::Running);
    container.stop().await;
}

#[tokio::test]
async fn concurrency_never_exceeds_max_workers() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (running, peak) = (running.clone(), peak.clone());
        move |_: Worker, _: DirectCall| {
            let (running, peak) = (running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }
        }
    };
    let service = Service::new("svc").entrypoint(dummy("work", handler));
    let mut config = Config::new();
    config.define("max_workers=3").unwrap();
    let container = ServiceContainer::new(service, config).unwrap();
    container.start().await.unwrap();
    let hook = Arc::new(entrypoint_hook(&container, "work").unwrap());
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let hook = hook.clone();
        calls.spawn(async move {
            hook.call(vec![], Default::default())
                .await
                .unwrap()
                .unwrap()
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    container.stop().await;
}

/// An entrypoint that records its stop and lets a test start workers on it at will.
struct Recorder {
    info: Arc<EntrypointInfo>,
    log: Log,
}

impl Extension for Recorder {
    async fn stop(&self) {
        self.log.push("entrypoint stop");
    }
}

impl Entrypoint for Recorder {
    type State = ();

    fn info(&self) -> &Arc<EntrypointInfo> {
        &self.info
    }
}

#[tokio::test]
async fn graceful_stop_runs_in_nameko_order_and_hands_back_unstarted_work() {
    let log = Log::default();
    let service = Service::new("svc")
        .dependency(
            "greeter",
            Greeter {
                prefix: "Hi",
                log: log.clone(),
            },
        )
        .entrypoint(Recorder {
            info: Arc::new(EntrypointInfo::new("recorder", "work")),
            log: log.clone(),
        });
    let mut config = Config::new();
    config.define("max_workers=1").unwrap();
    let container = ServiceContainer::new(service, config).unwrap();
    container.start().await.unwrap();
    let c = container.container().clone();
    let info = Arc::new(EntrypointInfo::new("recorder", "work"));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let first = c.spawn_worker(&info, Default::default(), Value::Null, {
        let log = log.clone();
        move |_: Worker| async move {
            let _ = started_tx.send(());
            tokio::time::sleep(Duration::from_millis(100)).await;
            log.push("worker finished");
            Ok(Value::Null)
        }
    });
    started_rx.await.unwrap();
    // The only slot is taken: this one waits, and a graceful stop hands it back unstarted.
    let second = c.spawn_worker(&info, Default::default(), Value::Null, |_: Worker| async {
        Ok(Value::Null)
    });
    log.take();
    container.stop().await;
    assert_eq!(log.take(), log_order_expected());
    assert!(first.await.unwrap().is_ok());
    assert_eq!(second.await, Err(nameko_core::WorkerAborted::Stopping));
}

fn log_order_expected() -> Vec<String> {
    [
        "entrypoint stop",
        "worker finished",
        "worker_result true",
        "worker_teardown",
        "dependency stop",
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test]
async fn kill_aborts_running_workers_and_happens_once() {
    let service = Service::new("svc").entrypoint(dummy("slow", |_: Worker, _: DirectCall| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }));
    let container = ServiceContainer::new(service, Config::new()).unwrap();
    container.start().await.unwrap();
    let hook = entrypoint_hook(&container, "slow").unwrap();
    let call = tokio::spawn(async move { hook.call(vec![], Default::default()).await });
    tokio::task::yield_now().await;
    tokio::join!(container.kill(), container.kill());
    container.stop().await;
    assert_eq!(container.state(), ContainerState::Killed);
    assert!(
        container.wait().await.is_ok(),
        "a requested kill is not an error"
    );
    assert!(call.await.unwrap().is_err());
}

/// An entrypoint whose long-running task fails after start.
struct Doomed {
    info: Arc<EntrypointInfo>,
}

impl Extension for Doomed {
    async fn start(&self, container: &Container) -> Result<(), BoxError> {
        container.spawn_managed("consumer", async {
            tokio::task::yield_now().await;
            Err::<(), BoxError>("connection lost".into())
        });
        Ok(())
    }
}

impl Entrypoint for Doomed {
    type State = ();

    fn info(&self) -> &Arc<EntrypointInfo> {
        &self.info
    }
}

#[tokio::test]
async fn a_failing_managed_task_kills_the_container_and_wait_reports_it() {
    let service = Service::new("svc").entrypoint(Doomed {
        info: Arc::new(EntrypointInfo::new("doomed", "x")),
    });
    let container = ServiceContainer::new(service, Config::new()).unwrap();
    container.start().await.unwrap();
    let err = container.wait().await.unwrap_err();
    assert!(matches!(err, ContainerError::TaskFailed { ref task, .. } if task == "consumer"));
    assert_eq!(
        err.to_string(),
        "service `svc`: `consumer` failed: connection lost"
    );
    assert_eq!(container.state(), ContainerState::Killed);
}

#[tokio::test]
async fn the_runner_stops_the_others_when_one_fails_and_reports_it() {
    let log = Log::default();
    let mut runner = ServiceRunner::new(Config::new());
    runner.add_service(greeting_service(&log)).unwrap();
    runner
        .add_service(Service::new("doomed").entrypoint(Doomed {
            info: Arc::new(EntrypointInfo::new("doomed", "x")),
        }))
        .unwrap();
    assert!(matches!(
        runner.add_service(Service::new("doomed")),
        Err(RunnerError::DuplicateService(name)) if name == "doomed"
    ));
    runner.start().await.unwrap();
    let err = runner.wait().await.unwrap_err();
    assert!(err.to_string().contains("connection lost"), "{err}");
    assert_eq!(
        runner.container("greeting_service").unwrap().state(),
        ContainerState::Stopped
    );
}

#[tokio::test]
async fn a_start_failure_names_the_extension_and_kills_the_container() {
    struct Broken;
    impl Extension for Broken {
        async fn setup(&self, _: &Container) -> Result<(), BoxError> {
            Err("database unreachable".into())
        }
    }
    impl DependencyProvider for Broken {}
    let container =
        ServiceContainer::new(Service::new("svc").dependency("db", Broken), Config::new()).unwrap();
    let err = container.start().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "service `svc`: dependency `db` failed to set up: database unreachable"
    );
    assert_eq!(container.state(), ContainerState::Killed);
}

#[tokio::test]
async fn a_fake_in_the_state_and_restrict_entrypoints_edit_a_service_before_start() {
    let real = Log::default();
    let fake = Log::default();
    let ran = Arc::new(AtomicUsize::new(0));
    let service = greeting_service_with(Greeter {
        prefix: "Howdy",
        log: fake.clone(),
    })
    .entrypoint(once("on_start", {
        let ran = ran.clone();
        move |_: Worker<Greeting>| {
            let ran = ran.clone();
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
            }
        }
    }));
    let container = ServiceContainer::new(service, Config::new()).unwrap();
    restrict_entrypoints(&container, &["hello"]).unwrap();
    assert!(matches!(
        restrict_entrypoints(&container, &["missing"]),
        Err(TestingError::UnknownEntrypoint { .. })
    ));
    container.start().await.unwrap();
    assert!(matches!(
        restrict_entrypoints(&container, &["hello"]),
        Err(TestingError::AlreadyStarted(_))
    ));
    let result = entrypoint_hook(&container, "hello")
        .unwrap()
        .call(vec![json!("Ann")], Default::default())
        .await
        .unwrap();
    assert_eq!(result.unwrap(), "Howdy, Ann!");
    assert!(real.take().is_empty(), "the real provider was never built");
    assert!(fake.take().contains(&"prefix read".to_owned()));
    assert!(entrypoint_hook(&container, "on_start").is_err());
    container.stop().await;
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "the restricted entrypoint never fired"
    );
}

#[tokio::test]
async fn entrypoint_waiter_sees_a_worker_after_its_teardown() {
    let log = Log::default();
    let service = greeting_service(&log)
        .entrypoint(once("on_start", |w: Worker<Greeting>| async move {
            Ok::<_, RemoteError>(w.call_id().to_owned())
        }));
    let container = ServiceContainer::new(service, Config::new()).unwrap();
    let mut waiter = entrypoint_waiter(&container, "on_start")
        .unwrap()
        .timeout(Duration::from_secs(5));
    container.start().await.unwrap();
    let event = waiter.wait().await.unwrap();
    let call_id = event.result.clone().unwrap();
    assert_eq!(call_id, event.context.call_id());
    assert!(
        event
            .context
            .call_id()
            .starts_with("greeting_service.on_start.")
    );
    container.stop().await;
}

#[tokio::test(start_paused = true)]
async fn entrypoint_waiter_times_out() {
    let log = Log::default();
    let container = ServiceContainer::new(greeting_service(&log), Config::new()).unwrap();
    let mut waiter = entrypoint_waiter(&container, "hello")
        .unwrap()
        .timeout(Duration::from_secs(2));
    container.start().await.unwrap();
    assert!(matches!(waiter.wait().await, Err(TestingError::Timeout(_))));
    container.stop().await;
}

#[tokio::test]
async fn context_data_reaches_the_worker_and_the_stack_grows() {
    async fn whoami(w: Worker, _: DirectCall) -> Result<Value, RemoteError> {
        Ok(json!({
            "user_id": w.user_id(),
            "language": w.language(),
            "custom": w.data().get("custom"),
            "parent": w.immediate_parent_call_id(),
            "stack": w.call_id_stack(),
        }))
    }
    let container = ServiceContainer::new(
        Service::new("svc").entrypoint(dummy("whoami", whoami)),
        Config::new(),
    )
    .unwrap();
    container.start().await.unwrap();
    let data = json!({"user_id": "u-1", "language": "en-gb", "custom": "c",
                      "call_id_stack": ["caller.m.1"]});
    let result = entrypoint_hook(&container, "whoami")
        .unwrap()
        .context_data(data.as_object().unwrap().clone())
        .call(vec![], Default::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result["user_id"], "u-1");
    assert_eq!(result["language"], "en-gb");
    assert_eq!(result["custom"], "c");
    assert_eq!(result["parent"], "caller.m.1");
    assert_eq!(result["stack"].as_array().unwrap().len(), 2);
    container.stop().await;
}

#[tokio::test]
async fn worker_factory_builds_workers_for_direct_unit_tests() {
    let log = Log::default();
    let service = greeting_service(&log);
    let call = || DirectCall {
        args: vec![json!("Zoé")],
        ..Default::default()
    };
    let worker = worker_factory(&service).worker("hello");
    assert_eq!(worker.call_id().split('.').next(), Some("greeting_service"));
    assert_eq!(greet(worker, call()).await.unwrap(), "Hello, Zoé!");
    let fake = Greeting {
        greeter: Greeter {
            prefix: "Bonjour",
            log: log.clone(),
        },
    };
    let worker = worker_factory(&service).state(fake).worker("hello");
    assert_eq!(greet(worker, call()).await.unwrap(), "Bonjour, Zoé!");
    assert_eq!(log.take(), ["prefix read", "prefix read"]);
}

#[test]
fn a_service_needs_a_name() {
    let err = ServiceContainer::new(Service::new(" "), Config::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "service ` ` is misconfigured: a service needs a non-empty name"
    );
}

#[tokio::test]
async fn a_worker_run_in_place_finishes_when_its_caller_goes_away_and_stop_waits_for_it() {
    let log = Log::default();
    let container = ServiceContainer::new(greeting_service(&log), Config::new()).unwrap();
    container.start().await.unwrap();
    let c = container.container().clone();
    let info = Arc::new(EntrypointInfo::new("dummy", "hello"));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let mut worker = c.run_worker(&info, Default::default(), Value::Null, {
        let log = log.clone();
        move |_: Worker<Greeting>| async move {
            let _ = started_tx.send(());
            let _ = release_rx.await;
            log.push("method finished");
            Ok(Value::Null)
        }
    });
    // Polled until the method is under way, then dropped, as hyper drops a request's future
    // when its client disconnects.
    tokio::select! {
        _ = &mut worker => panic!("the method cannot have finished"),
        started = started_rx => started.unwrap(),
    }
    assert!(!worker.is_finished());
    drop(worker);
    release_tx.send(()).unwrap();
    container.stop().await;
    let entries = log.take();
    let at = |entry: &str| entries.iter().position(|e| e == entry);
    let (finished, teardown, stopped) = (
        at("method finished").unwrap(),
        at("worker_teardown").unwrap(),
        at("dependency stop").unwrap(),
    );
    assert!(
        finished < teardown && teardown < stopped,
        "the dropped worker ran to its end before the dependencies stopped: {entries:?}"
    );
}

#[tokio::test]
async fn a_worker_run_in_place_is_aborted_by_a_kill() {
    let container = ServiceContainer::new(Service::new("svc"), Config::new()).unwrap();
    container.start().await.unwrap();
    let info = Arc::new(EntrypointInfo::new("dummy", "slow"));
    let worker = container.container().run_worker(
        &info,
        Default::default(),
        Value::Null,
        |_: Worker| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Value::Null)
        },
    );
    let running = tokio::spawn(worker);
    tokio::task::yield_now().await;
    container.kill().await;
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .unwrap()
            .unwrap(),
        Err(nameko_core::WorkerAborted::Killed)
    );
}

/// A dependency whose `worker_teardown` panics.
struct PanickingTeardown;

impl Extension for PanickingTeardown {}

impl DependencyProvider for PanickingTeardown {
    async fn worker_teardown(&self, _: &WorkerContext) {
        panic!("teardown broke");
    }
}

#[tokio::test]
async fn a_panic_around_the_method_ends_the_worker_not_the_task_awaiting_it() {
    let service = Service::new("svc").dependency("broken", PanickingTeardown);
    let container = ServiceContainer::new(service, Config::new()).unwrap();
    container.start().await.unwrap();
    let info = Arc::new(EntrypointInfo::new("dummy", "method"));
    let c = container.container();
    let ran = c
        .run_worker(&info, Default::default(), Value::Null, |_: Worker| async {
            Ok(json!("done"))
        })
        .await;
    assert_eq!(ran, Err(nameko_core::WorkerAborted::Panicked));
    let spawned = c
        .spawn_worker(&info, Default::default(), Value::Null, |_: Worker| async {
            Ok(json!("done"))
        })
        .await;
    assert_eq!(spawned, Err(nameko_core::WorkerAborted::Panicked));
    container.stop().await;
    assert_eq!(container.state(), ContainerState::Stopped);
}
