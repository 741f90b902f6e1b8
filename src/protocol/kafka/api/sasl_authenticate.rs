//! SaslAuthenticate (key 36), versions 0-1: carries SASL tokens. For
//! `PLAIN` the token is `authzid NUL authcid NUL password`; see
//! [`parse_plain`].

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslAuthenticateRequest<'a> {
    pub auth_bytes: &'a [u8],
}

impl<'a> SaslAuthenticateRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::SaslAuthenticate, version)?;
        Ok(SaslAuthenticateRequest {
            auth_bytes: r.bytes()?,
        })
    }
}

/// A SASL/PLAIN token (RFC 4616) split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainToken<'a> {
    pub authzid: &'a [u8],
    pub username: &'a [u8],
    pub password: &'a [u8],
}

/// Splits a SASL/PLAIN token; `None` unless it has exactly two NULs.
pub fn parse_plain(token: &[u8]) -> Option<PlainToken<'_>> {
    let mut parts = token.split(|&b| b == 0);
    let authzid = parts.next()?;
    let username = parts.next()?;
    let password = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some(PlainToken {
        authzid,
        username,
        password,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslAuthenticateResponse<'a> {
    /// `SASL_AUTHENTICATION_FAILED` for a wrong password.
    pub error_code: ErrorCode,
    pub error_message: Option<&'a str>,
    pub auth_bytes: &'a [u8],
    /// v1+: 0 for "no re-authentication needed".
    pub session_lifetime_ms: i64,
}

impl SaslAuthenticateResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        w.i16(self.error_code.0);
        w.nullable_string(self.error_message);
        w.bytes(self.auth_bytes);
        if version >= 1 {
            w.i64(self.session_lifetime_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tokens() {
        assert_eq!(
            parse_plain(b"\0user\0secret"),
            Some(PlainToken {
                authzid: b"",
                username: b"user",
                password: b"secret"
            })
        );
        assert_eq!(parse_plain(b"user\0secret"), None);
        assert_eq!(parse_plain(b"a\0b\0c\0d"), None);
    }
}
