//! Listings for people (aligned tables) and for programs (`--json`).

use serde::Serialize;

/// Prints `rows` under `headers` in aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) {
    // Serialising our own plain data types cannot fail.
    println!("{}", serde_json::to_string_pretty(value).expect("serialisable output"));
}

pub fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}
