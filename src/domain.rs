//! Newtypes parsed at the boundary: once a value has one of these types it is known to be well formed.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Why a value from outside was refused; the message is meant for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl ParseError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Lower-case letters and digits without the look-alikes (0/o, 1/l/i), so ids read aloud or typed survive.
const ID_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const ID_RANDOM_LEN: usize = 14;
/// `ID_ALPHABET` as a table by byte: every claimed row's id is checked against it.
const IN_ID_ALPHABET: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < ID_ALPHABET.len() {
        table[ID_ALPHABET[i] as usize] = true;
        i += 1;
    }
    table
};

/// The conversions every string newtype shares; parsing (`FromStr`) is each type's own.
macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, ParseError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        // In the API's OpenAPI document: a string (its rules are in its parser).
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[doc = concat!("Identifier of a ", $what, ": `", $prefix, "` followed by random characters.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            const PREFIX: &'static str = $prefix;

            /// A fresh random id (about 69 bits: collisions are not a practical concern, and the
            /// store's primary key would refuse one anyway).
            pub fn generate() -> Self {
                let mut rng = rand::thread_rng();
                let mut s = String::with_capacity(Self::PREFIX.len() + ID_RANDOM_LEN);
                s.push_str(Self::PREFIX);
                for _ in 0..ID_RANDOM_LEN {
                    s.push(ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())] as char);
                }
                Self(s)
            }
        }

        string_newtype!($name);

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                let s = s.trim();
                let rest = s.strip_prefix(Self::PREFIX).ok_or_else(|| {
                    ParseError(format!(
                        "{:?} is not a {} id (they look like {}{})",
                        s,
                        $what,
                        Self::PREFIX,
                        "x".repeat(ID_RANDOM_LEN)
                    ))
                })?;
                if rest.len() != ID_RANDOM_LEN || !rest.bytes().all(|b| IN_ID_ALPHABET[b as usize])
                {
                    return Err(ParseError(format!("{:?} is not a valid {} id", s, $what)));
                }
                Ok(Self(s.to_owned()))
            }
        }
    };
}

prefixed_id!(ConnectionId, "conn_", "connection");
prefixed_id!(PipelineId, "pipe_", "pipeline");

/// Text that prints as what it says: no control characters (CR/LF, terminal escapes) and no
/// bidirectional overrides (U+202E and its kin), which can make one name read as another in a
/// terminal, a log line or an e-mail.
pub fn is_plain_text(s: &str) -> bool {
    !s.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    })
}

/// A name people give a connection or a pipeline: 1 to 200 printable characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

string_newtype!(Name);

impl FromStr for Name {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s.is_empty() || s.chars().count() > 200 || !is_plain_text(s) {
            return Err(ParseError("expected 1 to 200 printable characters".into()));
        }
        Ok(Self(s.to_owned()))
    }
}

/// An owner's or operator's e-mail address, checked with the same parser the mailer uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

string_newtype!(EmailAddress);

impl FromStr for EmailAddress {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        s.parse::<lettre::Address>()
            .map_err(|e| ParseError(format!("{s:?} is not an e-mail address: {e}")))?;
        Ok(Self(s.to_owned()))
    }
}

/// A pipeline's ingestion position: opaque to us (a cursor, an offset, a timestamp), stored and
/// handed back byte for byte. Bounded so that a runaway reporter cannot bloat every row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Position(String);

string_newtype!(Position);

impl Position {
    pub const MAX_LEN: usize = 4096;
}

