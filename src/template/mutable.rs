//! Lists and dicts that a template changes in place, as Python's do: `list.append`,
//! `extend`, `insert`, `pop`, `remove`, `clear`, `sort`, `reverse`, `copy` and
//! `dict.update`, `setdefault`, `pop`, `popitem`, `clear`, `copy`. Registry authors build
//! lists in loops with `{% set _ = items.append(x) %}` (a `{% set %}` inside a loop cannot
//! change an outer variable, but a method can change the object it names).
//!
//! minijinja's values are immutable and its list and dict literals have no hook, so a
//! template that calls one of these methods gets its literals (and the values it assigns to
//! the names it changes) compiled into calls of [`mutable`] (`super::rewrite`), which makes
//! them [`PyList`] and [`PyDict`] objects. Other templates are compiled as they are.
//!
//! Each object holds its items behind a mutex (renders are single-threaded, so it is never
//! contended); items are cloned out before anything else runs, so a method that reads the
//! object it changes (`l.extend(l)`) does not deadlock. Growth is paid for with fuel, and a
//! container can never come to contain itself (Python allows it; here it would be an `Arc`
//! cycle, never freed): such an insert is an error.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use minijinja::value::{from_args, Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

use super::lazy_json;

/// The methods that change a list or dict in place: a template calling one of them gets
/// mutable literals.
pub(crate) const MUTATING_METHODS: &[&str] = &[
    "append",
    "extend",
    "insert",
    "pop",
    "remove",
    "clear",
    "sort",
    "reverse",
    "update",
    "setdefault",
    "popitem",
];

/// Most values [`mutable`] or a cycle check visits for one unit of fuel.
const NODES_PER_FUEL: usize = 4;

fn error(detail: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, detail.into())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Charges fuel for `nodes` values added or visited.
fn charge(state: &State, nodes: usize) -> Result<(), Error> {
    state.consume_fuel(nodes.div_ceil(NODES_PER_FUEL) as u64)
}

/// A Python list a template can change.
#[derive(Default)]
pub(crate) struct PyList {
    items: Mutex<Vec<Value>>,
}

/// A Python dict a template can change: insertion order, as Python keeps it.
#[derive(Default)]
pub(crate) struct PyDict {
    entries: Mutex<Vec<(Value, Value)>>,
}

impl fmt::Debug for PyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(lock(&self.items).iter()).finish()
    }
}

impl fmt::Debug for PyDict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(lock(&self.entries).iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl PyList {
    fn value(items: Vec<Value>) -> Value {
        Value::from_object(PyList {
            items: Mutex::new(items),
        })
    }

    fn snapshot(&self) -> Vec<Value> {
        lock(&self.items).clone()
    }
}

impl PyDict {
    fn value(entries: Vec<(Value, Value)>) -> Value {
        Value::from_object(PyDict {
            entries: Mutex::new(entries),
        })
    }

    fn snapshot(&self) -> Vec<(Value, Value)> {
        lock(&self.entries).clone()
    }

    fn get(&self, key: &Value) -> Option<Value> {
        lock(&self.entries)
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Sets `key` (kept in its place when present, added at the end otherwise).
    fn set(&self, key: Value, value: Value) {
        let mut entries = lock(&self.entries);
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key, value)),
        }
    }
}

/// The identity of a template-made container, for the cycle check.
fn identity(value: &Value) -> Option<usize> {
    if let Some(list) = value.downcast_object::<PyList>() {
        return Some(Arc::as_ptr(&list) as *const () as usize);
    }
    value
        .downcast_object::<PyDict>()
        .map(|dict| Arc::as_ptr(&dict) as *const () as usize)
}

/// Whether a value can hold template-made containers, so a walk must look inside it. JSON
/// parsed by `from_json` and strings cannot.
fn may_hold_containers(value: &Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
    ) && !lazy_json::is_lazy(value)
}

