//! The identity flags of `serve` (docs/spec.md §9): every flag is also an environment
//! variable `CONNECTOR_RUNTIME_*` (the doc comments below are the `--help` text). They are
//! flattened into `ServeArgs`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Default of `--identity-leeway-secs`.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// Default of `--identity-jwks-refresh-secs`.
pub const DEFAULT_JWKS_REFRESH_SECS: u64 = 300;
/// Largest `--identity-leeway-secs`: a clock skew beyond an hour is a broken clock, and a
/// larger leeway would let long-expired tokens through.
pub const MAX_LEEWAY_SECS: u64 = 3600;

/// Caller identity: a signed token (JWT) for the signed-in member, sent by the widget SDK as
/// `Authorization: Bearer <token>` (docs/spec.md §9).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct IdentityArgs {
    /// Issuer of caller tokens: their `iss` must equal it. Needed with --identity-jwks-url or --identity-jwks-file.
    #[arg(long, env = "CONNECTOR_RUNTIME_IDENTITY_ISSUER", value_name = "ISS")]
    pub identity_issuer: Option<String>,
    /// JWKS of the issuer's signing keys (https, or http on a loopback address), fetched at start, again for an unknown `kid` (at most once per 30 s) and every --identity-jwks-refresh-secs.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_IDENTITY_JWKS_URL",
        value_name = "URL",
        conflicts_with = "identity_jwks_file"
    )]
    pub identity_jwks_url: Option<String>,
    /// JWKS file of the issuer's signing keys (instead of --identity-jwks-url); read at start and again every --identity-jwks-refresh-secs.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_IDENTITY_JWKS_FILE",
        value_name = "PATH"
    )]
    pub identity_jwks_file: Option<PathBuf>,
    /// Audience of caller tokens: their `aud` must contain it (not checked without this flag).
    #[arg(long, env = "CONNECTOR_RUNTIME_IDENTITY_AUDIENCE", value_name = "AUD")]
    pub identity_audience: Option<String>,
    /// Clock skew allowed when checking a token's `exp`, `nbf` and `iat`, in seconds (at most 3600).
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_IDENTITY_LEEWAY_SECS",
        default_value_t = DEFAULT_LEEWAY_SECS
    )]
    pub identity_leeway_secs: u64,
    /// Seconds between fetches of the JWKS (0 = only at start and for an unknown `kid`); when a fetch fails the last good keys keep serving.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_IDENTITY_JWKS_REFRESH_SECS",
        default_value_t = DEFAULT_JWKS_REFRESH_SECS
    )]
    pub identity_jwks_refresh_secs: u64,
    /// Also accept the caller token from this cookie (the Authorization header wins when both are sent).
    #[arg(long, env = "CONNECTOR_RUNTIME_IDENTITY_COOKIE", value_name = "NAME")]
    pub identity_cookie: Option<String>,
    /// Every connector needs a verified caller, whether or not its templates read `user`.
    #[arg(long, env = "CONNECTOR_RUNTIME_IDENTITY_REQUIRED")]
    pub identity_required: bool,
    /// The `tenant_id` templates read (your community's identifier), the same for every request.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_TENANT_ID",
        value_name = "ID",
        conflicts_with = "identity_tenant_claim"
    )]
    pub tenant_id: Option<String>,
    /// Take `tenant_id` from this claim of the caller token instead (a string or an integer).
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_IDENTITY_TENANT_CLAIM",
        value_name = "CLAIM"
    )]
    pub identity_tenant_claim: Option<String>,
}

impl Default for IdentityArgs {
    /// Identity off, every default as clap writes it.
    fn default() -> Self {
        IdentityArgs {
            identity_issuer: None,
            identity_jwks_url: None,
            identity_jwks_file: None,
            identity_audience: None,
            identity_leeway_secs: DEFAULT_LEEWAY_SECS,
            identity_jwks_refresh_secs: DEFAULT_JWKS_REFRESH_SECS,
            identity_cookie: None,
            identity_required: false,
            tenant_id: None,
            identity_tenant_claim: None,
        }
    }
}

/// Where the issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS fetched over HTTP(S).
    Url(String),
    /// A JWKS file.
    File(PathBuf),
}

