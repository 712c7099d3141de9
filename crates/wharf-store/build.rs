//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the files
//! it finds, but cargo would not otherwise notice a new file in the directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
