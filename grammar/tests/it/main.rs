//! The constraint language, table by table.

mod columnar;
mod language;
mod matching;
mod roundtrip;
