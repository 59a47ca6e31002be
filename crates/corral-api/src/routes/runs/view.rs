use super::*;
use serde_json::value::RawValue;

// ---- the run object ---------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentCounts {
    pub input: i64,
    pub output: i64,
}

/// A run, as every run endpoint returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub id: String,
    #[serde(rename = "packageId")]
    pub package_id: Option<String>,
    #[serde(rename = "userId")]
    pub user_id: Option<String>,
    #[serde(rename = "endUserId")]
    pub end_user_id: Option<String>,
    #[serde(rename = "apiKeyId")]
    pub api_key_id: Option<String>,
    #[serde(rename = "orgId")]
    pub org_id: String,
    #[serde(rename = "applicationId")]
    pub application_id: String,
    #[serde(rename = "scheduleId")]
    pub schedule_id: Option<String>,
    #[schema(value_type = String, pattern = "^(pending|running|success|failed|timeout|cancelled)$")]
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub input: Option<Box<RawValue>>,
    /// `{"output": …}` once an output was emitted.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Box<RawValue>>,
    #[schema(value_type = Option<Object>)]
    pub artifacts: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub checkpoint: Option<Value>,
    /// Error message of a failed run.
    pub error: Option<String>,
    /// Machine code of the error (`output_schema_mismatch`, `stalled`, …) and details.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<ErrorMetadata>,
    #[schema(value_type = Option<Object>)]
    pub generation: Option<Box<RawValue>>,
    #[schema(value_type = Option<Object>)]
    pub generation_override: Option<Value>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    /// Milliseconds.
    pub duration: Option<i64>,
    pub cost: Option<f64>,
    pub cost_pricing_status: Option<String>,
    #[serde(rename = "runNumber")]
    pub run_number: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub token_usage: Option<Box<RawValue>>,
    pub version_label: Option<String>,
    pub version_ref: String,
    pub proxy_label: Option<String>,
    pub model_label: Option<String>,
    pub model_source: Option<String>,
    pub runner_name: Option<String>,
    /// `docker` | `process` once the run has a sandbox; a remote run's
    /// `X-Appstrate-Runner-Kind`.
    pub runner_kind: Option<String>,
    pub agent_scope: Option<String>,
    pub agent_name: Option<String>,
    /// `platform` (a sandbox of this deployment) or `remote` (the caller's host).
    #[serde(rename = "runOrigin")]
    pub run_origin: Option<String>,
    #[serde(rename = "contextSnapshot")]
    #[schema(value_type = Option<Object>)]
    pub context_snapshot: Option<Value>,
    #[serde(rename = "modelCredentialId")]
    pub model_credential_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub connection_overrides: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub dependency_overrides: Option<Value>,
    pub user_name: Option<String>,
    pub end_user_name: Option<String>,
    pub api_key_name: Option<String>,
    pub schedule_name: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub connections_used: Option<Value>,
    pub package_ephemeral: bool,
    pub unread: bool,
    pub document_counts: DocumentCounts,
    pub primary_document_id: Option<String>,
}

pub(super) fn parse_json(s: &Option<String>) -> Option<Value> {
    s.as_deref().and_then(|t| serde_json::from_str(t).ok())
}

/// A stored JSON column as it is, validated but not parsed into a tree (`None` when
/// absent or not JSON, as [`parse_json`] reads it). Stored JSON is written compact
/// with sorted keys, so the bytes are the ones a parsed `Value` would print.
fn raw_json(s: Option<String>) -> Option<Box<RawValue>> {
    s.and_then(|t| RawValue::from_string(t).ok())
}

/// `metadata` of a run that failed with a machine code.
#[derive(Debug, Serialize)]
pub struct ErrorMetadata {
    pub error_code: String,
    pub error_details: Option<Box<RawValue>>,
}

impl From<&store::Run> for RunView {
    fn from(r: &store::Run) -> RunView {
        RunView::from(r.clone())
    }
}

impl From<store::Run> for RunView {
    fn from(r: store::Run) -> RunView {
        let metadata = r.error_code.map(|code| ErrorMetadata {
            error_code: code,
            error_details: raw_json(r.error_details),
        });
        RunView {
            id: r.id.into(),
            package_id: r.package_id,
            user_id: r.user_id,
            end_user_id: r.end_user_id,
            api_key_id: r.api_key_id,
            org_id: r.org_id.into(),
            application_id: r.application_id.into(),
            schedule_id: r.schedule_id,
            status: r.status.to_string(),
            input: raw_json(r.input),
            result: raw_json(r.result),
            artifacts: None,
            checkpoint: None,
            error: r.error,
            metadata,
            generation: raw_json(r.generation),
            generation_override: None,
            started_at: Some(to_rfc3339(r.created_at)),
            completed_at: r.completed_at.map(to_rfc3339),
            duration: r.duration_ms,
            cost: None,
            cost_pricing_status: None,
            run_number: Some(r.run_number),
            token_usage: raw_json(r.token_usage),
            version_label: r.version_label,
            version_ref: r.version_ref,
            proxy_label: r.proxy_label,
            model_label: r.model_label,
            model_source: r.model_source,
            runner_name: r.runner_name,
            runner_kind: r.runner_kind,
            agent_scope: r.agent_scope,
            agent_name: r.agent_name,
            run_origin: Some(r.origin),
            context_snapshot: parse_json(&r.context_snapshot),
            model_credential_id: None,
            connection_overrides: None,
            dependency_overrides: None,
            user_name: r.user_name,
            end_user_name: r.end_user_name,
            api_key_name: r.api_key_name,
            schedule_name: r.schedule_name,
            connections_used: None,
            package_ephemeral: r.kind == "inline",
            unread: r.unread,
            document_counts: DocumentCounts {
                input: 0,
                output: 0,
            },
            primary_document_id: None,
        }
    }
}

/// The run object as JSON (webhook payloads carry it; see [`corral_engine::RunObject`]).
pub fn run_object(r: &store::Run) -> Value {
    serde_json::to_value(RunView::from(r)).unwrap_or(Value::Null)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<RunView>,
    pub total: i64,
    pub has_more: bool,
}
