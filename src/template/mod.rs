//! Templates: the Jinja2 environment registries are written for, its filters and functions,
//! the values templates read, and the static checks run when a registry loads.

pub mod analysis;
pub mod context;
pub mod engine;
pub mod field;
pub mod filters;
pub mod functions;
pub mod json_cache;
pub mod lazy_json;
pub mod python;
pub mod secrets;

pub use analysis::{analyze, Analysis, ContextKind, Finding, Scope};
pub use engine::{new_environment, RenderError, RenderLimits, TemplateId, TemplateSet};
pub use field::Field;
pub use secrets::{SecretStore, Variables};