/// Refuses to put `value` into the container `target` if `value` holds `target`.
fn check_no_cycle(state: &State, target: &Value, value: &Value) -> Result<(), Error> {
    let Some(target) = identity(target) else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    let mut stack = vec![value.clone()];
    let mut visited = 0;
    while let Some(current) = stack.pop() {
        visited += 1;
        if let Some(id) = identity(&current) {
            if id == target {
                return Err(error(
                    "list.append: a list or dict cannot contain itself (Python would allow it; here it is refused)",
                ));
            }
            if !seen.insert(id) {
                continue;
            }
        }
        if !may_hold_containers(&current) {
            continue;
        }
        if current.kind() == ValueKind::Map {
            for key in current.try_iter()? {
                if let Some(item) = super::python::item(&current, &key) {
                    stack.push(item);
                }
            }
        } else {
            stack.extend(current.try_iter()?);
        }
    }
    charge(state, visited)
}

/// `__py_mutable(value)`: `value` as a list or dict the template can change, deeply (lists
/// and dicts inside it too). Containers that already are [`PyList`]/[`PyDict`] are returned
/// as they are, so two names for one list keep naming one list (`{% set b = a %}`). Tuples,
/// strings and other values are returned unchanged.
pub(crate) fn mutable(state: &State, value: &Value) -> Result<Value, Error> {
    let mut visited = 0;
    let converted = convert(value, &mut visited, 0)?;
    charge(state, visited)?;
    Ok(converted)
}

fn convert(value: &Value, visited: &mut usize, depth: usize) -> Result<Value, Error> {
    *visited += 1;
    if depth > 500 {
        return Err(error(
            "list: a value is nested too deeply to be made changeable",
        ));
    }
    if identity(value).is_some() || value.is_tuple() || value.is_kwargs() {
        return Ok(value.clone());
    }
    match value.kind() {
        ValueKind::Seq
            if value
                .as_object()
                .is_some_and(|o| o.repr() == ObjectRepr::Seq) =>
        {
            let mut items = Vec::new();
            for item in value.try_iter()? {
                items.push(convert(&item, visited, depth + 1)?);
            }
            Ok(PyList::value(items))
        }
        // The lazy result of `+` on two lists: a new list, as in Python.
        ValueKind::Iterable if value.len().is_some() => {
            let mut items = Vec::new();
            for item in value.try_iter()? {
                items.push(convert(&item, visited, depth + 1)?);
            }
            Ok(PyList::value(items))
        }
        ValueKind::Map if is_plain_map(value) => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = super::python::item(value, &key).unwrap_or(Value::UNDEFINED);
                entries.push((key, convert(&item, visited, depth + 1)?));
            }
            Ok(PyDict::value(entries))
        }
        _ => Ok(value.clone()),
    }
}

/// Plain data maps (literals, parsed JSON, the context's dicts) become [`PyDict`]s;
/// namespaces and the runtime's own objects (`request`, `user`, ...) keep their behaviour.
fn is_plain_map(value: &Value) -> bool {
    let Some(object) = value.as_object() else {
        return false;
    };
    if object.repr() != ObjectRepr::Map {
        return false;
    }
    let name = object.type_name();
    lazy_json::is_lazy(value) || name.contains("IndexMap") || name.contains("BTreeMap")
}

