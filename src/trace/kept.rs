//! Encoded attributes kept per thread (docs/spec.md §13): a CLIENT span's for the last few
//! (method, origin) pairs a thread called, a step span's for the last few steps it ran, a
//! SERVER span's for the last few (method, path) pairs it answered, so a span of a kept kind
//! copies its attributes instead of parsing and encoding them again.

use std::cell::RefCell;

use super::otlp::{key_value, Attr};

/// Runs `f` with the encoded CLIENT attributes of a call of `method` to `url`.
pub(super) fn client<R>(method: &str, url: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    with_cache(&CLIENT_ATTRIBUTES, |cache| match cache {
        Some(cache) => f(cache.get(method, url)),
        None => f(&client_attributes(method, url).0),
    })
}

/// Runs `f` with this thread's `cache`, or with `None` once the thread is ending and its
/// thread-locals are gone (then nothing is kept).
fn with_cache<C: 'static, R>(
    cache: &'static std::thread::LocalKey<RefCell<C>>,
    f: impl FnOnce(Option<&mut C>) -> R,
) -> R {
    let mut f = Some(f);
    let kept =
        cache.try_with(|cache| (f.take().expect("called once"))(Some(&mut cache.borrow_mut())));
    match kept {
        Ok(r) => r,
        Err(_) => (f.take().expect("not called when the thread-local was gone"))(None),
    }
}

/// Runs `f` with the encoded attributes of the span of step `step` (at `index`) of
/// `connector`.
pub(super) fn step<R>(connector: &str, step: &str, index: usize, f: impl FnOnce(&[u8]) -> R) -> R {
    let encode = || step_attributes(connector, step, index);
    with_cache(&STEP_ATTRIBUTES, |cache| match cache {
        Some(cache) => f(cache.get([connector, step, ""], index, encode)),
        None => f(&encode()),
    })
}

/// A CLIENT span's attributes for `method` and `url` (`http.request.method`,
/// `server.address`, `server.port` when the URL names one), encoded, and the length of the
/// URL's `scheme://host[:port]` when it has an http(s) scheme (the part they depend on).
fn client_attributes(method: &str, url: &str) -> (Vec<u8>, Option<usize>) {
    // By hand: `split_once("://")` runs a substring searcher for every call.
    let scheme = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .map(|rest| url.len() - rest.len());
    let rest = &url[scheme.unwrap_or(0)..];
    let host = &rest[..rest
        .bytes()
        .position(|b| b == b'/' || b == b'?')
        .unwrap_or(rest.len())];
    let (address, port) = match host.bytes().rposition(|b| b == b':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            (&host[..i], host[i + 1..].parse::<i64>().ok())
        }
        _ => (host, None),
    };
    let mut encoded = Vec::with_capacity(64 + address.len());
    key_value(&mut encoded, 9, "http.request.method", Attr::Str(method));
    key_value(&mut encoded, 9, "server.address", Attr::Str(address));
    if let Some(port) = port {
        key_value(&mut encoded, 9, "server.port", Attr::Int(port));
    }
    (encoded, scheme.map(|scheme| scheme + host.len()))
}

/// How many (method, origin) pairs each thread keeps the CLIENT attributes of: a registry's
/// steps call a handful of origins.
const CLIENT_ATTRIBUTE_ENTRIES: usize = 8;

thread_local! {
    static CLIENT_ATTRIBUTES: RefCell<ClientAttributes> =
        const {
            RefCell::new(ClientAttributes {
                entries: Vec::new(),
                next: 0,
                unkept: Vec::new(),
            })
        };
}

/// The encoded CLIENT attributes of the last few (method, origin) pairs this thread called:
/// parsing the URL and encoding the attributes again cost ~400 instructions per call.
struct ClientAttributes {
    entries: Vec<ClientEntry>,
    /// The entry a miss replaces once all are taken.
    next: usize,
    /// The attributes of the last call to a URL without an http(s) scheme.
    unkept: Vec<u8>,
}

