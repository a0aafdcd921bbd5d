//! Load-time static checks of one template: which variables, steps, attributes, filters
//! and functions it uses, and whether the field it fills allows them (docs/spec.md §2).
//!
//! A run never meets a typo that could be seen here: `steps.auht.body`, a step that runs
//! later, `get_secret()` in a URL or an unknown filter are reported when the registry loads.

use std::collections::HashSet;

use minijinja::machinery::ast::{Call, CallArg, Expr, Stmt};
use minijinja::machinery::parse;
use minijinja::syntax::SyntaxConfig;
use minijinja::Environment;

use super::field::Field;
use super::secrets::is_secret_name;
use crate::identity::caller::USER_ATTRIBUTES;

/// Which top-level variables a template's context has (docs/spec.md §2): those of a simple
/// connector or those of a composite step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextKind {
    /// A simple connector's: `pathParams`, `body_text`, `body_raw`, `request`.
    Simple,
    /// A composite step's: `steps`, `request`.
    Composite,
}

/// Where a template sits, which decides what it may read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// The field the template fills.
    pub field: Field,
    /// Simple connector or composite step.
    pub kind: ContextKind,
    /// Names of the steps that run before this one (composites).
    pub earlier_steps: &'a [String],
    /// This step and the steps after it (composites).
    pub current_and_later_steps: &'a [String],
    /// Declared path parameters (simple connectors).
    pub path_params: &'a [String],
    /// Whether `item` and `item_index` exist here (the request fields of a `for_each` step).
    pub item: bool,
}

/// One problem found in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// What is wrong and how to fix it.
    pub message: String,
    /// 1-based line in the template, when known.
    pub line: Option<usize>,
}

/// What a template uses, and the problems found in it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Analysis {
    /// Errors: the registry cannot load with these.
    pub errors: Vec<Finding>,
    /// Secrets read with a literal name.
    pub secrets: Vec<String>,
    /// Variables read with a literal name, and whether a `default` guards the read.
    pub variables: Vec<(String, bool)>,
    /// Earlier steps this template reads.
    pub step_reads: Vec<String>,
    /// Whether it reads `user` (the verified caller, docs/spec.md §9).
    pub reads_user: bool,
    /// Whether it reads `tenant_id`.
    pub reads_tenant_id: bool,
}

const STEP_ATTRIBUTES: &[&str] = &[
    "body",
    "status_code",
    "headers",
    "skipped",
    "error",
    "items",
];
const RESPONSE_ATTRIBUTES: &[&str] = &["body", "status_code", "headers"];
const REQUEST_ATTRIBUTES: &[&str] = &["body_text", "body_raw", "query_parameters", "headers"];
const LOCAL_NAMES: &[&str] = &["loop", "self", "caller", "varargs", "kwargs", "super"];

/// Why `get_secret` may only appear as a direct call with a literal name.
const SECRET_CALL_ONLY: &str = "get_secret can only be called directly with a literal name, e.g. get_secret('api_key'); it cannot be assigned, passed, stored or used as a value";

/// Checks one template; a syntax error is reported as the only finding.
pub(crate) fn analyze(source: &str, scope: &Scope<'_>, env: &Environment<'_>) -> Analysis {
    let ast = match parse(source, "<template>", SyntaxConfig::default()) {
        Ok(ast) => ast,
        Err(err) => {
            return Analysis {
                errors: vec![Finding {
                    message: format!(
                        "template syntax error: {}",
                        err.detail().unwrap_or("invalid syntax")
                    ),
                    line: err.line(),
                }],
                ..Analysis::default()
            }
        }
    };
    let mut walker = Walker {
        scope,
        env,
        assigned: HashSet::new(),
        out: Analysis::default(),
    };
    collect_assigned(&ast, &mut walker.assigned);
    if walker.assigned.contains("get_secret") {
        walker.out.errors.push(Finding {
            message: SECRET_CALL_ONLY.into(),
            line: None,
        });
    }
    walker.stmt(&ast);
    walker.out
}

