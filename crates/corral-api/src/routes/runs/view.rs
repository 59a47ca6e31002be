use super::*;

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
    pub input: Option<Value>,
    /// `{"output": …}` once an output was emitted.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub artifacts: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub checkpoint: Option<Value>,
    /// Error message of a failed run.
    pub error: Option<String>,
    /// Machine code of the error (`output_schema_mismatch`, `stalled`, …) and details.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub generation: Option<Value>,
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
    pub token_usage: Option<Value>,
    pub version_label: Option<String>,
    pub version_ref: String,
    pub proxy_label: Option<String>,
    pub model_label: Option<String>,
    pub model_source: Option<String>,
    pub runner_name: Option<String>,
    /// `docker` | `process` once the run has a sandbox.
    pub runner_kind: Option<String>,
    pub agent_scope: Option<String>,
    pub agent_name: Option<String>,
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

impl From<&store::Run> for RunView {
    fn from(r: &store::Run) -> RunView {
        let metadata = r.error_code.as_ref().map(|code| {
            json!({
                "error_code": code,
                "error_details": parse_json(&r.error_details),
            })
        });
        RunView {
            id: r.id.clone().into(),
            package_id: r.package_id.clone(),
            user_id: r.user_id.clone(),
            end_user_id: r.end_user_id.clone(),
            api_key_id: r.api_key_id.clone(),
            org_id: r.org_id.clone().into(),
            application_id: r.application_id.clone().into(),
            schedule_id: r.schedule_id.clone(),
            status: r.status.to_string(),
            input: parse_json(&r.input),
            result: parse_json(&r.result),
            artifacts: None,
            checkpoint: None,
            error: r.error.clone(),
            metadata,
            generation: parse_json(&r.generation),
            generation_override: None,
            started_at: Some(to_rfc3339(r.created_at)),
            completed_at: r.completed_at.map(to_rfc3339),
            duration: r.duration_ms,
            cost: None,
            cost_pricing_status: None,
            run_number: Some(r.run_number),
            token_usage: parse_json(&r.token_usage),
            version_label: r.version_label.clone(),
            version_ref: r.version_ref.clone(),
            proxy_label: None,
            model_label: r.model_label.clone(),
            model_source: r.model_source.clone(),
            runner_name: r.runner_name.clone(),
            runner_kind: r.runner_kind.clone(),
            agent_scope: r.agent_scope.clone(),
            agent_name: r.agent_name.clone(),
            run_origin: Some("platform".into()),
            context_snapshot: None,
            model_credential_id: None,
            connection_overrides: None,
            dependency_overrides: None,
            user_name: r.user_name.clone(),
            end_user_name: r.end_user_name.clone(),
            api_key_name: r.api_key_name.clone(),
            schedule_name: r.schedule_name.clone(),
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
