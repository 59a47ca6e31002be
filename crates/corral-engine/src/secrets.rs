//! `corral secrets rotate`: every stored secret re-sealed under the primary key
//! (run sink secrets, model provider keys and OAuth tokens, connection credentials,
//! OAuth client secrets, proxy URLs, webhook signing secrets), with the associated data
//! each was sealed with.

/// What `corral secrets rotate` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RotateReport {
    pub resealed: u64,
    pub failed: u64,
}

/// Re-seals every stored secret that is not under the primary key, in batches, so an
/// interrupted rotation resumes where it stopped (rows already resealed are skipped,
/// and a row changed meanwhile is left for the next pass).
pub async fn rotate_secrets(
    db: &corral_store::Db,
    keyring: &corral_config::crypto::Keyring,
) -> anyhow::Result<RotateReport> {
    use corral_store::sealed;
    let mut report = RotateReport::default();
    let current = format!("v1:{}:%", keyring.primary_id());
    type Aad = fn(&str) -> String;
    let columns: [(sealed::Column, Aad); 6] = [
        (sealed::RUN_SINK_SECRETS, crate::runs::sink_aad),
        (sealed::MODEL_PROVIDER_KEYS, corral_connect::models::key_aad),
        (
            sealed::MODEL_PROVIDER_REFRESH_TOKENS,
            corral_connect::model_oauth::refresh_aad,
        ),
        (
            sealed::CONNECTION_CREDENTIALS,
            corral_connect::integrations::credentials_aad,
        ),
        (
            sealed::OAUTH_CLIENT_SECRETS,
            corral_connect::integrations::client_secret_aad,
        ),
        (sealed::ORG_PROXY_URLS, corral_connect::proxies::url_aad),
    ];
    for (column, aad) in columns {
        // Paged by id: a value that cannot be opened is reported and passed over.
        let mut after = String::new();
        loop {
            let mut conn = db.conn().await?;
            let rows = sealed::stale(&mut conn, column, &current, &after, 500).await?;
            let Some((last, _)) = rows.last() else { break };
            after = last.clone();
            for (id, old) in rows {
                match keyring.reseal(&old, &aad(&id)) {
                    Ok(new) => {
                        if sealed::swap(&mut conn, column, &id, &old, &new).await? {
                            report.resealed += 1;
                        }
                    }
                    Err(e) => {
                        tracing::error!(table = column.table, id = %id, error = %e, "cannot reseal a stored secret");
                        report.failed += 1;
                    }
                }
            }
        }
    }
    // Webhook signing secrets (primary and, during an overlap, the previous one).
    let mut failed_hooks: std::collections::HashSet<String> = Default::default();
    loop {
        let mut conn = db.conn().await?;
        let rows = corral_store::webhooks::secrets_to_reseal(&mut conn, &current, 500).await?;
        let mut progressed = false;
        for (id, secret, previous) in rows {
            if failed_hooks.contains(&id) {
                continue;
            }
            let aad = crate::webhooks::secret_aad(&id);
            let resealed = keyring.reseal(&secret, &aad).and_then(|s| {
                previous
                    .as_deref()
                    .map(|p| keyring.reseal(p, &aad))
                    .transpose()
                    .map(|p| (s, p))
            });
            match resealed {
                Ok((s, p)) => {
                    if corral_store::webhooks::store_resealed(
                        &mut conn,
                        &id,
                        &secret,
                        &s,
                        p.as_deref(),
                    )
                    .await?
                    {
                        report.resealed += 1;
                        progressed = true;
                    }
                }
                Err(e) => {
                    tracing::error!(webhook_id = %id, error = %e, "cannot reseal a webhook secret");
                    failed_hooks.insert(id);
                    report.failed += 1;
                }
            }
        }
        if !progressed {
            break;
        }
    }
    Ok(report)
}
