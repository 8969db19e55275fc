//! Auth tokens: etcd's `simple` tokens (opaque, kept in memory, with a TTL refreshed on use)
//! and `jwt` tokens (signed claims `username`, `revision`, `exp`).
//!
//! A simple token is `<16 random letters>.<log index>`: the letters are drawn by the member that
//! receives the Authenticate request, the index is that of the consensus entry that applies it.
//! Every member applies the entry and so knows the token (as in etcd: a token from one member
//! is accepted by the others once they have applied that index). Each member expires the tokens
//! not used on it for the TTL.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
use rand::Rng;

/// etcd's default `--auth-token-ttl` (seconds).
pub const DEFAULT_SIMPLE_TTL_SECS: u64 = 300;
/// etcd's default JWT `ttl` option.
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);
const SIMPLE_PREFIX_LEN: usize = 16;
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLookup {
    /// A valid token of `username`; `revision` is the auth revision it was issued at (JWT), or
    /// `None` for simple tokens (they stand for the current revision).
    Valid {
        /// The user.
        username: String,
        /// The revision in a JWT's claims.
        revision: Option<u64>,
    },
    /// A simple token whose index this member has not applied yet: ask again once it has.
    Pending(u64),
    /// Not a token this member accepts.
    Invalid,
}

/// Signs and checks tokens of one kind.
#[derive(Debug)]
pub enum TokenProvider {
    /// etcd's `simple` tokens.
    Simple(SimpleTokens),
    /// etcd's `jwt` tokens.
    Jwt(JwtTokens),
}

impl TokenProvider {
    /// Parses etcd's `--auth-token` value (`simple`, or `jwt,pub-key=...,priv-key=...,
    /// sign-method=...,ttl=...`); `simple_ttl` is `--auth-token-ttl`.
    pub fn from_option(option: &str, simple_ttl: Duration) -> Result<Self, String> {
        let mut parts = option.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut opts: HashMap<&str, &str> = HashMap::new();
        for part in parts {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid auth token option {option:?}"));
            };
            if v.contains('=') || opts.insert(k, v).is_some() {
                return Err(format!("invalid auth token option {option:?}"));
            }
        }
        match kind {
            "simple" => Ok(TokenProvider::Simple(SimpleTokens::new(simple_ttl))),
            "jwt" => JwtTokens::from_options(&opts).map(TokenProvider::Jwt),
            other => Err(format!("unknown auth token type {other:?}")),
        }
    }

    /// A fresh prefix for a simple token (empty for JWT).
    pub fn gen_prefix(&self) -> String {
        match self {
            TokenProvider::Simple(_) => {
                let mut rng = rand::rng();
                (0..SIMPLE_PREFIX_LEN)
                    .map(|_| char::from(LETTERS[rng.random_range(0..LETTERS.len())]))
                    .collect()
            }
            TokenProvider::Jwt(_) => String::new(),
        }
    }

    /// Issues the token of `username` for the Authenticate applied at log `index`.
    pub fn assign(
        &self,
        username: &str,
        revision: u64,
        prefix: &str,
        index: u64,
    ) -> Result<String, String> {
        match self {
            TokenProvider::Simple(simple) => Ok(simple.assign(username, prefix, index)),
            TokenProvider::Jwt(jwt) => jwt.assign(username, revision),
        }
    }

    /// Who `token` belongs to; `applied` is this member's applied index.
    pub fn lookup(&self, token: &str, applied: u64) -> TokenLookup {
        match self {
            TokenProvider::Simple(simple) => simple.lookup(token, applied),
            TokenProvider::Jwt(jwt) => jwt.lookup(token),
        }
    }

    /// Forgets every token of `username` (deleted, or its password changed).
    pub fn invalidate_user(&self, username: &str) {
        if let TokenProvider::Simple(simple) = self {
            simple.tokens.lock().retain(|_, (user, _)| user != username);
        }
    }

    /// Forgets every token (auth disabled).
    pub fn clear(&self) {
        if let TokenProvider::Simple(simple) = self {
            simple.tokens.lock().clear();
        }
    }
}

