//! Reading a request's parts into checked values: ids in the path, query parameters, an optional
//! JSON body. A bad value is a problem document naming it.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ApiError;
use super::problem::{body_error, is_json, parse_json};

/// An id from the path: one that does not parse names nothing we have (404).
pub fn id<T: FromStr>(what: &str, text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::NotFound(format!("no {what} with id {text:?}")))
}

/// The query parameters, each at most once; names not in `known` are refused.
pub struct Params(BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::Malformed(format!("the query string: {e}")))?;
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::invalid(k, "given more than once"));
            }
        }
        Ok(Params(map))
    }
}

impl Params {
    /// Refuses a parameter this call does not take (a typo would otherwise filter nothing).
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ApiError::invalid(
                k.clone(),
                format!(
                    "not a parameter of this call (it takes: {})",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    pub fn parsed<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        self.0
            .get(name)
            .map(|v| v.parse::<T>().map_err(|e| ApiError::invalid(name, e)))
            .transpose()
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// A JSON body that may be left out (empty, with or without a content type): the call's
/// defaults then apply.
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(req.headers());
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(body_error)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&body).map(|v| OptionalJson(Some(v)))
    }
}

/// A length of time: whole seconds, or text such as "5m" or "90s".
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "DurationInput")]
#[schema(value_type = String, example = "5m")]
pub struct Seconds(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationInput {
    Seconds(u64),
    Text(String),
}

impl TryFrom<DurationInput> for Seconds {
    type Error = String;
    fn try_from(v: DurationInput) -> Result<Self, String> {
        match v {
            DurationInput::Seconds(s) => Ok(Seconds(Duration::from_secs(s))),
            DurationInput::Text(t) => t.parse(),
        }
    }
}

impl FromStr for Seconds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(secs) = s.trim().parse::<u64>() {
            return Ok(Seconds(Duration::from_secs(secs)));
        }
        humantime::parse_duration(s.trim())
            .map(Seconds)
            .map_err(|e| format!("expected seconds or a duration such as \"5m\": {e}"))
    }
}

/// Text a platform names something by: 1 to 200 printable characters.
pub fn external_id(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) if (1..=200).contains(&v.len()) && crate::domain::is_plain_text(&v) => Ok(Some(v)),
        Some(_) => Err(ApiError::invalid(
            field,
            "expected 1 to 200 printable characters",
        )),
    }
}

/// How many items a page holds: `limit`, 1 to 500, 100 when not given.
pub fn page_size(params: &Params) -> Result<u32, ApiError> {
    match params.parsed::<u32>("limit")? {
        None => Ok(100),
        Some(n @ 1..=500) => Ok(n),
        Some(_) => Err(ApiError::invalid("limit", "must be between 1 and 500")),
    }
}