struct ClientEntry {
    method: Box<str>,
    /// `scheme://host[:port]`: no `/` or `?` after the scheme.
    origin: Box<str>,
    encoded: Vec<u8>,
}

impl ClientAttributes {
    /// The attributes of a call of `method` to `url`: what [`client_attributes`] gives, kept
    /// for the URL's origin. A kept origin is a prefix of `url` followed by its end, `/` or
    /// `?`, so the host `client_attributes` would find in `url` is the origin's own.
    fn get(&mut self, method: &str, url: &str) -> &[u8] {
        let hit = self.entries.iter().position(|entry| {
            *entry.method == *method
                && url.starts_with(&*entry.origin)
                && matches!(
                    url.as_bytes().get(entry.origin.len()),
                    None | Some(b'/' | b'?')
                )
        });
        if let Some(i) = hit {
            return &self.entries[i].encoded;
        }
        let (encoded, origin) = client_attributes(method, url);
        let Some(origin) = origin else {
            // No http(s) scheme: not kept (the prefix rule above needs one).
            self.unkept = encoded;
            return &self.unkept;
        };
        let entry = ClientEntry {
            method: method.into(),
            origin: url[..origin].into(),
            encoded,
        };
        let i = keep(
            &mut self.entries,
            &mut self.next,
            CLIENT_ATTRIBUTE_ENTRIES,
            entry,
        );
        &self.entries[i].encoded
    }
}

/// A step span's attributes: `connector.permalink`, `connector.step.name`,
/// `connector.step.index`, encoded.
fn step_attributes(connector: &str, step: &str, index: usize) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(80 + connector.len() + step.len());
    key_value(&mut encoded, 9, "connector.permalink", Attr::Str(connector));
    key_value(&mut encoded, 9, "connector.step.name", Attr::Str(step));
    key_value(
        &mut encoded,
        9,
        "connector.step.index",
        Attr::Int(index as i64),
    );
    encoded
}

/// A SERVER span's attributes: `http.request.method`, `http.route`, `url.path`, encoded.
fn server_attributes(method: &str, route: &str, path: &str) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(64 + route.len() + path.len());
    key_value(&mut encoded, 9, "http.request.method", Attr::Str(method));
    key_value(&mut encoded, 9, "http.route", Attr::Str(route));
    key_value(&mut encoded, 9, "url.path", Attr::Str(path));
    encoded
}

/// Runs `f` with the encoded attributes of the SERVER span of a `method` request to `path`
/// (of `route`).
pub(super) fn server<R>(method: &str, route: &str, path: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    let encode = || server_attributes(method, route, path);
    with_cache(&SERVER_ATTRIBUTES, |cache| match cache {
        Some(cache) => f(cache.get([method, route, path], 0, encode)),
        None => f(&encode()),
    })
}

/// How many steps, and how many (method, path) pairs of execute requests, each thread keeps
/// the span attributes of.
const BY_TEXT_ENTRIES: usize = 16;

thread_local! {
    static STEP_ATTRIBUTES: RefCell<ByText> =
        const { RefCell::new(ByText { entries: Vec::new(), next: 0 }) };
    static SERVER_ATTRIBUTES: RefCell<ByText> =
        const { RefCell::new(ByText { entries: Vec::new(), next: 0 }) };
}

/// Encoded attributes kept by the texts and the number they are made of (never by address:
/// a reloaded registry may reuse one).
struct ByText {
    entries: Vec<TextEntry>,
    /// The entry a miss replaces once all are taken.
    next: usize,
}

struct TextEntry {
    texts: [Box<str>; 3],
    number: usize,
    encoded: Vec<u8>,
}

