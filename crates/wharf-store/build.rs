//! Rebuilds the crate when a migration changes: `migrate.rs` embeds the files with
//! `include_str!`, and cargo would not otherwise notice a new file in the directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