impl FromStr for Position {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError("a position cannot be empty".into()));
        }
        if s.len() > Self::MAX_LEN {
            return Err(ParseError(format!(
                "a position is at most {} bytes, this one has {}",
                Self::MAX_LEN,
                s.len()
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(ParseError(
                "a position cannot contain control characters".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

/// The key of a `[providers.<id>]` table: what connections name as their provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderId(String);

string_newtype!(ProviderId);

impl FromStr for ProviderId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError(format!(
                "{s:?} is not a provider id (lower-case letters, digits, '-' and '_', at most 64)"
            )))
        }
    }
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        // Through FromStr, so a bad value in the config is named with the ones that would do.
        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::domain::ParseError;
            fn from_str(s: &str) -> Result<Self, $crate::domain::ParseError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::domain::ParseError::new(format!(
                        "{other:?} is not one of: {}",
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $name {}
    };
}

pub(crate) use text_enum;

text_enum!(
    /// A connection's health. `degraded` means failures that do not prove the grant is gone.
    ConnectionStatus {
        Healthy => "healthy",
        Degraded => "degraded",
        Broken => "broken",
    }
);

text_enum!(
    /// Whether a pipeline is moving data.
    PipelineState {
        Running => "running",
        Paused => "paused",
    }
);

text_enum!(
    /// Who paused a pipeline: we only ever resume the pauses we made ourselves.
    PausedBy {
        Credwatch => "credwatch",
        Platform => "platform",
    }
);

text_enum!(
    /// What a check found: the classifier's output, stored with every check. `rotation_lost` is
    /// ours, not the provider's: it rotated the refresh token and the new one was lost on our
    /// side (a crash or a stalled worker between its answer and our commit).
    Category {
        Healthy => "healthy",
        Transient => "transient",
        RateLimited => "rate_limited",
        Expired => "expired",
        Revoked => "revoked",
        PasswordChanged => "password_changed",
        AccessChanged => "access_changed",
        ReconsentRequired => "reconsent_required",
        AccountDisabled => "account_disabled",
        RotationLost => "rotation_lost",
        ClientMisconfigured => "client_misconfigured",
        Unknown => "unknown",
    }
);

/// What a category means for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consequence {
    Healthy,
    /// The grant is presumed alive: retry with backoff.
    Degraded,
    /// The grant is gone: only the owner can fix it.
    Broken,
    /// Our side is wrong (client id or secret): the operator's problem, never the owner's.
    Operator,
}

impl Category {
    pub fn consequence(self) -> Consequence {
        use Category::*;
        match self {
            Healthy => Consequence::Healthy,
            Transient | RateLimited | Unknown => Consequence::Degraded,
            Expired | Revoked | PasswordChanged | AccessChanged | ReconsentRequired
            | AccountDisabled | RotationLost => Consequence::Broken,
            ClientMisconfigured => Consequence::Operator,
        }
    }
}

text_enum!(
    /// The two calls of a check: refreshing the grant, then using the access token.
    Phase {
        Refresh => "refresh",
        Probe => "probe",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        for _ in 0..100 {
            let id = ConnectionId::generate();
            assert_eq!(id.as_str().parse::<ConnectionId>().unwrap(), id);
            let id = PipelineId::generate();
            assert_eq!(id.as_str().parse::<PipelineId>().unwrap(), id);
        }
    }

    #[test]
    fn ids_of_the_wrong_kind_or_shape_are_refused() {
        let pipe = PipelineId::generate();
        assert!(pipe.as_str().parse::<ConnectionId>().is_err());
        assert!("conn_".parse::<ConnectionId>().is_err());
        assert!("conn_0000000000000l".parse::<ConnectionId>().is_err());
        assert!("42".parse::<ConnectionId>().is_err());
    }

    #[test]
    fn plain_text_refuses_what_could_disguise_itself() {
        assert!(is_plain_text("Ada Lovelace – Sales CRM"));
        for bad in [
            "a\nb",
            "a\rb",
            "\u{1b}[31mred",
            "admin\u{202E}moc.elgoog",
            "x\u{2066}y",
            "\0",
        ] {
            assert!(!is_plain_text(bad), "{bad:?}");
        }
    }

    #[test]
    fn email_addresses_are_checked() {
        assert!("ada@example.com".parse::<EmailAddress>().is_ok());
        for bad in ["", "ada", "ada@", "@example.com", "a b@example.com"] {
            assert!(bad.parse::<EmailAddress>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn positions_are_opaque_but_bounded() {
        assert_eq!(
            "2026-11-01T00:00:00Z|offset=17"
                .parse::<Position>()
                .unwrap()
                .as_str(),
            "2026-11-01T00:00:00Z|offset=17"
        );
        assert!("".parse::<Position>().is_err());
        assert!("a\nb".parse::<Position>().is_err());
        assert!(
            "x".repeat(Position::MAX_LEN + 1)
                .parse::<Position>()
                .is_err()
        );
    }

    #[test]
    fn provider_ids_are_config_keys() {
        assert!("google".parse::<ProviderId>().is_ok());
        assert!("ms-graph_2".parse::<ProviderId>().is_ok());
        assert!("Google".parse::<ProviderId>().is_err());
        assert!("".parse::<ProviderId>().is_err());
    }

    #[test]
    fn text_enums_round_trip() {
        for s in ConnectionStatus::ALL {
            assert_eq!(s.as_str().parse::<ConnectionStatus>().unwrap(), *s);
        }
        assert!("sick".parse::<ConnectionStatus>().is_err());
    }
}