impl Object for PyList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let index = usize::try_from(key.clone()).ok()?;
        lock(&self.items).get(index).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.snapshot())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(lock(&self.items).len())
    }

    fn is_true(self: &Arc<Self>) -> bool {
        !lock(&self.items).is_empty()
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let this = Value::from_dyn_object(self.clone());
        match method {
            "append" => {
                let (item,): (Value,) = from_args(args)?;
                check_no_cycle(state, &this, &item)?;
                charge(state, NODES_PER_FUEL)?;
                lock(&self.items).push(item);
                Ok(Value::from(()))
            }
            "extend" => {
                let (other,): (Value,) = from_args(args)?;
                let added: Vec<Value> = other
                    .try_iter()
                    .map_err(|_| error("list.extend: the argument is not iterable"))?
                    .collect();
                for item in &added {
                    check_no_cycle(state, &this, item)?;
                }
                charge(state, added.len())?;
                lock(&self.items).extend(added);
                Ok(Value::from(()))
            }
            "insert" => {
                let (index, item): (i64, Value) = from_args(args)?;
                check_no_cycle(state, &this, &item)?;
                charge(state, NODES_PER_FUEL)?;
                let mut items = lock(&self.items);
                let len = items.len() as i64;
                let at = if index < 0 {
                    (len + index).max(0)
                } else {
                    index.min(len)
                };
                items.insert(at as usize, item);
                Ok(Value::from(()))
            }
            "pop" => {
                let (index,): (Option<i64>,) = from_args(args)?;
                let mut items = lock(&self.items);
                if items.is_empty() {
                    return Err(error("list.pop: pop from empty list"));
                }
                let len = items.len() as i64;
                let at = index.unwrap_or(-1);
                let at = if at < 0 { len + at } else { at };
                if !(0..len).contains(&at) {
                    return Err(error("list.pop: pop index out of range"));
                }
                Ok(items.remove(at as usize))
            }
            "remove" => {
                let (item,): (Value,) = from_args(args)?;
                let mut items = lock(&self.items);
                let at = items
                    .iter()
                    .position(|x| *x == item)
                    .ok_or_else(|| error("list.remove: the value is not in the list"))?;
                items.remove(at);
                Ok(Value::from(()))
            }
            "clear" => {
                let () = from_args(args)?;
                lock(&self.items).clear();
                Ok(Value::from(()))
            }
            "reverse" => {
                let () = from_args(args)?;
                lock(&self.items).reverse();
                Ok(Value::from(()))
            }
            "sort" => {
                let (_, kwargs): (Rest<Value>, Kwargs) = from_args(args)?;
                let reverse: Option<bool> = kwargs.get("reverse")?;
                kwargs.assert_all_used()?;
                let mut items = std::mem::take(&mut *lock(&self.items));
                charge(state, items.len())?;
                items.sort();
                if reverse.unwrap_or(false) {
                    items.reverse();
                }
                *lock(&self.items) = items;
                Ok(Value::from(()))
            }
            "copy" => {
                let () = from_args(args)?;
                let items = self.snapshot();
                charge(state, items.len())?;
                Ok(PyList::value(items))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

impl Object for PyDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(lock(&self.entries).iter().map(|(k, _)| k.clone()).collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(lock(&self.entries).len())
    }

    fn is_true(self: &Arc<Self>) -> bool {
        !lock(&self.entries).is_empty()
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let this = Value::from_dyn_object(self.clone());
        match method {
            "update" => {
                let (other, kwargs): (Option<Value>, Kwargs) = from_args(args)?;
                let mut added: Vec<(Value, Value)> = Vec::new();
                if let Some(other) = other {
                    if other.kind() == ValueKind::Map {
                        for key in other.try_iter()? {
                            let value =
                                super::python::item(&other, &key).unwrap_or(Value::UNDEFINED);
                            added.push((key, value));
                        }
                    } else {
                        for pair in other.try_iter().map_err(|_| {
                            error("dict.update: the argument is not a dict or a list of pairs")
                        })? {
                            let items: Vec<Value> = pair
                                .try_iter()
                                .map_err(|_| error("dict.update: an element is not a pair"))?
                                .collect();
                            let [key, value]: [Value; 2] = items.try_into().map_err(|_| {
                                error("dict.update: an element of the sequence is not a pair")
                            })?;
                            added.push((key, value));
                        }
                    }
                }
                for name in kwargs.args() {
                    added.push((Value::from(name), kwargs.peek::<Value>(name)?));
                }
                for name in kwargs.args() {
                    let _ = kwargs.get::<Value>(name);
                }
                for (_, value) in &added {
                    check_no_cycle(state, &this, value)?;
                }
                charge(state, added.len())?;
                for (key, value) in added {
                    self.set(key, value);
                }
                Ok(Value::from(()))
            }
            "setdefault" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                if let Some(present) = self.get(&key) {
                    return Ok(present);
                }
                let default = default.unwrap_or(Value::from(()));
                check_no_cycle(state, &this, &default)?;
                charge(state, NODES_PER_FUEL)?;
                self.set(key, default.clone());
                Ok(default)
            }
            "pop" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                let mut entries = lock(&self.entries);
                match entries.iter().position(|(k, _)| *k == key) {
                    Some(at) => Ok(entries.remove(at).1),
                    None => default.ok_or_else(|| error("dict.pop: the key is not in the dict")),
                }
            }
            "popitem" => {
                let () = from_args(args)?;
                let (key, value) = lock(&self.entries)
                    .pop()
                    .ok_or_else(|| error("dict.popitem: dictionary is empty"))?;
                Ok(Value::from(minijinja::value::Tuple::from([key, value])))
            }
            "clear" => {
                let () = from_args(args)?;
                lock(&self.entries).clear();
                Ok(Value::from(()))
            }
            "copy" => {
                let () = from_args(args)?;
                let entries = self.snapshot();
                charge(state, entries.len())?;
                Ok(PyDict::value(entries))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// A value with every [`PyList`]/[`PyDict`] in it turned back into plain, immutable values:
/// what an expression hands to code outside the render (a `for_each` list).
pub(crate) fn freeze(value: &Value) -> Value {
    if let Some(list) = value.downcast_object_ref::<PyList>() {
        return Value::from(list.snapshot().iter().map(freeze).collect::<Vec<_>>());
    }
    if let Some(dict) = value.downcast_object_ref::<PyDict>() {
        return Value::from_pairs(dict.snapshot().iter().map(|(k, v)| (k.clone(), freeze(v))));
    }
    value.clone()
}

#[cfg(test)]
mod tests {
    use crate::template::{Field, RenderLimits, TemplateSet};

    fn render(source: &str) -> Result<String, String> {
        let mut set = TemplateSet::for_tests();
        let id = set
            .add("t/0/body", Field::RequestBody, source)
            .map_err(|e| e.to_string())?;
        set.render(&id, &minijinja::Value::from(()))
            .map_err(|e| e.message)
    }

    #[test]
    fn a_list_cannot_come_to_contain_itself_even_through_a_namespace_or_a_dict() {
        for source in [
            "{% set l = [] %}{% set _ = l.append(l) %}",
            "{% set l = [] %}{% set d = {'l': l} %}{% set _ = l.append(d) %}",
            "{% set ns = namespace(l=[]) %}{% set _ = ns.l.append(ns) %}",
            "{% set d = {} %}{% set _ = d.update(me=d) %}",
            "{% set d = {} %}{% set _ = d.setdefault('x', [d]) %}",
            "{% set l = [] %}{% set _ = l.extend([[l]]) %}",
        ] {
            let err = render(source).unwrap_err();
            assert!(err.contains("cannot contain itself"), "{source}: {err}");
        }
    }

    #[test]
    fn growing_a_list_is_paid_for_with_fuel() {
        // Doubling a list 40 times would hold 2^40 items: fuel stops it long before.
        let err = render(
            "{% set l = [1] %}{% for _ in range(40) %}{% set _ = l.extend(l) %}{% endfor %}{{ l | length }}",
        )
        .unwrap_err();
        assert!(err.contains("fuel"), "{err}");
        // A realistic list is far from it.
        let ok = render(
            "{% set l = [] %}{% for i in range(2000) %}{% set _ = l.append({'i': i}) %}{% endfor %}{{ l | length }}",
        )
        .unwrap();
        assert_eq!(ok, "2000");
    }

    #[test]
    fn a_namespace_given_to_itself_fails_to_print_instead_of_overflowing_the_stack() {
        for source in [
            "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}",
            "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns | pprint }}",
            "{% set ns = namespace() %}{% set ns.me = [ns] %}{{ '%s' % ns }}",
        ] {
            // On a stack like the server's rendering threads have.
            let stack = crate::template::engine::render_stack_bytes(RenderLimits::default().fuel);
            let err = std::thread::Builder::new()
                .stack_size(stack)
                .spawn(move || render(source))
                .unwrap()
                .join()
                .unwrap()
                .unwrap_err();
            assert!(
                err.contains("nested too deeply to print"),
                "{source}: {err}"
            );
        }
    }

    #[test]
    fn templates_that_change_nothing_are_compiled_as_written() {
        // No mutating call: the literal stays minijinja's own (immutable) list.
        assert_eq!(render("{% set l = [1, 2] %}{{ l }}").unwrap(), "[1, 2]");
        assert!(render("{% set t = [1] %}{{ t.append }}").is_err());
    }
}