/// Where `tenant_id` comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TenantSource {
    /// Neither `--tenant-id` nor `--identity-tenant-claim`: templates may not read `tenant_id`.
    #[default]
    None,
    /// `--tenant-id`: one value for every request.
    Static(String),
    /// `--identity-tenant-claim`: this claim of the verified caller token.
    Claim(String),
}

/// A combination of identity flags that cannot work; the message names the flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityConfigError {
    /// A key source without `--identity-issuer`.
    #[error("--identity-issuer is required with --identity-jwks-url or --identity-jwks-file")]
    IssuerMissing,
    /// `--identity-issuer` (or another identity flag) without a key source.
    #[error("{0} needs a key source: --identity-jwks-url or --identity-jwks-file")]
    KeySourceMissing(&'static str),
    /// A flag given an empty value.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// The JWKS URL is not an absolute http(s) URL with a host.
    #[error("--identity-jwks-url must be an absolute https:// URL (or http:// on a loopback address), without user info: {0}")]
    BadJwksUrl(&'static str),
    /// The leeway is larger than [`MAX_LEEWAY_SECS`].
    #[error("--identity-leeway-secs must be at most {MAX_LEEWAY_SECS}")]
    LeewayTooLarge,
    /// The cookie name is not an RFC 6265 token.
    #[error("--identity-cookie must be a cookie name (letters, digits and !#$%&'*+-.^_`|~)")]
    BadCookieName,
}

impl IdentityArgs {
    /// Whether caller identity is configured (a key source is given): templates may read
    /// `user.*` only then.
    pub fn is_configured(&self) -> bool {
        self.key_source().is_some()
    }

    /// The key source, when one is given.
    pub fn key_source(&self) -> Option<KeySource> {
        match (&self.identity_jwks_url, &self.identity_jwks_file) {
            (Some(url), _) => Some(KeySource::Url(url.clone())),
            (None, Some(path)) => Some(KeySource::File(path.clone())),
            (None, None) => None,
        }
    }

    /// Where `tenant_id` comes from: templates may read it unless this is
    /// [`TenantSource::None`].
    pub fn tenant_source(&self) -> TenantSource {
        match (&self.identity_tenant_claim, &self.tenant_id) {
            (Some(claim), _) => TenantSource::Claim(claim.clone()),
            (None, Some(id)) => TenantSource::Static(id.clone()),
            (None, None) => TenantSource::None,
        }
    }

    /// The clock skew allowed.
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.identity_leeway_secs)
    }

    /// Time between JWKS fetches; `None` when periodic refresh is off.
    pub fn refresh_interval(&self) -> Option<Duration> {
        (self.identity_jwks_refresh_secs > 0)
            .then(|| Duration::from_secs(self.identity_jwks_refresh_secs))
    }

    /// Checks the combination of flags (clap already refuses the URL with the file, and
    /// `--tenant-id` with `--identity-tenant-claim`).
    pub fn validate(&self) -> Result<(), IdentityConfigError> {
        use IdentityConfigError as E;
        for (flag, value) in [
            ("--identity-issuer", &self.identity_issuer),
            ("--identity-jwks-url", &self.identity_jwks_url),
            ("--identity-audience", &self.identity_audience),
            ("--identity-cookie", &self.identity_cookie),
            ("--tenant-id", &self.tenant_id),
            ("--identity-tenant-claim", &self.identity_tenant_claim),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(E::Empty(flag));
            }
        }
        if self
            .identity_jwks_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(E::Empty("--identity-jwks-file"));
        }
        if self.is_configured() {
            if self.identity_issuer.is_none() {
                return Err(E::IssuerMissing);
            }
        } else {
            let needs_source = [
                ("--identity-issuer", self.identity_issuer.is_some()),
                ("--identity-audience", self.identity_audience.is_some()),
                ("--identity-cookie", self.identity_cookie.is_some()),
                ("--identity-required", self.identity_required),
                (
                    "--identity-tenant-claim",
                    self.identity_tenant_claim.is_some(),
                ),
            ];
            if let Some((flag, _)) = needs_source.iter().find(|(_, given)| *given) {
                return Err(E::KeySourceMissing(flag));
            }
        }
        if let Some(url) = &self.identity_jwks_url {
            check_jwks_url(url)?;
        }
        if self.identity_leeway_secs > MAX_LEEWAY_SECS {
            return Err(E::LeewayTooLarge);
        }
        if let Some(name) = &self.identity_cookie {
            if !name.bytes().all(is_cookie_name_byte) {
                return Err(E::BadCookieName);
            }
        }
        Ok(())
    }
}

