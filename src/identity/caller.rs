//! The verified caller and what templates see of it: `user.*` and `tenant_id`
//! (docs/spec.md §9).

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Serde, Value};
use minijinja::{Error, ErrorKind, State};
use serde_json::{Map, Value as Json};

use super::args::TenantSource;
use super::verify::{IdentityError, Malformed};

/// The signed-in member a verified token names. Every field is optional: a claim that is
/// absent (or `null`) is undefined to templates.
///
/// `Debug` shows which claims are present, never their values.
#[derive(Clone, PartialEq, Default)]
pub struct Caller {
    /// `user.id` ← `sub`.
    pub id: Option<String>,
    /// `user.email` ← `email`.
    pub email: Option<String>,
    /// `user.first_name` ← `given_name`.
    pub first_name: Option<String>,
    /// `user.last_name` ← `family_name`.
    pub last_name: Option<String>,
    /// `user.username` ← `preferred_username`.
    pub username: Option<String>,
    /// `user.profile_fields` ← the object claim `profile_fields` (keys are field ids as
    /// strings); empty when the claim is absent.
    pub profile_fields: Map<String, Json>,
    /// `tenant_id`: the `--identity-tenant-claim` claim, or `--tenant-id`.
    pub tenant_id: Option<String>,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present = |o: &Option<String>| if o.is_some() { "<set>" } else { "<absent>" };
        f.debug_struct("Caller")
            .field("id", &present(&self.id))
            .field("email", &present(&self.email))
            .field("first_name", &present(&self.first_name))
            .field("last_name", &present(&self.last_name))
            .field("username", &present(&self.username))
            .field("profile_fields", &self.profile_fields.len())
            .field("tenant_id", &present(&self.tenant_id))
            .finish()
    }
}

/// The attributes of `user`, in the order `enumerate` lists them (and the load-time analysis
/// accepts).
pub const USER_ATTRIBUTES: [&str; 6] = [
    "id",
    "email",
    "first_name",
    "last_name",
    "username",
    "profile_fields",
];

impl Caller {
    /// The caller the verified `claims` describe. A claim of the wrong type (`sub` a number,
    /// `profile_fields` not an object) makes the token malformed.
    pub fn from_claims(
        claims: &Map<String, Json>,
        tenant: &TenantSource,
    ) -> Result<Caller, IdentityError> {
        let text = |claim: &'static str| -> Result<Option<String>, IdentityError> {
            match claims.get(claim) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Malformed::ClaimType(claim).into()),
            }
        };
        let profile_fields = match claims.get("profile_fields") {
            None | Some(Json::Null) => Map::new(),
            Some(Json::Object(fields)) => fields.clone(),
            Some(_) => return Err(Malformed::ClaimType("profile_fields").into()),
        };
        let tenant_id = match tenant {
            TenantSource::None => None,
            TenantSource::Static(id) => Some(id.clone()),
            TenantSource::Claim(claim) => match claims.get(claim) {
                None | Some(Json::Null) => None,
                Some(Json::String(s)) => Some(s.clone()),
                Some(Json::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
                Some(_) => return Err(Malformed::TenantClaimType.into()),
            },
        };
        Ok(Caller {
            id: text("sub")?,
            email: text("email")?,
            first_name: text("given_name")?,
            last_name: text("family_name")?,
            username: text("preferred_username")?,
            profile_fields,
            tenant_id,
        })
    }

    /// The profile field `id` (a field id as a string).
    pub fn profile_field(&self, id: &str) -> Option<&Json> {
        self.profile_fields.get(id)
    }

    /// `user` as templates see it: `id`, `email`, `first_name`, `last_name`, `username`
    /// (undefined when the claim is absent, so `is defined` and `| default` work) and
    /// `profile_fields`, whose `by_id(N)` takes an int or a string (undefined for a missing
    /// field).
    pub fn template_value(&self) -> Value {
        Value::from_object(UserValue(Arc::new(self.clone())))
    }
}

impl TenantSource {
    /// The `tenant_id` of a request with `caller` (if a token was verified).
    pub fn tenant_id<'a>(&'a self, caller: Option<&'a Caller>) -> Option<&'a str> {
        match self {
            TenantSource::None => None,
            TenantSource::Static(id) => Some(id),
            TenantSource::Claim(_) => caller.and_then(|c| c.tenant_id.as_deref()),
        }
    }

