//! Reading rows back into the store's types; a value that does not parse is `Corrupt`, never a panic.

use super::*;

pub(super) fn parse<T: std::str::FromStr>(s: String) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| StoreError::Corrupt(e.to_string()))
}

/// A nullable text column parsed into its type.
pub(super) fn opt_parse<T: std::str::FromStr>(
    r: &AnyRow,
    col: &str,
) -> Result<Option<T>, StoreError>
where
    T::Err: std::fmt::Display,
{
    r.try_get::<Option<String>, _>(col)?.map(parse).transpose()
}

/// A counter column as a u32; out-of-range values (never written) are clamped, not a panic.
pub(super) fn small(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

pub(super) fn opt_time(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(from_ms).transpose()
}

pub(super) fn connection_from_row(r: &AnyRow) -> Result<Connection, StoreError> {
    let scopes: String = r.try_get("scopes")?;
    Ok(Connection {
        id: parse(r.try_get("id")?)?,
        provider: parse(r.try_get("provider")?)?,
        name: r.try_get("name")?,
        owner: parse(r.try_get("owner_email")?)?,
        account: r.try_get("account")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        status: parse(r.try_get("status")?)?,
        reason: r.try_get("reason")?,
        since: from_ms(r.try_get("status_since")?)?,
        has_refresh_token: r.try_get::<i64, _>("has_refresh_token")? != 0,
        token_generation: r.try_get("token_generation")?,
        access_expires_at: opt_time(r.try_get("access_expires_at")?)?,
        refresh_expires_at: opt_time(r.try_get("refresh_expires_at")?)?,
        consecutive_failures: small(r.try_get("consecutive_failures")?),
        refresh_uncertain_since: opt_time(r.try_get("refresh_uncertain_since")?)?,
        refresh_interrupted_at: opt_time(r.try_get("refresh_interrupted_at")?)?,
        set_aside: r.try_get("set_aside")?,
        last_check_at: opt_time(r.try_get("last_check_at")?)?,
        next_check_at: from_ms(r.try_get("next_check_at")?)?,
        created_at: from_ms(r.try_get("created_at")?)?,
        external_id: r.try_get("external_id")?,
        metadata: r.try_get("metadata")?,
        credential_kind: r.try_get("credential_kind")?,
        instance_url: r.try_get("instance_url")?,
    })
}

pub(super) fn pipeline_from_row(
    r: &AnyRow,
    connections: Vec<ConnectionId>,
) -> Result<Pipeline, StoreError> {
    let position = |col: &str| -> Result<Option<Position>, StoreError> {
        r.try_get::<Option<String>, _>(col)?.map(parse).transpose()
    };
    Ok(Pipeline {
        id: parse(r.try_get("id")?)?,
        name: r.try_get("name")?,
        state: parse(r.try_get("state")?)?,
        position: position("position")?,
        position_updated_at: opt_time(r.try_get("position_updated_at")?)?,
        paused_at_position: position("paused_at_position")?,
        paused_at: opt_time(r.try_get("paused_at")?)?,
        paused_by: opt_parse(r, "paused_by")?,
        pause_reason: r.try_get("pause_reason")?,
        connections,
        created_at: from_ms(r.try_get("created_at")?)?,
        external_id: r.try_get("external_id")?,
    })
}
