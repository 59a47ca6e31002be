//! Integration tests: the real `corral-agent` binary as a process, a fake sidecar in
//! the test, and the scripted mock LLM behind it.

mod fake_sidecar;
mod scenarios;

use std::process::Stdio;
use std::time::Duration;

use corral_mockllm::{MockLlm, Turn};
use corral_protocol::{AgentModel, AgentTask, CloudEvent, EventType, Limits, ModelApi, RunResult};
use fake_sidecar::FakeSidecar;
use serde_json::Value;
use tokio::process::{Child, Command};

/// A value in the agent's environment that must never reach the model.
pub const CANARY: &str = "canary-7f3a-do-not-leak";

pub struct Harness {
    pub mock: MockLlm,
    pub sidecar: FakeSidecar,
    pub workspace: tempfile::TempDir,
    pub agent: Child,
    pub api: ModelApi,
}

impl Harness {
    /// Starts the mock, the fake sidecar and the agent (before any task exists, as
    /// in the warm pool).
    pub async fn start(api: ModelApi, script: Vec<Turn>) -> Harness {
        let mock = MockLlm::start(script).await.unwrap();
        let upstream = match api {
            ModelApi::Openai => mock.openai_base_url(),
            ModelApi::Anthropic => mock.anthropic_base_url(),
        };
        let sidecar = FakeSidecar::start(api, upstream).await;
        let workspace = tempfile::tempdir().unwrap();
        let log = if std::env::var_os("CORRAL_AGENT_TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let agent = Command::new(env!("CARGO_BIN_EXE_corral-agent"))
            .env("CORRAL_SIDECAR_URL", &sidecar.url)
            .env("CORRAL_WORKSPACE", workspace.path())
            .env("CORRAL_HEARTBEAT_SECS", "1")
            .env("CORRAL_TASK_WAIT_SECS", "1")
            .env("CORRAL_TEST_CANARY", CANARY)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Harness {
            mock,
            sidecar,
            workspace,
            agent,
            api,
        }
    }

    pub fn task(&self, output_schema: Option<Value>, limits: Limits) -> AgentTask {
        AgentTask {
            run_id: "run_test_1".into(),
            prompt: "Greet the world and report.".into(),
            input: serde_json::json!({"who": "world"}),
            output_schema,
            skills: vec![corral_protocol::Skill {
                name: "greeting".into(),
                description: "How to greet".into(),
                content: "Always say hello.".into(),
            }],
            model: AgentModel {
                api: self.api,
                model: "mock-model-1".into(),
            },
            limits,
            pinned: Vec::new(),
        }
    }

    /// Waits for the agent to poll at least once (proving it waits for a task), then
    /// configures the task.
    pub async fn configure(&self, task: AgentTask) {
        self.sidecar
            .wait_for(Duration::from_secs(20), |r| {
                (r.task_polls >= 1).then_some(())
            })
            .await;
        self.sidecar.set_task(task);
    }

    /// Waits for the finalize message and the process exit; returns both.
    pub async fn finish(&mut self) -> (RunResult, i32) {
        let result = self.sidecar.wait_finalize().await;
        let status = tokio::time::timeout(Duration::from_secs(20), self.agent.wait())
            .await
            .expect("agent did not exit")
            .unwrap();
        let rec = self.sidecar.recorded();
        assert!(rec.violations.is_empty(), "{:?}", rec.violations);
        assert_eq!(rec.finalize.len(), 1, "exactly one finalize");
        assert_sequences(&rec.events, result.last_sequence);
        (result, status.code().unwrap_or(-1))
    }
}

/// Events are numbered 1..=n without gap or repeat, and finalize names the last.
pub fn assert_sequences(events: &[CloudEvent], last: u64) {
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected);
    assert_eq!(last, events.len() as u64);
    for e in events {
        assert_eq!(e.source, "/afps/runs/run_test_1");
        assert_eq!(e.specversion, "1.0");
        e.payload().expect("data matches type");
    }
}

pub fn events_of(events: &[CloudEvent], t: EventType) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.event_type == t)
        .map(|e| e.data.clone())
        .collect()
}