    /// `tenant_id` as templates see it (undefined when there is none).
    pub fn template_value(&self, caller: Option<&Caller>) -> Value {
        self.tenant_id(caller)
            .map(Value::from)
            .unwrap_or(Value::UNDEFINED)
    }
}

/// `user`.
struct UserValue(Arc<Caller>);

impl fmt::Debug for UserValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl UserValue {
    fn attribute(&self, name: &str) -> Option<&Option<String>> {
        Some(match name {
            "id" => &self.0.id,
            "email" => &self.0.email,
            "first_name" => &self.0.first_name,
            "last_name" => &self.0.last_name,
            "username" => &self.0.username,
            _ => return None,
        })
    }
}

impl Object for UserValue {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        if key == "profile_fields" {
            return Some(Value::from_object(ProfileFields(self.0.clone())));
        }
        self.attribute(key)?.as_deref().map(Value::from)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let present = USER_ATTRIBUTES
            .iter()
            .filter(|name| self.attribute(name).is_none_or(Option::is_some))
            .map(|name| Value::from(*name))
            .collect();
        Enumerator::Values(present)
    }
}

/// `user.profile_fields`: a map of field ids (strings) to values, with `by_id(N)`.
struct ProfileFields(Arc<Caller>);

impl fmt::Debug for ProfileFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProfileFields({} fields)", self.0.profile_fields.len())
    }
}

impl ProfileFields {
    /// The field whose id is `id` (an int or a string).
    fn by_id(&self, id: &Value) -> Result<Value, Error> {
        let key = field_key(id).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "by_id(): the field id must be an int or a string",
            )
        })?;
        Ok(self
            .0
            .profile_field(&key)
            .map(|v| Value::from(Serde(v)))
            .unwrap_or(Value::UNDEFINED))
    }
}

/// A field id as the claim's keys spell it: a string as it is, an int in decimal.
fn field_key(id: &Value) -> Option<String> {
    match id.as_str() {
        Some(s) => Some(s.to_owned()),
        None => id.is_integer().then(|| id.to_string()),
    }
}

