//! `wharf server backup` and `wharf server restore` with the real binary: a copy
//! taken while the server runs and writes, a server started on the restored
//! directory with everything in it, and each bad input refused with nothing
//! changed.

mod common;

use common::{Cli, TestServer};
use std::fs;

fn login(server: &TestServer) -> Cli {
    let cli = Cli::new();
    let token = server.admin_token();
    cli.run(&["login", "--server", &server.url, "--token", &token])
        .ok();
    cli
}

#[test]
fn a_backup_taken_while_the_server_writes_restores_into_a_server_with_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = TestServer::start(&data, &tmp.path().join("server.log"), "warn");
    let cli = login(&server);
    cli.run(&["app", "create", "shop"]).ok();
    cli.run_stdin(
        &[
            "registry",
            "create",
            "main",
            "--endpoint",
            "registry.example.com",
            "--username",
            "deploy",
            "--password-stdin",
        ],
        "s3cret-pass",
    )
    .ok();
    // Writes go on while the copy is taken.
    let writer = cli.spawn(&["app", "create", "during"]);
    let backup = tmp.path().join("wharf-backup.db");
    let data_arg = data.display().to_string();
    let backup_arg = backup.display().to_string();
    let made = cli
        .run(&[
            "server",
            "backup",
            "--to",
            &backup_arg,
            "--data-dir",
            &data_arg,
        ])
        .ok();
    assert!(made.stdout.contains("secret.key"), "{made:#?}");
    writer.wait().ok();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&backup).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // One more write after the copy: it is not in the restored server.
    cli.run(&["app", "create", "after"]).ok();

    // Restored without the key: the server refuses to start, saying why.
    let keyless = tmp.path().join("keyless");
    cli.run(&[
        "server",
        "restore",
        "--from",
        &backup_arg,
        "--data-dir",
        &keyless.display().to_string(),
    ])
    .ok();
    let refused = cli.run(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &keyless.display().to_string(),
    ]);
    assert_eq!(refused.code, 1, "{refused:#?}");
    assert!(refused.stderr.contains("secret.key"), "{refused:#?}");

    // Restored with the key: everything up to the copy is there.
    let restored = tmp.path().join("restored");
    let key = data.join("secret.key").display().to_string();
    cli.run(&[
        "server",
        "restore",
        "--from",
        &backup_arg,
        "--data-dir",
        &restored.display().to_string(),
        "--secret-key",
        &key,
    ])
    .ok();
    let admin = server.admin_token();
    server.stop();
    let mut again = TestServer::start(&restored, &tmp.path().join("restored.log"), "warn");
    // The tokens are in the database: the old admin token signs in.
    let cli = Cli::new();
    cli.run(&["login", "--server", &again.url, "--token", &admin])
        .ok();
    let apps = cli.run(&["app", "list", "--output", "json"]).ok().json();
    let names: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(names.contains(&"shop"), "{apps}");
    assert!(!names.contains(&"after"), "{apps}");
    let registries = cli
        .run(&["registry", "list", "--output", "json"])
        .ok()
        .json();
    assert_eq!(registries[0]["name"], "main", "{registries}");
    again.stop();
    for run in cli.history.lock().unwrap().iter() {
        assert!(!run.stdout.contains("s3cret-pass") && !run.stderr.contains("s3cret-pass"));
    }
}

#[test]
fn bad_backup_and_restore_inputs_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = TestServer::start(&data, &tmp.path().join("server.log"), "warn");
    let cli = Cli::new();
    let data_arg = data.display().to_string();
    let existing = tmp.path().join("existing.db");
    fs::write(&existing, b"keep me").unwrap();
    cli.run(&[
        "server",
        "backup",
        "--to",
        &existing.display().to_string(),
        "--data-dir",
        &data_arg,
    ])
    .code(1)
    .error_mentions(&["exists already"]);
    assert_eq!(fs::read(&existing).unwrap(), b"keep me");
    cli.run(&[
        "server",
        "backup",
        "--to",
        "/nonexistent-dir/backup.db",
        "--data-dir",
        &data_arg,
    ])
    .code(1)
    .error_mentions(&["cannot write the backup", "/nonexistent-dir"]);
    cli.run(&[
        "server",
        "backup",
        "--to",
        &tmp.path().join("x.db").display().to_string(),
        "--data-dir",
        &tmp.path().join("no-data").display().to_string(),
    ])
    .code(1)
    .error_mentions(&["no-data", "not found"]);

    let backup = tmp.path().join("good.db");
    cli.run(&[
        "server",
        "backup",
        "--to",
        &backup.display().to_string(),
        "--data-dir",
        &data_arg,
    ])
    .ok();
    // Into a directory that is not empty (the running server's own).
    cli.run(&[
        "server",
        "restore",
        "--from",
        &backup.display().to_string(),
        "--data-dir",
        &data_arg,
    ])
    .code(1)
    .error_mentions(&["not empty"]);
    // From a file that is no backup, and one that is no Wharf database.
    let target = tmp.path().join("new").display().to_string();
    cli.run(&[
        "server",
        "restore",
        "--from",
        &existing.display().to_string(),
        "--data-dir",
        &target,
    ])
    .code(1)
    .error_mentions(&["not a usable backup", "not a SQLite database"]);
    assert!(!tmp.path().join("new").exists(), "nothing was made");
    let other = tmp.path().join("other.db");
    rusqlite_free_other_db(&other);
    cli.run(&[
        "server",
        "restore",
        "--from",
        &other.display().to_string(),
        "--data-dir",
        &target,
    ])
    .code(1)
    .error_mentions(&["not a Wharf one"]);
    // A key file that is no key.
    cli.run(&[
        "server",
        "restore",
        "--from",
        &backup.display().to_string(),
        "--data-dir",
        &target,
        "--secret-key",
        &existing.display().to_string(),
    ])
    .code(1)
    .error_mentions(&["32 bytes"]);
    assert!(!tmp.path().join("new").exists(), "nothing was made");
    server.stop();
}

/// A SQLite database that is not Wharf's, made with the sqlite3 file format by
/// hand: Wharf's own backup of an empty data directory, with its migrations
/// table dropped, is the simplest such file here.
fn rusqlite_free_other_db(path: &std::path::Path) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = TestServer::start(&data, &tmp.path().join("log"), "warn");
    server.stop();
    let cli = Cli::new();
    cli.run(&[
        "server",
        "backup",
        "--to",
        &path.display().to_string(),
        "--data-dir",
        &data.display().to_string(),
    ])
    .ok();
    // Drop the migrations table with Python's sqlite3, present on the machines
    // the suite runs on; without it the test says so.
    let dropped = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('DROP TABLE _sqlx_migrations'); c.commit()"])
        .arg(path)
        .status()
        .expect("python3 to edit a SQLite file");
    assert!(dropped.success());
}
