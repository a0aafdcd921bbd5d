//! The platform's template functions: `get_secret`, `get_variable`, `now` and `jwt_encode`;
//! and Jinja2's default globals that minijinja lacks: `cycler` and `joiner`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use minijinja::value::{from_args, Kwargs, Object, ObjectRepr, Rest, Value};
use minijinja::{Environment, Error, ErrorKind, State};

use super::field::Field;
use super::filters::own_error;
use super::secrets::{SecretStore, Variables};

thread_local! {
    /// Whether `get_secret()` answers with its own template text instead of the value (set
    /// only around [`with_secrets_as_text`]).
    static SECRETS_AS_TEXT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `render` (synchronous renders on this thread) with every `get_secret('x')` giving
/// the text `{{ get_secret('x') }}` rather than the secret: what `X-Debug-Request` shows
/// (docs/spec.md §14). A secret value cannot come out of such a render.
pub(crate) fn with_secrets_as_text<R>(render: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SECRETS_AS_TEXT.with(|flag| flag.set(false));
        }
    }
    SECRETS_AS_TEXT.with(|flag| flag.set(true));
    let _reset = Reset;
    render()
}

/// Registers the functions on `env`, reading secrets and variables from the given stores.
pub(crate) fn register(
    env: &mut Environment<'static>,
    secrets: Arc<SecretStore>,
    variables: Arc<Variables>,
) {
    env.add_function("get_secret", move |state: &State, name: &str| -> Result<Value, Error> {
        let field = Field::of_template(state.name());
        if !field.is_some_and(Field::allows_secrets) {
            return Err(own_error(
                "get_secret: secrets may only be read in header values, query values and authentication config",
            ));
        }
        if SECRETS_AS_TEXT.with(Cell::get) {
            return Ok(Value::from(format!("{{{{ get_secret('{name}') }}}}")));
        }
        match secrets.get(name) {
            Some(secret) => Ok(Value::from(secret.expose())),
            None => Err(own_error(format!(
                "get_secret: secret '{name}' is not configured (add a file '{name}' to the secrets directory or set CONNECTOR_SECRET_{})",
                name.to_ascii_uppercase()
            ))),
        }
    });
    env.add_function("get_variable", move |name: &str| -> Value {
        match variables.get(name) {
            // Variables are operator configuration, trusted like the template text itself:
            // strings are marked safe so a URL host from a variable is not percent-encoded.
            Some(serde_json::Value::String(s)) => Value::from_safe_string(s.clone()),
            Some(other) => Value::from(minijinja::value::Serde(other)),
            None => Value::UNDEFINED,
        }
    });
    env.add_function(
        "now",
        |offset: Option<i64>, kwargs: Kwargs| -> Result<i64, Error> {
            let offset = match offset {
                Some(o) => o,
                None => kwargs.get::<Option<i64>>("offset")?.unwrap_or(0),
            };
            kwargs.assert_all_used()?;
            Ok(unix_now() + offset)
        },
    );
    env.add_function("jwt_encode", jwt_encode);
    env.add_function("cycler", cycler);
    env.add_function("joiner", joiner);
}

/// Jinja2's `cycler(*items)`: `.next()` gives the items in turn, `.current` the one `next()`
/// gives next, `.reset()` starts over.
fn cycler(items: Rest<Value>) -> Result<Value, Error> {
    if items.0.is_empty() {
        return Err(own_error("cycler: at least one item is needed"));
    }
    Ok(Value::from_object(Cycler {
        items: items.0,
        position: AtomicUsize::new(0),
    }))
}

#[derive(Debug)]
struct Cycler {
    items: Vec<Value>,
    position: AtomicUsize,
}

impl Object for Cycler {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "current" => Some(self.items[self.position.load(Ordering::Relaxed)].clone()),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let () = from_args(args)?;
        match method {
            "next" => {
                let at = self.position.load(Ordering::Relaxed);
                self.position
                    .store((at + 1) % self.items.len(), Ordering::Relaxed);
                Ok(self.items[at].clone())
            }
            "reset" => {
                self.position.store(0, Ordering::Relaxed);
                Ok(Value::from(()))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// Jinja2's `joiner(sep=', ')`: calling it gives `''` the first time, `sep` after that.
fn joiner(sep: Option<Value>) -> Value {
    Value::from_object(Joiner {
        sep: sep.unwrap_or_else(|| Value::from(", ")),
        used: AtomicBool::new(false),
    })
}

#[derive(Debug)]
struct Joiner {
    sep: Value,
    used: AtomicBool,
}

impl Object for Joiner {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let () = from_args(args)?;
        Ok(if self.used.swap(true, Ordering::Relaxed) {
            self.sep.clone()
        } else {
            Value::from("")
        })
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `jwt_encode(payload, key, algorithm='HS256', headers=None)`, positional or by keyword.
fn jwt_encode(
    state: &State,
    payload: Value,
    rest: Rest<Value>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    if Field::of_template(state.name()) == Some(Field::ResponseBody) {
        return Err(own_error("jwt_encode: not available in response_body"));
    }
    let mut positional = rest.0.into_iter();
    let mut arg = |name: &str| -> Result<Option<Value>, Error> {
        match positional.next() {
            Some(v) => Ok(Some(v)),
            None => kwargs.get::<Option<Value>>(name),
        }
    };
    let key =
        arg("key")?.ok_or_else(|| own_error("jwt_encode: missing the signing key argument"))?;
    let algorithm = arg("algorithm")?;
    let headers = arg("headers")?;
    kwargs.assert_all_used()?;
    let claims = serde_json::to_value(&payload)
        .map_err(|_| own_error("jwt_encode: the payload cannot be converted to JSON"))?;
    let algorithm = algorithm
        .as_ref()
        .and_then(|a| a.as_str().map(str::to_string))
        .unwrap_or_else(|| "HS256".to_string());
    let headers = match headers.filter(|h| !h.is_none() && !h.is_undefined()) {
        Some(h) => match serde_json::to_value(&h) {
            Ok(serde_json::Value::Object(map)) => Some(map),
            _ => return Err(own_error("jwt_encode: headers must be a dict")),
        },
        None => None,
    };
    let key = key
        .as_str()
        .ok_or_else(|| own_error("jwt_encode: the key must be a string"))?;
    crate::jwt::sign(&claims, key, &algorithm, headers.as_ref())
        .map_err(|e| own_error(format!("jwt_encode: {e}")))
}
