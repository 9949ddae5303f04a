// The schema is embedded with `sqlx::migrate!`: a changed or added migration must rebuild the node.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
