//! Templates: the Jinja2 environment registries are written for, its filters and functions,
//! the values templates read, and the static checks run when a registry loads.

pub(crate) mod analysis;
pub mod context;
pub mod engine;
pub(crate) mod field;
pub(crate) mod filters;
pub(crate) mod functions;
pub(crate) mod json_cache;
pub mod lazy_json;
pub(crate) mod mutable;
pub(crate) mod pprint;
pub(crate) mod pyformat;
pub(crate) mod python;
pub(crate) mod rewrite;
pub(crate) mod secrets;
pub(crate) mod shortcut;

pub(crate) use analysis::{analyze, Analysis, ContextKind, Scope};
pub use engine::{
    new_environment, RenderError, RenderLimits, TemplateId, TemplateSet, UndefinedMode,
};
pub use field::Field;
pub use secrets::{SecretStore, Variables};
