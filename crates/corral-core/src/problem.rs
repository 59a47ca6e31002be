//! Problem codes: every error the API can answer with, its HTTP status and title.
//! The `type` URI of a problem is derived from the code.

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
    ValidationError = "validation_error", 400, "Validation Error";
    InvalidRequest = "invalid_request", 400, "Invalid Request";
    MalformedJson = "malformed_json", 400, "Malformed JSON";
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
    PasswordAlreadySet = "password_already_set", 409, "Password Already Set";
    RunNotCancellable = "run_not_cancellable", 409, "Run Not Cancellable";
    RunsActive = "runs_active", 409, "Runs Still Active";
    WebhookLimitReached = "webhook_limit_reached", 409, "Webhook Limit Reached";
    CredentialInUse = "credential_in_use", 409, "Credential In Use";
    OperationNotAllowed = "operation_not_allowed", 403, "Operation Not Allowed";
    RerunAgentMismatch = "rerun_agent_mismatch", 409, "Rerun Of Another Agent";
    NoPublishedVersion = "no_published_version", 404, "No Published Version";
    ConnectionMissing = "connection_missing", 412, "Connection Missing";
    ModelNotConfigured = "model_not_configured", 422, "Model Not Configured";
    ModelNeedsReconnection = "model_needs_reconnection", 409, "Model Needs Reconnection";
    NeedsReconnection = "needs_reconnection", 412, "Connection Needs Reconnection";
    OauthClientMissing = "oauth_client_missing", 422, "OAuth Client Missing";
    OauthStateInvalid = "oauth_state_invalid", 400, "OAuth State Invalid";
    UpstreamError = "upstream_error", 502, "Upstream Error";
    InvalidSignature = "invalid_signature", 401, "Invalid Signature";
    RunSinkClosed = "run_sink_closed", 410, "Run Sink Closed";
    RunSinkExpired = "run_sink_expired", 410, "Run Sink Expired";
    CredentialRevoked = "credential_revoked", 410, "Credential Revoked";
    ConcurrencyLimit = "concurrency_limit", 429, "Too Many Active Runs";
    InvitationExpired = "invitation_expired", 410, "Invitation Expired";
    InvitationAccepted = "invitation_accepted", 410, "Invitation Already Accepted";
    PayloadTooLarge = "payload_too_large", 413, "Payload Too Large";
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.code()), "duplicate {}", c.code());
            assert!(c
                .code()
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch == '_'));
            assert!((400..600).contains(&c.status()));
        }
        assert_eq!(
            ErrorCode::IdempotencyConflict.type_uri(),
            "https://docs.corral.dev/errors/idempotency-conflict"
        );
    }
}
