//! Compile-time rewrites of the Jinja2 constructs minijinja's engine cannot be hooked for:
//!
//! - the `%` operator, which minijinja only has for numbers: `'%s-%d' % (a, b)` is compiled as
//!   `__py_mod(('%s-%d'), ((a, b)))` ([`super::pyformat::py_mod`]: Python's formatting on
//!   strings, Python's modulo on numbers). `x % 2` with a number literal on the right and no
//!   string literal on the left stays the engine's operator (it is arithmetic in practice,
//!   and the engine's modulo is Python's);
//! - lists and dicts changed in place (`{% set _ = items.append(x) %}`): in a template that
//!   calls a mutating method ([`super::mutable::MUTATING_METHODS`]), every list and dict
//!   literal, and the value assigned by `{% set name = ... %}` to a name such a method is
//!   called on, is compiled as `__py_mutable(...)` ([`super::mutable::mutable`]); so is the
//!   result of `+`, which minijinja computes lazily (`m = l + [x]` would otherwise change
//!   when `l` does).
//!
//! minijinja compiles templates only from source text, so the rewrite works on the text, but
//! it is driven by the parsed template: each edit is an insertion at a node's exact span (or
//! the `%` operator token between two operands), never a textual search, so strings,
//! comments, `{% raw %}` and tag delimiters are never touched. Newlines are never added or
//! removed, so errors keep their line numbers; [`Rewrite::original_offset`] maps positions
//! back for the snippet an error quotes. The rewritten text is parsed again and its
//! structure compared with the original's (with the inserted calls taken out): if they
//! differ, the template is compiled as written and behaves as minijinja's would.

use minijinja::machinery::ast::{CallArg, Expr, Stmt};
use minijinja::machinery::{parse, tokenize, Token};
use minijinja::syntax::SyntaxConfig;

use super::mutable::MUTATING_METHODS;

/// The function a `%` operator is compiled into.
pub(crate) const PY_MOD: &str = "__py_mod";
/// The function that makes a list or dict changeable.
pub(crate) const PY_MUTABLE: &str = "__py_mutable";

/// One insertion into the source: `text` at byte `at` of the original, replacing `removed`
/// bytes there.
#[derive(Debug, Clone)]
struct Edit {
    at: usize,
    removed: usize,
    text: &'static str,
    /// At one place, closing text goes first, then a replaced operator, then opening text.
    kind: EditKind,
    /// The size of the node the text belongs to: outer nodes open before and close after
    /// inner ones.
    size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EditKind {
    Close,
    Replace,
    Open,
}

impl Edit {
    fn open(at: usize, text: &'static str, size: usize) -> Edit {
        Edit {
            at,
            removed: 0,
            text,
            kind: EditKind::Open,
            size,
        }
    }

    fn close(at: usize, text: &'static str, size: usize) -> Edit {
        Edit {
            at,
            removed: 0,
            text,
            kind: EditKind::Close,
            size,
        }
    }

    /// Sorting key: position, kind, then nesting (inner closes first, outer opens first).
    fn key(&self) -> (usize, EditKind, isize) {
        let size = self.size as isize;
        match self.kind {
            EditKind::Close => (self.at, self.kind, size),
            EditKind::Replace => (self.at, self.kind, 0),
            EditKind::Open => (self.at, self.kind, -size),
        }
    }
}

/// A rewritten template: the text to compile and how its offsets map back.
#[derive(Debug, Clone)]
pub(crate) struct Rewrite {
    /// The text as written (the registry's, or a URL's after its origin wrapping).
    pub original: String,
    /// The text minijinja compiles.
    pub source: String,
    /// Edits, in the order applied.
    edits: Vec<Edit>,
}

impl Rewrite {
    /// The offset in the original text of byte `offset` of the rewritten text (an offset
    /// inside inserted text maps to where it was inserted).
    pub(crate) fn original_offset(&self, offset: usize) -> usize {
        let mut delta: isize = 0;
        for edit in &self.edits {
            let start = (edit.at as isize + delta) as usize;
            if offset < start {
                break;
            }
            if offset < start + edit.text.len() {
                return edit.at;
            }
            delta += edit.text.len() as isize - edit.removed as isize;
        }
        (offset as isize - delta).max(0) as usize
    }

