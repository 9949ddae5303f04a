//! The language of the market: the properties an offer or a demand states about itself, and
//! (in later parts) the constraints each side sets on the other.
//!
//! Properties are a JSON object that may nest (`{"golem":{"inf":{"mem":{"gib":8}}}}`) or use
//! dotted keys (`{"golem.inf.mem.gib":8}`), or mix the two. [`flatten`] reduces any of these to one
//! flat map of dotted names, so matching never walks nested JSON. A node that has a value *and*
//! children gives the value under `"@tag"`.
//!
//! This crate is pure: no I/O, no async, no database.
//!
//! ```
//! let props = serde_json::json!({"golem": {"runtime": {"name": "wasmtime"}}, "golem.inf.cpu.threads": 4});
//! let flat = agora_grammar::flatten(&props).unwrap();
//! assert_eq!(flat["golem.runtime.name"], "wasmtime");
//! assert_eq!(flat["golem.inf.cpu.threads"], 4);
//! ```

mod properties;

pub use properties::{Error, Properties, flatten};
