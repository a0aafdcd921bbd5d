//! The origin (scheme, host and port) of an upstream URL (docs/spec.md §3): how a URL template gives
//! it, resolving it once when the registry loads, and checking a rendered URL against it.
//!
//! Request data can never choose the host: a URL template's scheme and host are literal
//! (`https://api.example.com/...`), or the host or the whole origin is
//! `{{ get_variable('name') }}`, optionally `| default('literal')`. The origin is fixed when the
//! registry loads, and every rendered URL must start with it.

use std::ops::Range;

use minijinja::machinery::ast::{CallArg, Expr};
use minijinja::machinery::parse_expr;

/// How the scheme and host of a URL template are given (docs/spec.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlOrigin {
    /// `https://api.example.com[:port]/...`: literal scheme and host.
    Literal(String),
    /// `https://{{ get_variable('host') }}/...`: literal scheme, host from a variable.
    VariableHost {
        /// Scheme, lower-case.
        scheme: String,
        /// Variable name.
        variable: String,
        /// `| default('...')` value.
        default: Option<String>,
        /// A literal `:port` after the host.
        port: String,
    },
    /// `{{ get_variable('base_url') }}/...`: scheme and host both from a variable.
    VariableOrigin {
        /// Variable name.
        variable: String,
        /// `| default('...')` value.
        default: Option<String>,
    },
}

/// Finds how a URL template gives its scheme and host; anything else (a host built from
/// request or step data, a missing scheme) is an error that says what is allowed.
pub(crate) fn url_origin(source: &str) -> Result<UrlOrigin, String> {
    const RULE: &str = "the scheme and host must be literal (https://api.example.com/...) or come from {{ get_variable('name') }}";
    let trimmed = source.trim_start();
    if trimmed.starts_with("{{") {
        let end = trimmed.find("}}").ok_or_else(|| RULE.to_string())?;
        let (variable, default) =
            variable_expr(&trimmed[2..end]).ok_or_else(|| RULE.to_string())?;
        let rest = &trimmed[end + 2..];
        if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
            return Err(format!(
                "{RULE}; after the variable the URL must continue with '/'"
            ));
        }
        return Ok(UrlOrigin::VariableOrigin { variable, default });
    }
    let lower = trimmed.to_ascii_lowercase();
    let scheme = ["https", "http"]
        .into_iter()
        .find(|s| lower.starts_with(&format!("{s}://")))
        .ok_or_else(|| format!("{RULE}; the URL must start with https://"))?;
    let after = &trimmed[scheme.len() + 3..];
    let authority_end = authority_end(after);
    let authority = &after[..authority_end];
    if authority.is_empty() {
        return Err(format!("{RULE}; the host is empty"));
    }
    if authority.contains("{%") || authority.contains("{#") {
        return Err(format!(
            "{RULE}; template blocks are not allowed in the host"
        ));
    }
    if let Some(start) = authority.find("{{") {
        let end = authority.find("}}").ok_or_else(|| RULE.to_string())?;
        if start != 0 {
            return Err(format!("{RULE}; the host cannot be partly templated"));
        }
        let (variable, default) =
            variable_expr(&authority[2..end]).ok_or_else(|| RULE.to_string())?;
        let port = &authority[end + 2..];
        if !(port.is_empty()
            || (port.starts_with(':')
                && port[1..].bytes().all(|b| b.is_ascii_digit())
                && port.len() > 1))
        {
            return Err(format!(
                "{RULE}; only a literal :port may follow the host variable"
            ));
        }
        return Ok(UrlOrigin::VariableHost {
            scheme: scheme.to_string(),
            variable,
            default,
            port: port.to_string(),
        });
    }
    if authority.contains('@') {
        return Err("the URL must not contain user information ('user@host')".into());
    }
    if !is_host_text(authority) {
        return Err(format!("'{authority}' is not a valid host"));
    }
    Ok(UrlOrigin::Literal(format!(
        "{scheme}://{}",
        authority.to_ascii_lowercase()
    )))
}