    /// The original text of the rewritten text's `range`.
    pub(crate) fn original_text(&self, range: std::ops::Range<usize>) -> Option<&str> {
        let start = self.original_offset(range.start);
        let end = self.original_offset(range.end).max(start);
        self.original.get(start..end)
    }
}

/// What one walk of the template found.
#[derive(Default)]
struct Found {
    /// `%` operators to rewrite: (start, end of the left operand, end).
    percent: Vec<(usize, usize, usize)>,
    /// List and dict literals: (start, end).
    literals: Vec<(usize, usize)>,
    /// `{% set name = value %}`: (name, end of the name, whether the value is left alone:
    /// a literal, wrapped anyway, or a tuple, which stays immutable as in Python).
    sets: Vec<(String, usize, bool)>,
    /// `+` operators (in a template that changes lists, their result is made a list of its
    /// own: minijinja concatenates lazily, so `m = l + [x]` would see `l` change later).
    adds: Vec<(usize, usize)>,
    /// Whether a mutating method is called, and on which root names.
    mutates: bool,
    receivers: Vec<String>,
}

/// The rewritten text of `source`, or `None` when it needs no rewrite (or does not parse:
/// compiling it reports the error).
pub(crate) fn rewrite(source: &str) -> Option<Rewrite> {
    // Cheap test first: most templates have neither construct.
    let maybe_percent = source.match_indices('%').any(|(i, _)| {
        let before = source[..i].chars().next_back();
        let after = source[i + 1..].chars().next();
        before != Some('{') && after != Some('}')
    });
    let maybe_mutation = MUTATING_METHODS
        .iter()
        .any(|m| source.contains(&format!(".{m}(")) || source.contains(&format!(".{m} (")));
    if !maybe_percent && !maybe_mutation {
        return None;
    }
    let ast = parse(source, "<template>", SyntaxConfig::default()).ok()?;
    let mut found = Found::default();
    walk_stmt(&ast, &mut found);
    let tokens = tokens(source)?;
    let mut edits = Vec::new();
    for &(start, left_end, end) in &found.percent {
        let op = tokens
            .iter()
            .find(|t| t.kind == Tok::Mod && t.start >= left_end && t.start < end)?;
        edits.push(Edit::open(start, "__py_mod((", end - start));
        edits.push(Edit {
            at: op.start,
            removed: 1,
            text: "), (",
            kind: EditKind::Replace,
            size: 0,
        });
        edits.push(Edit::close(end, "))", end - start));
    }
    if found.mutates {
        for &(start, end) in found.literals.iter().chain(&found.adds) {
            edits.push(Edit::open(start, "__py_mutable(", end - start));
            edits.push(Edit::close(end, ")", end - start));
        }
        for (name, name_end, skip) in &found.sets {
            if *skip || !found.receivers.contains(name) {
                continue;
            }
            // The value: from after the `=` to the last token before the tag's end.
            let assign = tokens
                .iter()
                .position(|t| t.kind == Tok::Assign && t.start >= *name_end)?;
            let block_end = assign
                + tokens[assign..]
                    .iter()
                    .position(|t| t.kind == Tok::BlockEnd)?;
            let value_start = tokens.get(assign + 1)?.start;
            let value_end = tokens[block_end - 1].end;
            if value_end <= value_start {
                return None;
            }
            // One more than any node inside it, so it opens first and closes last.
            let size = value_end - value_start + 1;
            edits.push(Edit::open(value_start, "__py_mutable(", size));
            edits.push(Edit::close(value_end, ")", size));
        }
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(Edit::key);
    let mut out = String::with_capacity(source.len() + edits.len() * 12);
    let mut cursor = 0;
    for edit in &edits {
        if edit.at < cursor {
            return None;
        }
        out.push_str(&source[cursor..edit.at]);
        out.push_str(edit.text);
        cursor = edit.at + edit.removed;
    }
    out.push_str(&source[cursor..]);
    let rewritten = Rewrite {
        original: source.to_string(),
        source: out,
        edits,
    };
    same_structure(source, &rewritten.source).then_some(rewritten)
}

/// The tokens the rewrite places text by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Mod,
    Assign,
    BlockEnd,
    Other,
}

struct Located {
    kind: Tok,
    start: usize,
    end: usize,
}

/// The tokens of `source`, with their byte offsets.
fn tokens(source: &str) -> Option<Vec<Located>> {
    let mut out = Vec::new();
    for token in tokenize(source, false, SyntaxConfig::default()) {
        let (token, span) = token.ok()?;
        let kind = match token {
            Token::Mod => Tok::Mod,
            Token::Assign => Tok::Assign,
            Token::BlockEnd => Tok::BlockEnd,
            _ => Tok::Other,
        };
        out.push(Located {
            kind,
            start: span.start_offset as usize,
            end: span.end_offset as usize,
        });
    }
    Some(out)
}

fn start(expr: &Expr<'_>) -> usize {
    expr.span().start_offset as usize
}

fn end(expr: &Expr<'_>) -> usize {
    expr.span().end_offset as usize
}

/// The root variable of `a.b[c]`.
fn root_name<'a>(expr: &'a Expr<'_>) -> Option<&'a str> {
    match expr {
        Expr::Var(v) => Some(v.id),
        Expr::GetAttr(g) => root_name(&g.expr),
        Expr::GetItem(g) => root_name(&g.expr),
        _ => None,
    }
}

fn walk_stmts(stmts: &[Stmt<'_>], found: &mut Found) {
    stmts.iter().for_each(|s| walk_stmt(s, found));
}

fn walk_stmt(stmt: &Stmt<'_>, found: &mut Found) {
    match stmt {
        Stmt::Template(t) => walk_stmts(&t.children, found),
        Stmt::EmitExpr(e) => walk_expr(&e.expr, found),
        Stmt::ForLoop(f) => {
            walk_expr(&f.target, found);
            walk_expr(&f.iter, found);
            if let Some(filter) = &f.filter_expr {
                walk_expr(filter, found);
            }
            walk_stmts(&f.body, found);
            walk_stmts(&f.else_body, found);
        }
        Stmt::IfCond(i) => {
            walk_expr(&i.expr, found);
            walk_stmts(&i.true_body, found);
            walk_stmts(&i.false_body, found);
        }
        Stmt::WithBlock(w) => {
            for (target, value) in &w.assignments {
                walk_expr(target, found);
                walk_expr(value, found);
            }
            walk_stmts(&w.body, found);
        }
        Stmt::Set(s) => {
            if let Expr::Var(v) = &s.target {
                let skip = matches!(s.expr, Expr::List(_) | Expr::Map(_) | Expr::Tuple(_));
                found.sets.push((v.id.to_string(), end(&s.target), skip));
            }
            walk_expr(&s.target, found);
            walk_expr(&s.expr, found);
        }
        Stmt::SetBlock(s) => {
            if let Some(filter) = &s.filter {
                walk_expr(filter, found);
            }
            walk_stmts(&s.body, found);
        }
        Stmt::AutoEscape(a) => {
            walk_expr(&a.enabled, found);
            walk_stmts(&a.body, found);
        }
        Stmt::FilterBlock(f) => {
            walk_expr(&f.filter, found);
            walk_stmts(&f.body, found);
        }
        Stmt::Macro(m) => {
            m.defaults.iter().for_each(|d| walk_expr(d, found));
            walk_stmts(&m.body, found);
        }
        Stmt::CallBlock(c) => {
            walk_expr(&c.call.expr, found);
            walk_args(&c.call.args, found);
            c.macro_decl
                .defaults
                .iter()
                .for_each(|d| walk_expr(d, found));
            walk_stmts(&c.macro_decl.body, found);
        }
        Stmt::Do(d) => {
            walk_call_target(&d.call.expr, found);
            walk_expr(&d.call.expr, found);
            walk_args(&d.call.args, found);
        }
        // Not available in registry templates (refused when the registry loads).
        Stmt::Block(_)
        | Stmt::Extends(_)
        | Stmt::Include(_)
        | Stmt::Import(_)
        | Stmt::FromImport(_)
        | Stmt::EmitRaw(_)
        | Stmt::Continue(_)
        | Stmt::Break(_) => {}
    }
}

fn walk_args(args: &[CallArg<'_>], found: &mut Found) {
    for arg in args {
        match arg {
            CallArg::Pos(e)
            | CallArg::Kwarg(_, e)
            | CallArg::PosSplat(e)
            | CallArg::KwargSplat(e) => walk_expr(e, found),
        }
    }
}

/// Notes a call of a mutating method (`x.append(...)`) and the name it is called on.
fn walk_call_target(callee: &Expr<'_>, found: &mut Found) {
    if let Expr::GetAttr(g) = callee {
        if MUTATING_METHODS.contains(&g.name) {
            found.mutates = true;
            if let Some(root) = root_name(&g.expr) {
                if !found.receivers.iter().any(|r| r == root) {
                    found.receivers.push(root.to_string());
                }
            }
        }
    }
}

fn walk_expr(expr: &Expr<'_>, found: &mut Found) {
    match expr {
        Expr::Var(_) | Expr::Const(_) => {}
        Expr::Slice(s) => {
            walk_expr(&s.expr, found);
            for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                walk_expr(part, found);
            }
        }
        Expr::UnaryOp(u) => walk_expr(&u.expr, found),
        Expr::BinOp(b) => {
            if matches!(b.op, minijinja::machinery::ast::BinOpKind::Add) {
                found.adds.push((start(expr), end(expr)));
            }
            if matches!(b.op, minijinja::machinery::ast::BinOpKind::Rem)
                && needs_py_mod(&b.left, &b.right)
            {
                found.percent.push((start(expr), end(&b.left), end(expr)));
            }
            walk_expr(&b.left, found);
            walk_expr(&b.right, found);
        }
        Expr::Compare(c) => {
            walk_expr(&c.expr, found);
            c.ops.iter().for_each(|op| walk_expr(&op.expr, found));
        }
        Expr::IfExpr(i) => {
            walk_expr(&i.test_expr, found);
            walk_expr(&i.true_expr, found);
            if let Some(f) = &i.false_expr {
                walk_expr(f, found);
            }
        }
        Expr::Filter(f) => {
            if let Some(inner) = &f.expr {
                walk_expr(inner, found);
            }
            walk_args(&f.args, found);
        }
        Expr::Test(t) => {
            walk_expr(&t.expr, found);
            walk_args(&t.args, found);
        }
        Expr::GetAttr(g) => walk_expr(&g.expr, found),
        Expr::GetItem(g) => {
            walk_expr(&g.expr, found);
            walk_expr(&g.subscript_expr, found);
        }
        Expr::Call(c) => {
            walk_call_target(&c.expr, found);
            walk_expr(&c.expr, found);
            walk_args(&c.args, found);
        }
        Expr::List(l) => {
            found.literals.push((start(expr), end(expr)));
            l.items.iter().for_each(|e| walk_expr(e, found));
        }
        Expr::Tuple(t) => t.items.iter().for_each(|e| walk_expr(e, found)),
        Expr::Map(m) => {
            found.literals.push((start(expr), end(expr)));
            m.keys.iter().for_each(|e| walk_expr(e, found));
            m.values.iter().for_each(|e| walk_expr(e, found));
        }
    }
}

/// Whether `left % right` may be string formatting: not when a number literal is on the
/// right and no string literal on the left (`loop.index % 2`), which stays arithmetic.
fn needs_py_mod(left: &Expr<'_>, right: &Expr<'_>) -> bool {
    let is_number = |e: &Expr<'_>| matches!(e, Expr::Const(c) if matches!(c.value.kind(), minijinja::value::ValueKind::Number));
    let is_string = |e: &Expr<'_>| matches!(e, Expr::Const(c) if matches!(c.value.kind(), minijinja::value::ValueKind::String));
    if is_number(left) && is_number(right) {
        return false;
    }
    is_string(left) || !is_number(right)
}

// ---------------------------------------------------------------------------------------
// The structure check
// ---------------------------------------------------------------------------------------

/// Whether `rewritten` parses to the tree of `original` once the inserted calls are taken
/// out (`__py_mod(a, b)` read as `a % b`, `__py_mutable(x)` as `x`).
fn same_structure(original: &str, rewritten: &str) -> bool {
    let (Ok(a), Ok(b)) = (
        parse(original, "<template>", SyntaxConfig::default()),
        parse(rewritten, "<template>", SyntaxConfig::default()),
    ) else {
        return false;
    };
    let mut left = String::new();
    let mut right = String::new();
    shape_stmt(&a, &mut left, false);
    shape_stmt(&b, &mut right, true);
    left == right
}

fn shape_stmts(stmts: &[Stmt<'_>], out: &mut String, strip: bool) {
    out.push('[');
    for s in stmts {
        shape_stmt(s, out, strip);
        out.push(';');
    }
    out.push(']');
}

fn shape_stmt(stmt: &Stmt<'_>, out: &mut String, strip: bool) {
    match stmt {
        Stmt::Template(t) => shape_stmts(&t.children, out, strip),
        Stmt::EmitExpr(e) => {
            out.push_str("emit ");
            shape_expr(&e.expr, out, strip);
        }
        Stmt::EmitRaw(r) => {
            out.push_str("raw ");
            out.push_str(&r.raw.len().to_string());
        }
        Stmt::ForLoop(f) => {
            out.push_str("for ");
            shape_expr(&f.target, out, strip);
            shape_expr(&f.iter, out, strip);
            if let Some(filter) = &f.filter_expr {
                shape_expr(filter, out, strip);
            }
            shape_stmts(&f.body, out, strip);
            shape_stmts(&f.else_body, out, strip);
        }
        Stmt::IfCond(i) => {
            out.push_str("if ");
            shape_expr(&i.expr, out, strip);
            shape_stmts(&i.true_body, out, strip);
            shape_stmts(&i.false_body, out, strip);
        }
        Stmt::WithBlock(w) => {
            out.push_str("with ");
            for (t, v) in &w.assignments {
                shape_expr(t, out, strip);
                shape_expr(v, out, strip);
            }
            shape_stmts(&w.body, out, strip);
        }
        Stmt::Set(s) => {
            out.push_str("set ");
            shape_expr(&s.target, out, strip);
            shape_expr(&s.expr, out, strip);
        }
        Stmt::SetBlock(s) => {
            out.push_str("setblock ");
            shape_expr(&s.target, out, strip);
            if let Some(f) = &s.filter {
                shape_expr(f, out, strip);
            }
            shape_stmts(&s.body, out, strip);
        }
        Stmt::AutoEscape(a) => {
            out.push_str("autoescape ");
            shape_expr(&a.enabled, out, strip);
            shape_stmts(&a.body, out, strip);
        }
        Stmt::FilterBlock(f) => {
            out.push_str("filterblock ");
            shape_expr(&f.filter, out, strip);
            shape_stmts(&f.body, out, strip);
        }
        Stmt::Macro(m) => {
            out.push_str("macro ");
            out.push_str(m.name);
            m.args.iter().for_each(|a| shape_expr(a, out, strip));
            m.defaults.iter().for_each(|d| shape_expr(d, out, strip));
            shape_stmts(&m.body, out, strip);
        }
        Stmt::CallBlock(c) => {
            out.push_str("callblock ");
            shape_expr(&c.call.expr, out, strip);
            shape_args(&c.call.args, out, strip);
            c.macro_decl
                .args
                .iter()
                .for_each(|a| shape_expr(a, out, strip));
            c.macro_decl
                .defaults
                .iter()
                .for_each(|d| shape_expr(d, out, strip));
            shape_stmts(&c.macro_decl.body, out, strip);
        }
        Stmt::Do(d) => {
            out.push_str("do ");
            shape_expr(&d.call.expr, out, strip);
            shape_args(&d.call.args, out, strip);
        }
        Stmt::Continue(_) => out.push_str("continue"),
        Stmt::Break(_) => out.push_str("break"),
        Stmt::Block(_)
        | Stmt::Extends(_)
        | Stmt::Include(_)
        | Stmt::Import(_)
        | Stmt::FromImport(_) => out.push_str("multi"),
    }
}

fn shape_args(args: &[CallArg<'_>], out: &mut String, strip: bool) {
    out.push('(');
    for arg in args {
        match arg {
            CallArg::Pos(_) => out.push_str("p:"),
            CallArg::Kwarg(name, _) => {
                out.push_str("k:");
                out.push_str(name);
                out.push('=');
            }
            CallArg::PosSplat(_) => out.push_str("*:"),
            CallArg::KwargSplat(_) => out.push_str("**:"),
        }
        let (CallArg::Pos(e)
        | CallArg::Kwarg(_, e)
        | CallArg::PosSplat(e)
        | CallArg::KwargSplat(e)) = arg;
        shape_expr(e, out, strip);
        out.push(',');
    }
    out.push(')');
}

/// The positional arguments of a call of `name`, when `expr` is one.
fn inserted_call<'e, 'a>(
    expr: &'e Expr<'a>,
    name: &str,
    arity: usize,
) -> Option<Vec<&'e Expr<'a>>> {
    let Expr::Call(c) = expr else {
        return None;
    };
    let Expr::Var(v) = &c.expr else {
        return None;
    };
    if v.id != name || c.args.len() != arity {
        return None;
    }
    c.args
        .iter()
        .map(|a| match a {
            CallArg::Pos(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn shape_expr(expr: &Expr<'_>, out: &mut String, strip: bool) {
    if strip {
        if let Some(args) = inserted_call(expr, PY_MUTABLE, 1) {
            return shape_expr(args[0], out, strip);
        }
        if let Some(args) = inserted_call(expr, PY_MOD, 2) {
            out.push_str("(binop Rem ");
            shape_expr(args[0], out, strip);
            shape_expr(args[1], out, strip);
            out.push(')');
            return;
        }
    }
    out.push('(');
    match expr {
        Expr::Var(v) => {
            out.push_str("var ");
            out.push_str(v.id);
        }
        Expr::Const(c) => {
            out.push_str("const ");
            out.push_str(&format!("{:?}", c.value));
        }
        Expr::Slice(s) => {
            out.push_str("slice ");
            shape_expr(&s.expr, out, strip);
            for part in [&s.start, &s.stop, &s.step] {
                match part {
                    Some(p) => shape_expr(p, out, strip),
                    None => out.push('-'),
                }
            }
        }
        Expr::UnaryOp(u) => {
            out.push_str(&format!("unary {:?} ", std::mem::discriminant(&u.op)));
            shape_expr(&u.expr, out, strip);
        }
        Expr::BinOp(b) => {
            let kind = match b.op {
                minijinja::machinery::ast::BinOpKind::Rem => "Rem".to_string(),
                ref other => format!("{:?}", std::mem::discriminant(other)),
            };
            out.push_str("binop ");
            out.push_str(&kind);
            out.push(' ');
            shape_expr(&b.left, out, strip);
            shape_expr(&b.right, out, strip);
        }
        Expr::Compare(c) => {
            out.push_str("compare ");
            shape_expr(&c.expr, out, strip);
            for op in &c.ops {
                out.push_str(&format!("{:?}", std::mem::discriminant(&op.op)));
                shape_expr(&op.expr, out, strip);
            }
        }
        Expr::IfExpr(i) => {
            out.push_str("ifexpr ");
            shape_expr(&i.test_expr, out, strip);
            shape_expr(&i.true_expr, out, strip);
            match &i.false_expr {
                Some(f) => shape_expr(f, out, strip),
                None => out.push('-'),
            }
        }
        Expr::Filter(f) => {
            out.push_str("filter ");
            out.push_str(f.name);
            match &f.expr {
                Some(e) => shape_expr(e, out, strip),
                None => out.push('-'),
            }
            shape_args(&f.args, out, strip);
        }
        Expr::Test(t) => {
            out.push_str("test ");
            out.push_str(t.name);
            shape_expr(&t.expr, out, strip);
            shape_args(&t.args, out, strip);
        }
        Expr::GetAttr(g) => {
            out.push_str("attr ");
            out.push_str(g.name);
            shape_expr(&g.expr, out, strip);
        }
        Expr::GetItem(g) => {
            out.push_str("item ");
            shape_expr(&g.expr, out, strip);
            shape_expr(&g.subscript_expr, out, strip);
        }
        Expr::Call(c) => {
            out.push_str("call ");
            shape_expr(&c.expr, out, strip);
            shape_args(&c.args, out, strip);
        }
        Expr::List(l) => {
            out.push_str("list ");
            l.items.iter().for_each(|e| shape_expr(e, out, strip));
        }
        Expr::Tuple(t) => {
            out.push_str("tuple ");
            t.items.iter().for_each(|e| shape_expr(e, out, strip));
        }
        Expr::Map(m) => {
            out.push_str("map ");
            for (k, v) in m.keys.iter().zip(&m.values) {
                shape_expr(k, out, strip);
                shape_expr(v, out, strip);
            }
        }
    }
    out.push(')');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(source: &str) -> String {
        rewrite(source)
            .map(|r| r.source)
            .unwrap_or_else(|| source.to_string())
    }

    #[test]
    fn percent_operators_become_calls_and_nothing_else_changes() {
        assert_eq!(
            compiled("{{ '%s-%d' % (a, b) }}"),
            "{{ __py_mod(('%s-%d' ), ( (a, b))) }}"
        );
        assert_eq!(
            compiled("{{ ('%s' % x) | upper }} {{ '%' }}{# % #}"),
            "{{ (__py_mod(('%s' ), ( x))) | upper }} {{ '%' }}{# % #}"
        );
        // Chains nest as the operator associates: (a % b) % c.
        assert_eq!(
            compiled("{{ fmt % a % b }}"),
            "{{ __py_mod((__py_mod((fmt ), ( a)) ), ( b)) }}"
        );
        // Arithmetic with a number on the right stays the engine's.
        assert_eq!(compiled("{{ loop.index % 2 }}"), "{{ loop.index % 2 }}");
        assert_eq!(
            compiled("{% raw %}{{ a % b }}{% endraw %}"),
            "{% raw %}{{ a % b }}{% endraw %}"
        );
    }

    #[test]
    fn literals_become_mutable_only_where_a_template_changes_a_list() {
        assert_eq!(
            compiled("{% set l = [] %}{{ l }}"),
            "{% set l = [] %}{{ l }}"
        );
        assert_eq!(
            compiled("{% set l = [] %}{% set _ = l.append({'a': [1]}) %}"),
            "{% set l = __py_mutable([]) %}{% set _ = l.append(__py_mutable({'a': __py_mutable([1])})) %}"
        );
        assert_eq!(
            compiled("{% set l = items | list %}{% set _ = l.append(1) %}"),
            "{% set l = __py_mutable(items | list) %}{% set _ = l.append(1) %}"
        );
    }

    #[test]
    fn offsets_map_back_to_the_original_text() {
        let source = "{{ '%s' % x }}";
        let r = rewrite(source).unwrap();
        let at = r.source.find('x').unwrap();
        assert_eq!(r.original_offset(at), source.find('x').unwrap());
        assert_eq!(r.source.lines().count(), source.lines().count());
    }
}
