//! Problems: every error the API can answer with ([`ErrorCode`]: its HTTP status and
//! title; the `type` URI is derived from the code), and [`Problem`], the error the
//! services return. The HTTP layer renders a `Problem` as RFC 9457 problem+json;
//! nothing here knows about HTTP beyond the status number.

macro_rules! codes {
    ($($variant:ident = $code:literal, $status:literal, $title:literal;)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $($variant),+ }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The snake_case machine code.
            pub fn code(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),+ }
            }

            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status),+ }
            }

            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title),+ }
            }
        }
    };
}

codes! {
    ValidationError = "validation_failed", 400, "Validation Failed";
    InvalidRequest = "invalid_request", 400, "Invalid Request";
    MalformedJson = "malformed_json", 400, "Malformed JSON";
    ChecksumMismatch = "checksum_mismatch", 400, "Checksum Mismatch";
    HeaderNotAllowed = "header_not_allowed", 400, "Header Not Allowed";
    UnsupportedApiVersion = "unsupported_api_version", 400, "Unsupported API Version";
    IdempotencyNotSupported = "idempotency_not_supported", 400, "Idempotency Not Supported";
    Unauthorized = "unauthorized", 401, "Unauthorized";
    InvalidCredentials = "invalid_credentials", 401, "Invalid Credentials";
    Forbidden = "forbidden", 403, "Forbidden";
    NotFound = "not_found", 404, "Not Found";
    RouteNotFound = "route_not_found", 404, "Route Not Found";
    MethodNotAllowed = "method_not_allowed", 405, "Method Not Allowed";
    Conflict = "conflict", 409, "Conflict";
    EmailTaken = "email_taken", 409, "Email Already Registered";
    SlugTaken = "slug_taken", 409, "Slug Already Taken";
    ExternalIdTaken = "external_id_taken", 409, "External ID Taken";
    AlreadyMember = "already_member", 409, "Already A Member";
    IdempotencyInProgress = "idempotency_in_progress", 409, "Idempotency In Progress";
    VersionExists = "version_exists", 409, "Version Exists";
    PackageInUse = "package_in_use", 409, "Package In Use";
    LockConflict = "lock_conflict", 409, "Edited Concurrently";
    ArchiveInvalid = "archive_invalid", 400, "Invalid Package Archive";
    NameCollision = "name_collision", 400, "Name Collision";
    PackageArchiveUnreadable = "package_archive_unreadable", 422, "Package Archive Unreadable";
    InvalidUrl = "INVALID_URL", 400, "Invalid URL";
    GithubError = "GITHUB_ERROR", 400, "GitHub Import Failed";
    PasswordAlreadySet = "password_already_set", 409, "Password Already Set";
    RunNotCancellable = "run_not_cancellable", 409, "Run Not Cancellable";
    RunDefinitionGone = "run_definition_gone", 409, "Run Definition Gone";
    RunNotRunning = "run_not_running", 409, "Run Not Running";
    MessageReplayed = "message_replayed", 409, "Message Replayed";
    RunsActive = "runs_active", 409, "Runs Still Active";
    WebhookLimitReached = "webhook_limit_reached", 409, "Webhook Limit Reached";
    CredentialInUse = "credential_in_use", 409, "Credential In Use";
    OperationNotAllowed = "operation_not_allowed", 403, "Operation Not Allowed";
    RerunAgentMismatch = "rerun_agent_mismatch", 409, "Rerun Of Another Agent";
    NoPublishedVersion = "no_published_version", 404, "No Published Version";
    ConnectionMissing = "connection_missing", 412, "Connection Missing";
    ModelNotConfigured = "model_not_configured", 422, "Model Not Configured";
    ModelNeedsReconnection = "model_needs_reconnection", 409, "Model Needs Reconnection";
    ProxyUnavailable = "proxy_unavailable", 422, "Proxy Unavailable";
    NeedsReconnection = "needs_reconnection", 412, "Connection Needs Reconnection";
    OauthClientMissing = "oauth_client_missing", 422, "OAuth Client Missing";
    OauthStateInvalid = "oauth_state_invalid", 400, "OAuth State Invalid";
    UpstreamError = "upstream_error", 502, "Upstream Error";
    InvalidSignature = "invalid_signature", 401, "Invalid Signature";
    RunSinkClosed = "run_sink_closed", 410, "Run Sink Closed";
    RunSinkExpired = "run_sink_expired", 410, "Run Sink Expired";
    CredentialRevoked = "credential_revoked", 410, "Credential Revoked";
    PairingExpiredOrConsumed = "pairing_expired_or_consumed", 410, "Pairing Expired Or Consumed";
    OauthNeedsReconnection = "OAUTH_CONNECTION_NEEDS_RECONNECTION", 410, "OAuth Connection Needs Reconnection";
    OauthRefreshRevoked = "OAUTH_REFRESH_REVOKED", 410, "OAuth Refresh Revoked";
    ModelApiUnsupported = "model_api_unsupported", 422, "Model API Unsupported";
    ConcurrencyLimit = "concurrency_limit", 429, "Too Many Active Runs";
    InvitationExpired = "invitation_expired", 410, "Invitation Expired";
    BootstrapUnavailable = "bootstrap_unavailable", 410, "Bootstrap Unavailable";
    InvitationAccepted = "invitation_accepted", 410, "Invitation Already Accepted";
    PayloadTooLarge = "payload_too_large", 413, "Payload Too Large";
    UriTooLong = "uri_too_long", 414, "URI Too Long";
    HeadersTooLarge = "headers_too_large", 431, "Request Header Fields Too Large";
    UnsupportedMediaType = "unsupported_media_type", 415, "Unsupported Media Type";
    IdempotencyConflict = "idempotency_conflict", 422, "Idempotency Conflict";
    DependencyUnresolved = "dependency_unresolved", 422, "Dependency Unresolved";
    RateLimited = "rate_limited", 429, "Rate Limited";
    InternalError = "internal_error", 500, "Internal Server Error";
    BundleIntegrityMismatch = "bundle_integrity_mismatch", 500, "Bundle Integrity Mismatch";
    ServiceUnavailable = "service_unavailable", 503, "Service Unavailable";
    Starting = "starting", 503, "Starting";
    ShuttingDown = "shutting_down", 503, "Shutting Down";
    DatabaseUnavailable = "database_unavailable", 503, "Database Unavailable";
}