impl Object for ProfileFields {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0
            .profile_field(&field_key(key)?)
            .map(|v| Value::from(Serde(v)))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.0
                .profile_fields
                .keys()
                .map(|k| Value::from(k.as_str()))
                .collect(),
        )
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match (method, args) {
            ("by_id", [id]) => self.by_id(id),
            ("by_id", _) => Err(Error::new(
                ErrorKind::InvalidOperation,
                "by_id() takes one field id",
            )),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::{Environment, UndefinedBehavior};
    use serde_json::json;

    fn claims(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    fn full() -> Caller {
        Caller::from_claims(
            &claims(json!({
                "sub": "m-42", "email": "ada@example.com", "given_name": "Ada",
                "family_name": "Lovelace", "preferred_username": "ada",
                "profile_fields": {"7": "Engineering", "12": {"level": 3}, "x": [1, 2]},
                "community": 9001
            })),
            &TenantSource::Claim("community".into()),
        )
        .unwrap()
    }

    /// Renders `source` as the registry's environment does (SemiStrict undefined).
    fn render(source: &str, caller: &Caller) -> Result<String, Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.render_str(
            source,
            minijinja::context! { user => caller.template_value() },
        )
    }

    #[test]
    fn claims_map_onto_the_caller() {
        let c = full();
        assert_eq!(c.id.as_deref(), Some("m-42"));
        assert_eq!(c.email.as_deref(), Some("ada@example.com"));
        assert_eq!(c.first_name.as_deref(), Some("Ada"));
        assert_eq!(c.last_name.as_deref(), Some("Lovelace"));
        assert_eq!(c.username.as_deref(), Some("ada"));
        assert_eq!(c.profile_field("7"), Some(&json!("Engineering")));
        assert_eq!(c.tenant_id.as_deref(), Some("9001"));
    }

    #[test]
    fn wrong_claim_types_make_the_token_malformed() {
        for (claim, value) in [
            ("sub", json!(42)),
            ("email", json!(["a@b"])),
            ("given_name", json!(true)),
            ("family_name", json!({})),
            ("preferred_username", json!(1.5)),
            ("profile_fields", json!(["a"])),
            ("profile_fields", json!("7=x")),
        ] {
            let err = Caller::from_claims(&claims(json!({ claim: value })), &TenantSource::None)
                .unwrap_err();
            assert_eq!(err, IdentityError::Malformed(Malformed::ClaimType(claim)));
        }
        let tenant = TenantSource::Claim("org".into());
        for value in [json!(1.5), json!(["x"]), json!({"id": 1}), json!(true)] {
            assert_eq!(
                Caller::from_claims(&claims(json!({ "org": value })), &tenant).unwrap_err(),
                IdentityError::Malformed(Malformed::TenantClaimType)
            );
        }
    }

    #[test]
    fn absent_and_null_claims_are_undefined() {
        let c = Caller::from_claims(
            &claims(json!({"sub": "m-1", "email": null})),
            &TenantSource::None,
        )
        .unwrap();
        assert_eq!(c.email, None);
        let out = render(
            "{{ user.id }}|{{ user.email is defined }}|{{ user.first_name | default('friend') }}|{{ user.username is defined }}",
            &c,
        )
        .unwrap();
        assert_eq!(out, "m-1|False|friend|False");
        // Printing an absent claim fails as any undefined value does.
        assert!(render("{{ user.email }}", &c).is_err());
        // profile_fields is there (empty) so by_id works without the claim.
        assert_eq!(
            render("{{ user.profile_fields.by_id(3) is defined }}", &c).unwrap(),
            "False"
        );
    }

    #[test]
    fn user_attributes_and_profile_fields_render() {
        let c = full();
        let out = render(
            "{{ user.id }} {{ user.email }} {{ user.first_name }} {{ user.last_name }} {{ user.username }}",
            &c,
        )
        .unwrap();
        assert_eq!(out, "m-42 ada@example.com Ada Lovelace ada");
        let out = render(
            "{{ user.profile_fields.by_id(7) }}|{{ user.profile_fields.by_id('7') }}|{{ user.profile_fields.by_id(12).level }}|{{ user.profile_fields.by_id(99) is defined }}|{{ user.profile_fields.by_id('nope') | default('-') }}|{{ user.profile_fields['x'] | length }}",
            &c,
        )
        .unwrap();
        assert_eq!(out, "Engineering|Engineering|3|False|-|2");
        assert!(render("{{ user.profile_fields.by_id(1.5) }}", &c).is_err());
        assert!(render("{{ user.profile_fields.by_id(none) }}", &c).is_err());
        assert!(render("{{ user.profile_fields.by_id() }}", &c).is_err());
        let keys = render("{{ user | list | join(',') }}", &c).unwrap();
        assert_eq!(
            keys,
            "id,email,first_name,last_name,username,profile_fields"
        );
        let partial = Caller {
            id: Some("m".into()),
            ..Caller::default()
        };
        assert_eq!(
            render("{{ user | list | join(',') }}", &partial).unwrap(),
            "id,profile_fields"
        );
    }

    #[test]
    fn tenant_id_comes_from_the_flag_or_the_claim() {
        let c = full();
        let fixed = TenantSource::Static("community-1".into());
        assert_eq!(fixed.tenant_id(None), Some("community-1"));
        assert_eq!(fixed.tenant_id(Some(&c)), Some("community-1"));
        let claim = TenantSource::Claim("community".into());
        assert_eq!(claim.tenant_id(Some(&c)), Some("9001"));
        assert_eq!(claim.tenant_id(None), None);
        assert!(claim.template_value(None).is_undefined());
        assert_eq!(TenantSource::None.tenant_id(Some(&c)), None);
        let text = Caller::from_claims(
            &claims(json!({"t": "acme"})),
            &TenantSource::Claim("t".into()),
        )
        .unwrap();
        assert_eq!(text.tenant_id.as_deref(), Some("acme"));
    }

    #[test]
    fn debug_never_shows_claim_values() {
        let shown = format!("{:?}", full());
        for secret in [
            "m-42",
            "ada@example.com",
            "Ada",
            "Lovelace",
            "Engineering",
            "9001",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
