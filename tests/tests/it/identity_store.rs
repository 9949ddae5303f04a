//! Identities and app-keys on a real Postgres.

use agora_identity::{Error, Identities, IdentityStore, Keystore};
use agora_tests::TestPg;
use sha2_free::sha256_hex;

/// SHA-256 through the same route the node uses is what is under test; compute the expected
/// digest independently with `sha256sum`.
mod sha2_free {
    pub fn sha256_hex(text: &str) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sha256sum");
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
    }
}

#[tokio::test]
async fn app_keys_are_stored_hashed_and_work_until_dropped() {
    let pg = TestPg::start().await;
    let pool = pg.migrated_pool().await;
    let keys = tempfile::tempdir().unwrap();
    let ids = Identities::open(Keystore::open(keys.path()).unwrap(), IdentityStore::new(pool.clone()), None)
        .await
        .unwrap();
    let me = ids.default_address().await.unwrap();
    let store = ids.store();

    let created = store.create_app_key("ci", me, "manager").await.unwrap();
    assert_eq!(created.key.len(), 64);
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT key_hash FROM app_keys WHERE name = 'ci'").fetch_one(&pool).await.unwrap();
    assert_eq!(hex_of(&stored), sha256_hex(&created.key));
    let dump: String =
        sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM app_keys t").fetch_one(&pool).await.unwrap();
    assert!(!dump.contains(&created.key), "the key itself must not be stored");

    let found = store.authenticate(&created.key).await.unwrap().expect("key authenticates");
    assert_eq!((found.name.as_str(), found.identity, found.role.as_str()), ("ci", me, "manager"));
    assert!(store.authenticate("0000").await.unwrap().is_none());
    assert!(matches!(store.create_app_key("ci", me, "manager").await, Err(Error::AppKeyExists(_))));
    assert!(matches!(store.create_app_key("bad name", me, "manager").await, Err(Error::BadName(_))));
    assert_eq!(store.list_app_keys().await.unwrap().len(), 1);

    store.drop_app_key("ci").await.unwrap();
    assert!(store.authenticate(&created.key).await.unwrap().is_none());
    assert!(matches!(store.drop_app_key("ci").await, Err(Error::UnknownAppKey(_))));
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn identities_lock_unlock_and_survive_reopening() {
    let pg = TestPg::start().await;
    let pool = pg.migrated_pool().await;
    let keys = tempfile::tempdir().unwrap();
    let open = || async {
        Identities::open(Keystore::open(keys.path()).unwrap(), IdentityStore::new(pool.clone()), None)
            .await
            .unwrap()
    };
    let ids = open().await;
    let default = ids.default_address().await.unwrap();
    let work = ids.create(Some("work"), None, false).await.unwrap();
    assert!(!work.locked && work.unlocked && !work.is_default);
    let work_addr = agora_identity::parse_address(&work.address).unwrap();
    ids.signer(work_addr).unwrap();

    let locked = ids.lock(Some("work"), "s3cret".into()).await.unwrap();
    assert!(locked.locked && !locked.unlocked);
    assert!(matches!(ids.signer(work_addr), Err(Error::Locked(_))));
    assert!(matches!(ids.lock(Some("work"), String::new()).await, Err(Error::BadPassword)));

    // A new start: the default identity is the same, and "work" stays locked.
    let ids = open().await;
    assert_eq!(ids.default_address().await.unwrap(), default);
    assert!(matches!(ids.signer(work_addr), Err(Error::Locked(_))));
    assert!(matches!(ids.unlock(Some("work"), "wrong".into()).await, Err(Error::WrongPassword(_))));
    let unlocked = ids.unlock(Some(&work.address), "s3cret".into()).await.unwrap();
    assert!(unlocked.unlocked);
    assert_eq!(ids.signer(work_addr).unwrap().address(), work_addr);

    // A taken alias fails whole: no keystore file is left for the identity that was not recorded.
    let files_before = std::fs::read_dir(keys.path()).unwrap().count();
    assert!(matches!(ids.create(Some("work"), None, false).await, Err(Error::AliasTaken(_))));
    assert_eq!(std::fs::read_dir(keys.path()).unwrap().count(), files_before);
    assert_eq!(ids.list().await.unwrap().len(), 2);

    // A new default replaces the old one.
    let second = ids.create(Some("main"), None, true).await.unwrap();
    assert!(second.is_default);
    assert_eq!(ids.get(None).await.unwrap().address, second.address);
}
