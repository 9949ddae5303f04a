//! The constraint language, table by table.

mod language;
mod matching;
mod roundtrip;
