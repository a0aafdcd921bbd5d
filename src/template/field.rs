//! Which part of a connector a template fills. The field decides what the template may read
//! and call, and how its output is escaped (URLs percent-encode what they interpolate).

/// A templated field of a connector or step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The upstream URL; interpolated values are percent-encoded.
    Url,
    /// A header value.
    HeaderValue,
    /// A query parameter value.
    QueryValue,
    /// A value inside `authentication.config`.
    AuthConfig,
    /// The outbound request body.
    RequestBody,
    /// The transform applied to the upstream response.
    ResponseBody,
    /// A step's `when` condition (an expression).
    When,
    /// A step's `for_each` list (an expression).
    ForEach,
    /// A composite's own `response_body`: the answer built from any steps.
    CompositeResponseBody,
    /// A `rate_limit.key`: the text naming whose quota a call takes.
    RateLimitKey,
}

/// Separates the parts of an internal template name; the field tag comes last.
const NAME_SEPARATOR: char = '\u{1f}';

impl Field {
    /// Every field, in the order a connector lists them.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) const ALL: [Field; 10] = [
        Field::Url,
        Field::HeaderValue,
        Field::QueryValue,
        Field::AuthConfig,
        Field::RequestBody,
        Field::ResponseBody,
        Field::When,
        Field::ForEach,
        Field::CompositeResponseBody,
        Field::RateLimitKey,
    ];

    /// Whether `get_secret()` may be called here (docs/spec.md §2: header and query values and
    /// authentication config only).
    pub(crate) fn allows_secrets(self) -> bool {
        matches!(
            self,
            Field::HeaderValue | Field::QueryValue | Field::AuthConfig
        )
    }

    /// Whether `jwt_encode()` may be called here (in the fields of a request).
    pub(crate) fn allows_jwt_encode(self) -> bool {
        !matches!(
            self,
            Field::ResponseBody
                | Field::CompositeResponseBody
                | Field::When
                | Field::ForEach
                | Field::RateLimitKey
        )
    }

    /// Whether the field is an expression evaluated to a value (`when`, `for_each`) rather
    /// than a template rendered to text.
    pub(crate) fn is_expression(self) -> bool {
        matches!(self, Field::When | Field::ForEach)
    }

    /// Short tag used in internal template names.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Field::Url => "url",
            Field::HeaderValue => "header",
            Field::QueryValue => "query",
            Field::AuthConfig => "auth",
            Field::RequestBody => "request_body",
            Field::ResponseBody => "response_body",
            Field::When => "when",
            Field::ForEach => "for_each",
            Field::CompositeResponseBody => "composite_response_body",
            Field::RateLimitKey => "rate_limit_key",
        }
    }

    fn from_tag(tag: &str) -> Option<Field> {
        Some(match tag {
            "url" => Field::Url,
            "header" => Field::HeaderValue,
            "query" => Field::QueryValue,
            "auth" => Field::AuthConfig,
            "request_body" => Field::RequestBody,
            "response_body" => Field::ResponseBody,
            "when" => Field::When,
            "for_each" => Field::ForEach,
            "composite_response_body" => Field::CompositeResponseBody,
            "rate_limit_key" => Field::RateLimitKey,
            _ => return None,
        })
    }

    /// The internal, unique name of one template: where it lives and which field it fills.
    pub(crate) fn template_name(self, location: &str) -> String {
        format!("{location}{NAME_SEPARATOR}{}", self.tag())
    }

    /// Recovers the field from an internal template name.
    pub(crate) fn of_template(name: &str) -> Option<Field> {
        name.rsplit(NAME_SEPARATOR).next().and_then(Field::from_tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_round_trip_their_field() {
        for f in Field::ALL {
            assert_eq!(Field::of_template(&f.template_name("c/0/x")), Some(f));
        }
        assert_eq!(Field::of_template("plain"), None);
    }
}