/// RFC 6265 `cookie-name` (an RFC 7230 token).
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The JWKS URL: https anywhere, plain http only to the machine itself. A JWKS read over plain
/// HTTP across a network lets anyone on the path substitute keys and sign in as anyone.
/// Loopback is allowed (it is the operator's own IdP, not an upstream, so the upstream
/// address policy does not apply).
fn check_jwks_url(url: &str) -> Result<(), IdentityConfigError> {
    use IdentityConfigError::BadJwksUrl;
    let uri: awc::http::Uri = url.parse().map_err(|_| BadJwksUrl("not a URL"))?;
    let host = uri.host().ok_or(BadJwksUrl("no host"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(BadJwksUrl("user info is not supported"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err(BadJwksUrl(
            "plain http is only allowed to a loopback address",
        )),
        _ => Err(BadJwksUrl("the scheme must be https or http")),
    }
}

/// `localhost`, 127.0.0.0/8 or `[::1]`.
fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        identity: IdentityArgs,
    }

    fn parse(args: &[&str]) -> Result<IdentityArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .map(|c| c.identity)
    }

    #[test]
    fn no_flags_is_the_default_and_identity_is_off() {
        let args = parse(&[]).unwrap();
        assert_eq!(args, IdentityArgs::default());
        assert!(!args.is_configured());
        assert_eq!(args.tenant_source(), TenantSource::None);
        assert_eq!(args.leeway(), Duration::from_secs(60));
        assert_eq!(args.refresh_interval(), Some(Duration::from_secs(300)));
        args.validate().unwrap();
    }

    #[test]
    fn every_flag_parses() {
        let args = parse(&[
            "--identity-issuer",
            "https://idp.example.com/",
            "--identity-jwks-url",
            "https://idp.example.com/.well-known/jwks.json",
            "--identity-audience",
            "widgets",
            "--identity-leeway-secs",
            "5",
            "--identity-jwks-refresh-secs",
            "0",
            "--identity-cookie",
            "member_token",
            "--identity-required",
            "--identity-tenant-claim",
            "community",
        ])
        .unwrap();
        args.validate().unwrap();
        assert!(args.is_configured());
        assert_eq!(
            args.key_source(),
            Some(KeySource::Url(
                "https://idp.example.com/.well-known/jwks.json".into()
            ))
        );
        assert_eq!(args.identity_audience.as_deref(), Some("widgets"));
        assert_eq!(args.leeway(), Duration::from_secs(5));
        assert_eq!(args.refresh_interval(), None);
        assert_eq!(args.identity_cookie.as_deref(), Some("member_token"));
        assert!(args.identity_required);
        assert_eq!(
            args.tenant_source(),
            TenantSource::Claim("community".into())
        );
    }

    #[test]
    fn the_url_and_the_file_conflict_and_so_do_the_two_tenant_sources() {
        let both = parse(&[
            "--identity-jwks-url",
            "https://idp.example.com/jwks",
            "--identity-jwks-file",
            "/etc/jwks.json",
        ]);
        assert_eq!(
            both.unwrap_err().kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
        let tenants = parse(&["--tenant-id", "c1", "--identity-tenant-claim", "tid"]);
        assert_eq!(
            tenants.unwrap_err().kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn a_static_tenant_needs_no_identity() {
        let args = parse(&["--tenant-id", "community-7"]).unwrap();
        args.validate().unwrap();
        assert!(!args.is_configured());
        assert_eq!(
            args.tenant_source(),
            TenantSource::Static("community-7".into())
        );
    }

    #[test]
    fn a_key_source_needs_an_issuer_and_identity_flags_need_a_key_source() {
        let no_issuer = parse(&["--identity-jwks-file", "/etc/jwks.json"]).unwrap();
        assert_eq!(
            no_issuer.validate(),
            Err(IdentityConfigError::IssuerMissing)
        );
        for flags in [
            &["--identity-issuer", "https://idp/"][..],
            &["--identity-audience", "a"],
            &["--identity-cookie", "c"],
            &["--identity-required"],
            &["--identity-tenant-claim", "tid"],
        ] {
            let err = parse(flags).unwrap().validate().unwrap_err();
            assert_eq!(err, IdentityConfigError::KeySourceMissing(flags[0]));
            assert!(err.to_string().contains(flags[0]), "{err}");
        }
    }

    #[test]
    fn jwks_urls_are_https_or_loopback_http() {
        let with = |url: &str| IdentityArgs {
            identity_issuer: Some("iss".into()),
            identity_jwks_url: Some(url.into()),
            ..IdentityArgs::default()
        };
        for ok in [
            "https://idp.example.com/jwks",
            "http://127.0.0.1:8081/jwks",
            "http://localhost/jwks",
            "http://[::1]:9/jwks",
        ] {
            with(ok).validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://idp.example.com/jwks",
            "http://10.0.0.5/jwks",
            "file:///etc/jwks.json",
            "ftp://idp/jwks",
            "/jwks.json",
            "https://user:pw@idp.example.com/jwks",
            "not a url",
        ] {
            assert!(
                matches!(
                    with(bad).validate(),
                    Err(IdentityConfigError::BadJwksUrl(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        let base = IdentityArgs {
            identity_issuer: Some("iss".into()),
            identity_jwks_file: Some("/etc/jwks.json".into()),
            ..IdentityArgs::default()
        };
        let leeway = IdentityArgs {
            identity_leeway_secs: MAX_LEEWAY_SECS + 1,
            ..base.clone()
        };
        assert_eq!(leeway.validate(), Err(IdentityConfigError::LeewayTooLarge));
        let cookie = IdentityArgs {
            identity_cookie: Some("a b".into()),
            ..base.clone()
        };
        assert_eq!(cookie.validate(), Err(IdentityConfigError::BadCookieName));
        let empty = IdentityArgs {
            identity_audience: Some(" ".into()),
            ..base.clone()
        };
        assert_eq!(
            empty.validate(),
            Err(IdentityConfigError::Empty("--identity-audience"))
        );
        base.validate().unwrap();
    }

    #[test]
    fn every_flag_is_also_an_environment_variable() {
        use clap::CommandFactory;
        let command = Cli::command();
        let envs: Vec<(String, String)> = command
            .get_arguments()
            .map(|a| {
                (
                    a.get_long().unwrap().to_string(),
                    a.get_env().unwrap().to_string_lossy().into_owned(),
                )
            })
            .collect();
        let expected = [
            ("identity-issuer", "CONNECTOR_RUNTIME_IDENTITY_ISSUER"),
            ("identity-jwks-url", "CONNECTOR_RUNTIME_IDENTITY_JWKS_URL"),
            ("identity-jwks-file", "CONNECTOR_RUNTIME_IDENTITY_JWKS_FILE"),
            ("identity-audience", "CONNECTOR_RUNTIME_IDENTITY_AUDIENCE"),
            (
                "identity-leeway-secs",
                "CONNECTOR_RUNTIME_IDENTITY_LEEWAY_SECS",
            ),
            (
                "identity-jwks-refresh-secs",
                "CONNECTOR_RUNTIME_IDENTITY_JWKS_REFRESH_SECS",
            ),
            ("identity-cookie", "CONNECTOR_RUNTIME_IDENTITY_COOKIE"),
            ("identity-required", "CONNECTOR_RUNTIME_IDENTITY_REQUIRED"),
            ("tenant-id", "CONNECTOR_RUNTIME_TENANT_ID"),
            (
                "identity-tenant-claim",
                "CONNECTOR_RUNTIME_IDENTITY_TENANT_CLAIM",
            ),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(f, e)| (f.to_string(), e.to_string()))
            .collect();
        assert_eq!(envs, expected);
    }
}