impl ErrorCode {
    /// `https://docs.corral.dev/errors/<code-with-dashes>`.
    pub fn type_uri(self) -> String {
        format!(
            "https://docs.corral.dev/errors/{}",
            self.code().replace('_', "-")
        )
    }
}

/// One field-level validation failure.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
    /// Set on `needs_reconnection` and `connection_not_found`: the connection
    /// concerned (re-authorize it in place by passing it as `connection_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            code: code.to_owned(),
            message: message.into(),
            connection_id: None,
        }
    }

    pub fn with_connection(mut self, id: impl Into<String>) -> FieldError {
        self.connection_id = Some(id.into());
        self
    }
}

/// A service error: a code and what the client may be told. Boxed so that
/// `Result<T, Problem>` stays one pointer wide on the happy path; fields are reached
/// through `Deref`/`DerefMut`.
#[derive(Debug)]
pub struct Problem(Box<ProblemParts>);

#[derive(Debug)]
pub struct ProblemParts {
    pub code: ErrorCode,
    pub detail: String,
    pub param: Option<String>,
    pub retry_after: Option<u64>,
    pub errors: Vec<FieldError>,
    /// Response headers the problem needs (`WWW-Authenticate` on a 401).
    pub headers: Vec<(&'static str, String)>,
    /// Internal cause, logged for 5xx, never sent.
    pub source: Option<anyhow::Error>,
}

pub type ProblemResult<T> = Result<T, Problem>;

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Problem {
        Problem(Box::new(ProblemParts {
            code,
            detail: detail.into(),
            param: None,
            retry_after: None,
            errors: Vec::new(),
            headers: Vec::new(),
            source: None,
        }))
    }

    pub fn not_found(what: &str) -> Problem {
        Problem::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(ErrorCode::Forbidden, detail)
    }

    /// A 401 with its `WWW-Authenticate` challenge.
    pub fn unauthorized(detail: impl Into<String>, credential_presented: bool) -> Problem {
        let challenge = if credential_presented {
            "Bearer error=\"invalid_token\""
        } else {
            "Bearer"
        };
        Problem::new(ErrorCode::Unauthorized, detail)
            .with_header("www-authenticate", challenge.to_owned())
    }

    pub fn invalid_param(param: &str, detail: impl Into<String>) -> Problem {
        let mut e = Problem::new(ErrorCode::InvalidRequest, detail);
        e.param = Some(param.to_owned());
        e
    }

    /// A 400 `validation_failed` (the reference's code) listing every offending field.
    pub fn validation(errors: Vec<FieldError>) -> Problem {
        let detail = match errors.as_slice() {
            [] => "the request is invalid".to_owned(),
            [one] => format!("{}: {}", one.field, one.message),
            [first, rest @ ..] => {
                format!("{}: {} (+{} more)", first.field, first.message, rest.len())
            }
        };
        let mut e = Problem::new(ErrorCode::ValidationError, detail);
        e.param = errors.first().map(|f| f.field.clone());
        e.errors = errors;
        e
    }

    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Problem {
        Problem::validation(vec![FieldError::new(field, code, message)])
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Problem {
        let mut e = Problem::new(
            ErrorCode::InternalError,
            "An unexpected error occurred. Please try again or contact support.",
        );
        e.source = Some(source.into());
        e
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Problem {
        self.headers.push((name, value));
        self
    }

    pub fn into_parts(self) -> ProblemParts {
        *self.0
    }
}

impl std::ops::Deref for Problem {
    type Target = ProblemParts;
    fn deref(&self) -> &ProblemParts {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemParts {
        &mut self.0
    }
}

impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Problem {
        Problem::internal(e)
    }
}

impl std::error::Error for Problem {}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.code(), self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.code()), "duplicate {}", c.code());
            // The reference's GitHub-import and OAuth-token codes are upper case;
            // clients match them.
            let upper = [
                ErrorCode::InvalidUrl,
                ErrorCode::GithubError,
                ErrorCode::OauthNeedsReconnection,
                ErrorCode::OauthRefreshRevoked,
            ]
            .contains(c);
            assert!(c.code().chars().all(|ch| if upper {
                ch.is_ascii_uppercase() || ch == '_'
            } else {
                ch.is_ascii_lowercase() || ch == '_'
            }));
            assert!((400..600).contains(&c.status()));
        }
        assert_eq!(
            ErrorCode::IdempotencyConflict.type_uri(),
            "https://docs.corral.dev/errors/idempotency-conflict"
        );
    }
}