/// The byte range in `source` of the `{{ ... }}` tag that gives a URL template's host or whole
/// origin (`{{ get_variable('x') }}`, optionally `| default('literal')`), when its origin is
/// valid and comes from a variable. Its output is operator configuration or a literal of the
/// registry, resolved and checked when the registry loads, so it is printed as it is rather
/// than percent-encoded like request data.
pub(crate) fn origin_expression(source: &str) -> Option<Range<usize>> {
    if !matches!(
        url_origin(source),
        Ok(UrlOrigin::VariableHost { .. } | UrlOrigin::VariableOrigin { .. })
    ) {
        return None;
    }
    let start = source.len() - source.trim_start().len();
    let rest = &source[start..];
    let open = if rest.starts_with("{{") {
        start
    } else {
        start + rest.find("://")? + 3
    };
    let close = open + source[open..].find("}}")? + 2;
    Some(open..close)
}

/// Whether `host` (with an optional `:port`) uses only the characters a host may have
/// here: ASCII letters and digits, `.`, `-`, and `:`, `[`, `]` for ports and IPv6 literals.
/// Userinfo (`@`), percent-encoding, zone ids and non-ASCII hosts are all refused.
pub(crate) fn is_host_text(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// Whether `origin` has the form `http(s)://host[:port]` and nothing more.
pub(crate) fn is_origin(origin: &str) -> bool {
    origin
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
        .is_some_and(|(_, host)| is_host_text(host))
}

/// Why a URL's origin cannot be fixed when the registry loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResolveError {
    /// The host or origin comes from this variable, which is not set (or not a string) and
    /// has no default.
    Unset {
        /// The variable.
        variable: String,
    },
    /// The origin resolves to text that is not `http(s)://host[:port]`.
    NotAnOrigin {
        /// What it resolved to.
        resolved: String,
    },
}

/// Resolves the origin that every rendering of a URL must start with, lower-case, reading
/// variables with `variable`: a string variable is used as it is; an unset one falls back to
/// the template's `| default(...)`; one that is set to anything but a string is unusable.
pub(crate) fn resolve<'v>(
    origin: &UrlOrigin,
    variable: impl Fn(&str) -> Option<&'v serde_json::Value>,
) -> Result<String, ResolveError> {
    let value = |name: &str, default: &Option<String>| -> Result<String, ResolveError> {
        match (variable(name), default) {
            (Some(serde_json::Value::String(s)), _) => Ok(s.clone()),
            (None, Some(default)) => Ok(default.clone()),
            _ => Err(ResolveError::Unset {
                variable: name.to_string(),
            }),
        }
    };
    let resolved = match origin {
        UrlOrigin::Literal(o) => o.clone(),
        UrlOrigin::VariableHost {
            scheme,
            variable,
            default,
            port,
        } => format!(
            "{scheme}://{}{port}",
            value(variable, default)?.to_ascii_lowercase()
        ),
        UrlOrigin::VariableOrigin { variable, default } => value(variable, default)?
            .trim_end_matches('/')
            .to_ascii_lowercase(),
    };
    if is_origin(&resolved) {
        Ok(resolved)
    } else {
        Err(ResolveError::NotAnOrigin { resolved })
    }
}

/// Whether a rendered URL stays on `origin`, the origin fixed when the registry loaded: it
/// starts with it (in any case) and the origin ends there (`/`, `?`, `#` or the end follows),
/// so `https://api.example.com.evil.com` and `https://api.example.com@evil.com` do not match
/// `https://api.example.com`. An empty origin (its variable was unset when validating)
/// matches everything.
pub fn rendered_url_matches(url: &str, origin: &str) -> bool {
    if origin.is_empty() {
        return true;
    }
    url.len() >= origin.len()
        && url.as_bytes()[..origin.len()].eq_ignore_ascii_case(origin.as_bytes())
        && matches!(
            url.as_bytes().get(origin.len()),
            None | Some(b'/' | b'?' | b'#')
        )
}