/// Simple tokens of this member: token -> (user, expiry).
#[derive(Debug)]
pub struct SimpleTokens {
    ttl: Duration,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl SimpleTokens {
    fn new(ttl: Duration) -> Self {
        let ttl = if ttl.is_zero() {
            Duration::from_secs(DEFAULT_SIMPLE_TTL_SECS)
        } else {
            ttl
        };
        Self {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn assign(&self, username: &str, prefix: &str, index: u64) -> String {
        let token = format!("{prefix}.{index}");
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, (_, deadline)| *deadline > now);
        tokens.insert(token.clone(), (username.to_owned(), now + self.ttl));
        token
    }

    fn lookup(&self, token: &str, applied: u64) -> TokenLookup {
        let mut parts = token.split('.');
        let (Some(_), Some(index), None) = (parts.next(), parts.next(), parts.next()) else {
            return TokenLookup::Invalid;
        };
        let Ok(index) = index.parse::<u64>() else {
            return TokenLookup::Invalid;
        };
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        match tokens.get_mut(token) {
            Some((user, deadline)) if *deadline > now => {
                // Used: it lives another TTL.
                *deadline = now + self.ttl;
                TokenLookup::Valid {
                    username: user.clone(),
                    revision: None,
                }
            }
            Some(_) => {
                tokens.remove(token);
                TokenLookup::Invalid
            }
            None if index > applied => TokenLookup::Pending(index),
            None => TokenLookup::Invalid,
        }
    }
}

/// JWT signing and checking keys with the claims' lifetime.
pub struct JwtTokens {
    algorithm: Algorithm,
    /// None on a member given only the public key: it checks tokens but issues none.
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("algorithm", &self.algorithm)
            .field("signs", &self.encoding.is_some())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The claims etcd puts in a token.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

fn read_key(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(Path::new(path)).map_err(|e| format!("cannot read JWT key {path}: {e}"))
}

impl JwtTokens {
    fn from_options(opts: &HashMap<&str, &str>) -> Result<Self, String> {
        let ttl = match opts.get("ttl") {
            Some(t) => crate::config::parse_go_duration(t)
                .map_err(|e| format!("invalid JWT ttl {t:?}: {e}"))?,
            None => DEFAULT_JWT_TTL,
        };
        let method = opts.get("sign-method").copied().unwrap_or_default();
        let algorithm: Algorithm = method
            .parse()
            .map_err(|_| format!("invalid JWT sign-method {method:?}"))?;
        let private = opts.get("priv-key").map(|p| read_key(p)).transpose()?;
        let public = opts.get("pub-key").map(|p| read_key(p)).transpose()?;
        let bad = |e: jsonwebtoken::errors::Error| format!("invalid JWT key: {e}");
        use Algorithm::*;
        let (encoding, decoding) = match algorithm {
            HS256 | HS384 | HS512 => {
                let secret = private.ok_or("JWT priv-key is required for HMAC")?;
                (
                    Some(EncodingKey::from_secret(&secret)),
                    DecodingKey::from_secret(&secret),
                )
            }
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => (
                private
                    .map(|k| EncodingKey::from_rsa_pem(&k))
                    .transpose()
                    .map_err(bad)?,
                DecodingKey::from_rsa_pem(&public.ok_or("JWT pub-key is required")?)
                    .map_err(bad)?,
            ),
            ES256 | ES384 => (
                private
                    .map(|k| EncodingKey::from_ec_pem(&k))
                    .transpose()
                    .map_err(bad)?,
                DecodingKey::from_ec_pem(&public.ok_or("JWT pub-key is required")?).map_err(bad)?,
            ),
            EdDSA => (
                private
                    .map(|k| EncodingKey::from_ed_pem(&k))
                    .transpose()
                    .map_err(bad)?,
                DecodingKey::from_ed_pem(&public.ok_or("JWT pub-key is required")?).map_err(bad)?,
            ),
        };
        Ok(Self {
            algorithm,
            encoding,
            decoding,
            ttl,
        })
    }

    fn assign(&self, username: &str, revision: u64) -> Result<String, String> {
        let key = self
            .encoding
            .as_ref()
            .ok_or("this member has no JWT private key")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let claims = Claims {
            username: username.to_owned(),
            revision,
            exp: (now + self.ttl).as_secs(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| format!("signing a JWT: {e}"))
    }

    fn lookup(&self, token: &str) -> TokenLookup {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation) {
            Ok(data) => TokenLookup::Valid {
                username: data.claims.username,
                revision: Some(data.claims.revision),
            },
            Err(e) => {
                tracing::warn!(error = %e, "failed to parse a JWT token");
                TokenLookup::Invalid
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_expire_unless_used_and_wait_for_their_index() {
        let p = TokenProvider::from_option("simple", Duration::from_millis(200)).unwrap();
        let prefix = p.gen_prefix();
        assert_eq!(prefix.len(), 16);
        assert!(prefix.bytes().all(|b| b.is_ascii_alphabetic()));
        let token = p.assign("alice", 3, &prefix, 7).unwrap();
        assert_eq!(token, format!("{prefix}.7"));
        let valid = TokenLookup::Valid {
            username: "alice".into(),
            revision: None,
        };
        assert_eq!(p.lookup(&token, 7), valid);
        assert_eq!(p.lookup("abc.9", 7), TokenLookup::Pending(9));
        assert_eq!(p.lookup("abc.5", 7), TokenLookup::Invalid);
        assert_eq!(p.lookup("abc", 7), TokenLookup::Invalid);
        assert_eq!(p.lookup("a.b.c", 7), TokenLookup::Invalid);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(120));
            assert_eq!(p.lookup(&token, 7), valid, "use refreshes the TTL");
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(p.lookup(&token, 7), TokenLookup::Invalid);
        let t2 = p.assign("bob", 3, &p.gen_prefix(), 8).unwrap();
        p.invalidate_user("bob");
        assert_eq!(p.lookup(&t2, 8), TokenLookup::Invalid);
    }

    #[test]
    fn token_options() {
        assert!(TokenProvider::from_option("bogus", Duration::ZERO).is_err());
        assert!(TokenProvider::from_option("simple,x", Duration::ZERO).is_err());
        assert!(TokenProvider::from_option("jwt,sign-method=RS256", Duration::ZERO).is_err());
        assert!(TokenProvider::from_option("jwt,sign-method=XX1", Duration::ZERO).is_err());
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, b"sekrit").unwrap();
        let opt = format!("jwt,priv-key={},sign-method=HS256,ttl=1s", key.display());
        let p = TokenProvider::from_option(&opt, Duration::ZERO).unwrap();
        let token = p.assign("carol", 12, "", 0).unwrap();
        assert_eq!(
            p.lookup(&token, 0),
            TokenLookup::Valid {
                username: "carol".into(),
                revision: Some(12)
            }
        );
        assert_eq!(p.lookup("garbage", 0), TokenLookup::Invalid);
    }
}