impl ByText {
    /// The attributes kept for `texts` and `number`, or those `encode` gives, then kept.
    fn get(&mut self, texts: [&str; 3], number: usize, encode: impl FnOnce() -> Vec<u8>) -> &[u8] {
        let hit = self.entries.iter().position(|entry| {
            entry.number == number
                && entry
                    .texts
                    .iter()
                    .zip(texts)
                    .all(|(kept, text)| **kept == *text)
        });
        if let Some(i) = hit {
            return &self.entries[i].encoded;
        }
        let entry = TextEntry {
            texts: texts.map(Box::from),
            number,
            encoded: encode(),
        };
        let i = keep(&mut self.entries, &mut self.next, BY_TEXT_ENTRIES, entry);
        &self.entries[i].encoded
    }
}

/// Puts `entry` in `entries` (at most `limit`; once full, over the one at `next`, then the
/// next one round), and gives its index.
fn keep<T>(entries: &mut Vec<T>, next: &mut usize, limit: usize, entry: T) -> usize {
    if entries.len() < limit {
        entries.push(entry);
        return entries.len() - 1;
    }
    let i = *next;
    entries[i] = entry;
    *next = (i + 1) % limit;
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_client_attributes_are_what_parsing_the_url_gives() {
        let mut urls: Vec<String> = [
            "http://a:80/x",
            "http://a:80?q=1",
            "http://a:8080/x",
            "http://a:80",
            "https://a:80/x",
            "http://a/x",
            "http://a:/x",
            "http://a:80x/y",
            "http:/x",
            "a.com/x",
            "http://[::1]:9000/p",
            "http://h#frag/x",
            "",
        ]
        .iter()
        .map(|u| u.to_string())
        .collect();
        // More origins than are kept, so entries are replaced while the others are asked.
        urls.extend((0..20).map(|i| format!("https://host{i}.example:{}/path", 8000 + i)));
        let mut cache = ClientAttributes {
            entries: Vec::new(),
            next: 0,
            unkept: Vec::new(),
        };
        // Calls to one origin share its entry.
        for url in ["http://a:80/x", "http://a:80/y?z=1", "http://a:80"] {
            assert_eq!(
                cache.get("GET", url),
                client_attributes("GET", url).0.as_slice()
            );
        }
        assert_eq!(cache.entries.len(), 1);
        for round in 0..3 {
            for (i, url) in urls.iter().enumerate() {
                let method = if (i + round) % 2 == 0 { "GET" } else { "POST" };
                assert_eq!(
                    cache.get(method, url),
                    client_attributes(method, url).0.as_slice(),
                    "{method} {url}"
                );
            }
        }
        assert_eq!(cache.entries.len(), CLIENT_ATTRIBUTE_ENTRIES);
    }

    #[test]
    fn kept_step_attributes_are_what_encoding_them_gives() {
        let mut cache = ByText {
            entries: Vec::new(),
            next: 0,
        };
        let get = |cache: &mut ByText, connector: &str, step: &str, index: usize| {
            cache
                .get([connector, step, ""], index, || {
                    step_attributes(connector, step, index)
                })
                .to_vec()
        };
        // More steps than are kept; pairs whose texts joined would be equal stay apart.
        let mut steps: Vec<(String, String, usize)> = (0..40)
            .map(|i| (format!("c{}", i % 5), format!("s{i}"), i % 3))
            .collect();
        steps.push(("ab".into(), "c".into(), 0));
        steps.push(("a".into(), "bc".into(), 0));
        steps.push(("a".into(), "bc".into(), 1));
        for _ in 0..3 {
            for (connector, step, index) in &steps {
                assert_eq!(
                    get(&mut cache, connector, step, *index),
                    step_attributes(connector, step, *index)
                );
            }
        }
        assert_eq!(cache.entries.len(), BY_TEXT_ENTRIES);
        // A kept step is found, not put again.
        get(&mut cache, "x", "y", 0);
        let before = (cache.entries.len(), cache.next);
        get(&mut cache, "x", "y", 0);
        assert_eq!((cache.entries.len(), cache.next), before);
    }
}