/// Where the authority ends: the first `/`, `?` or `#` outside `{{ ... }}`.
fn authority_end(after_scheme: &str) -> usize {
    let bytes = after_scheme.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Compared as bytes: `i` steps through a non-ASCII host one byte at a time, and slicing
        // the `str` inside a character panicked (`https://é{{ ... }}`, found by fuzzing).
        if bytes[i..].starts_with(b"{{") {
            match after_scheme[i..].find("}}") {
                Some(close) => {
                    i += close + 2;
                    continue;
                }
                None => return bytes.len(),
            }
        }
        if matches!(bytes[i], b'/' | b'?' | b'#') {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

/// Matches `get_variable('name')` or `get_variable('name') | default('literal')`.
fn variable_expr(source: &str) -> Option<(String, Option<String>)> {
    let source = source.trim_matches(|c: char| c == '-' || c.is_whitespace());
    let expr = parse_expr(source).ok()?;
    fn call(expr: &Expr<'_>) -> Option<String> {
        let Expr::Call(c) = expr else { return None };
        let Expr::Var(v) = &c.expr else { return None };
        if v.id != "get_variable" || c.args.len() != 1 {
            return None;
        }
        match &c.args[0] {
            CallArg::Pos(e) => e.as_const()?.as_str().map(str::to_string),
            _ => None,
        }
    }
    match &expr {
        Expr::Filter(f) if matches!(f.name, "default" | "d") => {
            let name = call(f.expr.as_ref()?)?;
            let default = match f.args.as_slice() {
                [CallArg::Pos(e)] => e.as_const()?.as_str()?.to_string(),
                _ => return None,
            };
            Some((name, Some(default)))
        }
        other => call(other).map(|name| (name, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_url_matches_only_at_an_origin_boundary() {
        let origin = "https://api.example.com";
        for url in [
            "https://api.example.com",
            "https://api.example.com/x",
            "HTTPS://API.example.com/x",
            "https://api.example.com?q=1",
            "https://api.example.com#f",
        ] {
            assert!(rendered_url_matches(url, origin), "{url}");
        }
        for url in [
            "https://api.example.com.evil.com/x",
            "https://api.example.com@evil.com/x",
            "https://api.example.co",
            "https://api.example.com:8443/x",
            "http://api.example.com/x",
        ] {
            assert!(!rendered_url_matches(url, origin), "{url}");
        }
        assert!(rendered_url_matches("https://anything", ""));
    }

    #[test]
    fn the_origin_expression_is_found_only_where_a_variable_gives_the_origin() {
        fn span(url: &str) -> Option<&str> {
            origin_expression(url).map(|r| &url[r])
        }
        assert_eq!(
            span("  {{ get_variable('base') | default('https://a.example.com') }}/x/{{ y }}"),
            Some("{{ get_variable('base') | default('https://a.example.com') }}")
        );
        assert_eq!(
            span("https://{{- get_variable('host') -}}:8443/{{ y }}"),
            Some("{{- get_variable('host') -}}")
        );
        assert_eq!(
            span("https://api.example.com/{{ get_variable('p') }}"),
            None
        );
        assert_eq!(span("{{ request.body_text }}/x"), None);
        assert_eq!(span("https://{{ get_variable('h') }}.evil.com/x"), None);
    }

    #[test]
    fn origins_resolve_from_literals_variables_and_defaults() {
        let vars = serde_json::json!({"host": "API.example.com", "base": "https://b.example.com/", "n": 5});
        let get = |name: &str| vars.get(name);
        let origin = |url: &str| resolve(&url_origin(url).unwrap(), get);
        assert_eq!(
            origin("https://API.example.com:8443/x"),
            Ok("https://api.example.com:8443".into())
        );
        assert_eq!(
            origin("https://{{ get_variable('host') }}:8443/x"),
            Ok("https://api.example.com:8443".into())
        );
        assert_eq!(
            origin("{{ get_variable('base') }}/x"),
            Ok("https://b.example.com".into())
        );
        assert_eq!(
            origin("{{ get_variable('unset') | default('https://d.example.com') }}/x"),
            Ok("https://d.example.com".into())
        );
        assert_eq!(
            origin("{{ get_variable('unset') }}/x"),
            Err(ResolveError::Unset {
                variable: "unset".into()
            })
        );
        // A variable that is set, but not to a string, is not replaced by the default.
        assert_eq!(
            origin("{{ get_variable('n') | default('https://d.example.com') }}/x"),
            Err(ResolveError::Unset {
                variable: "n".into()
            })
        );
        assert_eq!(
            origin("{{ get_variable('host') }}/x"),
            Err(ResolveError::NotAnOrigin {
                resolved: "api.example.com".into()
            })
        );
    }
}