fn collect_assigned<'a>(stmt: &Stmt<'a>, out: &mut HashSet<String>) {
    fn target(expr: &Expr<'_>, out: &mut HashSet<String>) {
        match expr {
            Expr::Var(v) => {
                out.insert(v.id.to_string());
            }
            Expr::List(l) => l.items.iter().for_each(|e| target(e, out)),
            Expr::Tuple(t) => t.items.iter().for_each(|e| target(e, out)),
            _ => {}
        }
    }
    let body =
        |b: &[Stmt<'a>], out: &mut HashSet<String>| b.iter().for_each(|s| collect_assigned(s, out));
    match stmt {
        Stmt::Template(t) => body(&t.children, out),
        Stmt::ForLoop(f) => {
            target(&f.target, out);
            body(&f.body, out);
            body(&f.else_body, out);
        }
        Stmt::IfCond(i) => {
            body(&i.true_body, out);
            body(&i.false_body, out);
        }
        Stmt::WithBlock(w) => {
            w.assignments.iter().for_each(|(t, _)| target(t, out));
            body(&w.body, out);
        }
        Stmt::Set(s) => target(&s.target, out),
        Stmt::SetBlock(s) => {
            target(&s.target, out);
            body(&s.body, out);
        }
        Stmt::AutoEscape(a) => body(&a.body, out),
        Stmt::FilterBlock(f) => body(&f.body, out),
        Stmt::Macro(m) => {
            out.insert(m.name.to_string());
            m.args.iter().for_each(|a| target(a, out));
            body(&m.body, out);
        }
        Stmt::CallBlock(c) => {
            c.macro_decl.args.iter().for_each(|a| target(a, out));
            body(&c.macro_decl.body, out);
        }
        _ => {}
    }
}

/// One step of an attribute chain such as `steps['fetch-user'].body`.
enum Segment<'a, 'e> {
    Name(String),
    Other(&'e Expr<'a>),
}

struct Walker<'s, 'e> {
    scope: &'s Scope<'s>,
    env: &'s Environment<'e>,
    assigned: HashSet<String>,
    out: Analysis,
}

impl<'s, 'e> Walker<'s, 'e> {
    fn error(&mut self, line: usize, message: String) {
        let finding = Finding {
            message,
            line: Some(line),
        };
        if !self.out.errors.contains(&finding) {
            self.out.errors.push(finding);
        }
    }

    fn stmts<'a>(&mut self, stmts: &[Stmt<'a>]) {
        stmts.iter().for_each(|s| self.stmt(s));
    }

    fn stmt<'a>(&mut self, stmt: &Stmt<'a>) {
        match stmt {
            Stmt::Template(t) => self.stmts(&t.children),
            Stmt::EmitExpr(e) => self.expr(&e.expr, false),
            Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) => {}
            Stmt::ForLoop(f) => {
                self.expr(&f.iter, false);
                if let Some(filter) = &f.filter_expr {
                    self.expr(filter, false);
                }
                self.stmts(&f.body);
                self.stmts(&f.else_body);
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr, false);
                self.stmts(&i.true_body);
                self.stmts(&i.false_body);
            }
            Stmt::WithBlock(w) => {
                for (_, value) in &w.assignments {
                    self.expr(value, false);
                }
                self.stmts(&w.body);
            }
            Stmt::Set(s) => self.expr(&s.expr, false),
            Stmt::SetBlock(s) => {
                if let Some(filter) = &s.filter {
                    self.expr(filter, false);
                }
                self.stmts(&s.body);
            }
            Stmt::AutoEscape(a) => {
                if self.scope.field == Field::Url {
                    self.error(a.span().start_line as usize, "{% autoescape %} is not available in the url: values interpolated into a URL are always percent-encoded".into());
                }
                self.stmts(&a.body)
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter, false);
                self.stmts(&f.body);
            }
            Stmt::Macro(m) => {
                m.defaults.iter().for_each(|d| self.expr(d, false));
                self.stmts(&m.body);
            }
            Stmt::CallBlock(c) => {
                self.call(&c.call, false, c.span().start_line as usize);
                self.stmts(&c.macro_decl.body);
            }
            Stmt::Do(d) => self.call(&d.call, false, d.span().start_line as usize),
            Stmt::Block(s) => self.not_inline(s.span().start_line as usize),
            Stmt::Extends(s) => self.not_inline(s.span().start_line as usize),
            Stmt::Include(s) => self.not_inline(s.span().start_line as usize),
            Stmt::Import(s) => self.not_inline(s.span().start_line as usize),
            Stmt::FromImport(s) => self.not_inline(s.span().start_line as usize),
        }
    }

    /// Templates are self-contained: nothing can be loaded from elsewhere.
    fn not_inline(&mut self, line: usize) {
        self.error(
            line,
            "{% extends %}, {% block %}, {% include %} and {% import %} are not available in registry templates; write the template inline".into(),
        );
    }

    fn call_args<'a>(&mut self, args: &[CallArg<'a>]) {
        for arg in args {
            match arg {
                CallArg::Pos(e)
                | CallArg::Kwarg(_, e)
                | CallArg::PosSplat(e)
                | CallArg::KwargSplat(e) => self.expr(e, false),
            }
        }
    }

    /// Visits an expression; `guarded` is true where Jinja2 code tests for undefined
    /// (`x is defined`, `x | default(...)`), so a missing name is not an error there.
    fn expr<'a>(&mut self, expr: &Expr<'a>, guarded: bool) {
        match expr {
            Expr::Var(_) | Expr::GetAttr(_) | Expr::GetItem(_) => self.chain(expr, guarded, false),
            Expr::Const(_) => {}
            Expr::Slice(s) => {
                self.expr(&s.expr, guarded);
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(part, false);
                }
            }
            Expr::UnaryOp(u) => self.expr(&u.expr, false),
            Expr::BinOp(b) => {
                self.expr(&b.left, false);
                self.expr(&b.right, false);
            }
            Expr::Compare(c) => {
                self.expr(&c.expr, false);
                c.ops.iter().for_each(|op| self.expr(&op.expr, false));
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr, false);
                self.expr(&i.true_expr, false);
                if let Some(f) = &i.false_expr {
                    self.expr(f, false);
                }
            }
            Expr::Filter(f) => {
                let line = expr.span().start_line as usize;
                if !filter_exists(self.env, f.name) {
                    self.error(line, format!("unknown filter '{}'", f.name));
                }
                if f.name == "safe" && self.scope.field == Field::Url {
                    // A safe value is inserted unencoded: request data could add path
                    // segments (`%2e%2e`, `..;`, `a\..\admin`), a query or a fragment.
                    self.error(line, "the safe filter is not available in the url: it would insert the value unencoded, so request data could change the path, add a query or cut it with '#'; values are percent-encoded without it (use urlencode to keep '/')".into());
                }
                if let Some(inner) = &f.expr {
                    self.expr(inner, matches!(f.name, "default" | "d"));
                }
                self.call_args(&f.args);
            }
            Expr::Test(t) => {
                let line = expr.span().start_line as usize;
                if !test_exists(self.env, t.name) {
                    self.error(line, format!("unknown test '{}'", t.name));
                }
                self.expr(&t.expr, matches!(t.name, "defined" | "undefined"));
                self.call_args(&t.args);
            }
            Expr::Call(c) => self.call(c, guarded, expr.span().start_line as usize),
            Expr::List(l) => l.items.iter().for_each(|e| self.expr(e, false)),
            Expr::Tuple(t) => t.items.iter().for_each(|e| self.expr(e, false)),
            Expr::Map(m) => {
                m.keys.iter().for_each(|e| self.expr(e, false));
                m.values.iter().for_each(|e| self.expr(e, false));
            }
        }
    }

    /// Visits a call (`f(...)`, `{% do f(...) %}`, `{% call f(...) %}`): a function called
    /// by name is checked as that function, anything else as an expression.
    fn call<'a>(&mut self, call: &Call<'a>, guarded: bool, line: usize) {
        match &call.expr {
            Expr::Var(v) if !self.assigned.contains(v.id) => {
                self.function_call(v.id, &call.args, guarded, line)
            }
            callee @ (Expr::GetAttr(_) | Expr::GetItem(_)) => self.chain(callee, guarded, true),
            callee => self.expr(callee, false),
        }
        self.call_args(&call.args);
    }

    /// Checks an attribute/item chain that starts at a variable: `steps.auth.body`,
    /// `request.query_parameters.page`, `pathParams.id`. With `method_call`, the last
    /// segment is a method name (`.split(...)`) and is not checked as an attribute.
    fn chain<'a>(&mut self, expr: &Expr<'a>, guarded: bool, method_call: bool) {
        let mut segments: Vec<Segment<'a, '_>> = Vec::new();
        let mut cursor = expr;
        loop {
            match cursor {
                Expr::GetAttr(g) => {
                    segments.push(Segment::Name(g.name.to_string()));
                    cursor = &g.expr;
                }
                Expr::GetItem(g) => {
                    match g
                        .subscript_expr
                        .as_const()
                        .and_then(|v| v.as_str().map(str::to_string))
                    {
                        Some(name) => segments.push(Segment::Name(name)),
                        None => segments.push(Segment::Other(&g.subscript_expr)),
                    }
                    cursor = &g.expr;
                }
                _ => break,
            }
        }
        segments.reverse();
        if method_call {
            segments.pop();
        }
        for segment in &segments {
            if let Segment::Other(sub) = segment {
                self.expr(sub, false);
            }
        }
        let line = expr.span().start_line as usize;
        match cursor {
            Expr::Var(v) => {
                let names: Vec<Option<&str>> = segments
                    .iter()
                    .map(|s| match s {
                        Segment::Name(n) => Some(n.as_str()),
                        Segment::Other(_) => None,
                    })
                    .collect();
                self.variable(v.id, &names, guarded, line);
            }
            other => self.expr(other, guarded),
        }
    }

    fn visible(&self, name: &str) -> bool {
        let s = self.scope;
        match name {
            "request" => true,
            "steps" => s.kind == ContextKind::Composite,
            "pathParams" | "body_text" | "body_raw" => s.kind == ContextKind::Simple,
            "response" => s.field == Field::ResponseBody,
            "item" | "item_index" => s.item,
            // The caller (docs/spec.md §9): whether the server provides it is checked by the
            // registry build, which knows the server's identity settings.
            "user" | "tenant_id" => true,
            _ => false,
        }
    }

    fn variable(&mut self, root: &str, path: &[Option<&str>], guarded: bool, line: usize) {
        if root == "get_secret" {
            // Used as a value, it could be called later with any name (`{% set gs = get_secret
            // %}{{ gs(request.query_parameters.n) }}`), so the literal-name rule would not hold.
            self.error(line, SECRET_CALL_ONLY.into());
            return;
        }
        if self.assigned.contains(root) || LOCAL_NAMES.contains(&root) {
            // A template's own `user` (`{% set user = ... %}`) is not the caller. A read of
            // the caller that such a local hides is not counted: the run then gets no `user`
            // (it is given only to connectors that read it), so nothing of a caller leaks.
            return;
        }
        match root {
            "user" => self.out.reads_user = true,
            "tenant_id" => self.out.reads_tenant_id = true,
            _ => {}
        }
        if self.visible(root) {
            self.context_path(root, path, guarded, line);
            return;
        }
        if self.env.globals().any(|(name, _)| name == root) {
            return;
        }
        if guarded {
            return;
        }
        let hint = match root {
            "steps" => " (steps exist only in composite connectors)".to_string(),
            "pathParams" => " (path parameters exist only in simple connectors)".to_string(),
            "body_text" | "body_raw" => {
                format!(" (composite steps read the caller's body as request.{root})")
            }
            "response" => " (response is only available in response_body)".to_string(),
            "item" | "item_index" => {
                " (item and item_index exist only in the request fields of a for_each step)"
                    .to_string()
            }
            _ => String::new(),
        };
        self.error(line, format!("unknown variable '{root}'{hint}"));
    }

    fn context_path(&mut self, root: &str, path: &[Option<&str>], guarded: bool, line: usize) {
        let first = path.first().copied().flatten();
        let second = path.get(1).copied().flatten();
        match (root, first) {
            ("steps", Some(step)) => self.step_read(step, second, path.len() > 1, guarded, line),
            ("request", Some(attr)) => {
                if !REQUEST_ATTRIBUTES.contains(&attr) {
                    if !guarded {
                        self.error(line, format!(
                            "request has no attribute '{attr}'; use body_text, body_raw, query_parameters or headers"
                        ));
                    }
                } else if attr == "headers" {
                    if let Some(header) = second {
                        if !header.eq_ignore_ascii_case("content-type") && !guarded {
                            self.error(
                                line,
                                format!(
                                    "request.headers exposes only Content-Type, not '{header}'"
                                ),
                            );
                        }
                    }
                }
            }
            ("user", Some(attr)) if !USER_ATTRIBUTES.contains(&attr) && !guarded => {
                self.error(
                    line,
                    format!(
                        "user has no attribute '{attr}'; use {}",
                        USER_ATTRIBUTES.join(", ")
                    ),
                );
            }
            ("response", Some(attr)) if !RESPONSE_ATTRIBUTES.contains(&attr) && !guarded => {
                self.error(
                    line,
                    format!("response has no attribute '{attr}'; use body, status_code or headers"),
                );
            }
            ("pathParams", Some(param))
                if !self.scope.path_params.iter().any(|p| p == param) && !guarded =>
            {
                let declared = if self.scope.path_params.is_empty() {
                    "none are declared".to_string()
                } else {
                    format!("declared: {}", self.scope.path_params.join(", "))
                };
                self.error(
                    line,
                    format!(
                        "path parameter '{param}' is not declared in path_parameters ({declared})"
                    ),
                );
            }
            _ => {}
        }
    }

    fn step_read(
        &mut self,
        step: &str,
        attr: Option<&str>,
        has_attr: bool,
        guarded: bool,
        line: usize,
    ) {
        let scope = self.scope;
        if scope.earlier_steps.iter().any(|s| s == step) {
            if !self.out.step_reads.iter().any(|s| s == step) {
                self.out.step_reads.push(step.to_string());
            }
            if let Some(attr) = attr {
                if !STEP_ATTRIBUTES.contains(&attr) && !guarded {
                    self.error(
                        line,
                        format!(
                        "steps.{step} has no attribute '{attr}'; use body, status_code, headers, skipped, error or items"
                    ),
                    );
                }
            } else if !has_attr {
                // `steps.auth` alone is a dict; nothing more to check.
            }
            return;
        }
        if guarded {
            return;
        }
        let earlier = if scope.earlier_steps.is_empty() {
            "this is the first step, so no step results exist yet".to_string()
        } else {
            format!("earlier steps: {}", scope.earlier_steps.join(", "))
        };
        if scope
            .current_and_later_steps
            .first()
            .is_some_and(|s| s == step)
        {
            self.error(
                line,
                format!("a step cannot read its own result 'steps.{step}' ({earlier})"),
            );
        } else if scope.current_and_later_steps.iter().any(|s| s == step) {
            self.error(
                line,
                format!(
                "step '{step}' runs after this one, so its result does not exist yet ({earlier})"
            ),
            );
        } else {
            let all = scope
                .earlier_steps
                .iter()
                .chain(scope.current_and_later_steps);
            let hyphenated = all
                .into_iter()
                .find(|s| s.contains('-') && s.starts_with(&format!("{step}-")));
            let hint = match hyphenated {
                Some(full) => format!("; for a hyphenated name write steps['{full}']"),
                None => String::new(),
            };
            self.error(line, format!("there is no step '{step}' ({earlier}){hint}"));
        }
    }

    fn function_call<'a>(&mut self, name: &str, args: &[CallArg<'a>], guarded: bool, line: usize) {
        let literal = |args: &[CallArg<'a>]| -> Option<String> {
            match args.first() {
                Some(CallArg::Pos(e)) => e.as_const().and_then(|v| v.as_str().map(str::to_string)),
                _ => None,
            }
        };
        match name {
            "get_secret" => {
                if !self.scope.field.allows_secrets() {
                    self.error(line, format!(
                        "get_secret() may only be used in header values, query parameter values and authentication config, not in {}",
                        field_label(self.scope.field)
                    ));
                }
                match literal(args) {
                    Some(secret) if !is_secret_name(&secret) => self.error(line, format!(
                        "'{secret}' is not a valid secret name: secret names are letters, digits and '_' (e.g. get_secret('api_key'))"
                    )),
                    Some(secret) => {
                        if !self.out.secrets.contains(&secret) {
                            self.out.secrets.push(secret);
                        }
                    }
                    None => self.error(line, "get_secret() needs the secret's name as a literal string, e.g. get_secret('api_key')".into()),
                }
            }
            "get_variable" => match literal(args) {
                Some(var) => self.out.variables.push((var, guarded)),
                None => self.error(
                    line,
                    "get_variable() needs the variable's name as a literal string".into(),
                ),
            },
            "jwt_encode" if !self.scope.field.allows_jwt_encode() => {
                self.error(
                    line,
                    "jwt_encode() is not available in response_body".into(),
                );
            }
            _ => {
                if !self.env.globals().any(|(n, _)| n == name) {
                    self.variable(name, &[], false, line);
                }
            }
        }
    }
}

fn field_label(field: Field) -> &'static str {
    match field {
        Field::Url => "the url",
        Field::HeaderValue => "a header value",
        Field::QueryValue => "a query value",
        Field::AuthConfig => "authentication config",
        Field::RequestBody => "request_body",
        Field::ResponseBody => "response_body",
        Field::When => "when",
        Field::ForEach => "for_each",
        Field::CompositeResponseBody => "the composite's response_body",
        Field::RateLimitKey => "rate_limit.key",
    }
}

/// Filters are probed with an undefined argument: an unknown one fails with
/// `UnknownFilter`, a known one succeeds or fails otherwise. Filters are pure.
fn filter_exists(env: &Environment<'_>, name: &str) -> bool {
    let mut state = env.empty_state();
    !matches!(
        state
            .apply_filter(name, &[minijinja::Value::UNDEFINED])
            .map_err(|e| e.kind()),
        Err(minijinja::ErrorKind::UnknownFilter)
    )
}

fn test_exists(env: &Environment<'_>, name: &str) -> bool {
    let mut state = env.empty_state();
    !matches!(
        state
            .perform_test(name, &[minijinja::Value::UNDEFINED])
            .map_err(|e| e.kind()),
        Err(minijinja::ErrorKind::UnknownTest)
    )
}
