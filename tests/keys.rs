//! Which keys the stored tokens need, known at open from a list rather than from every
//! connection: a key is listed before it seals anything, and forgotten once no token needs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::TimeDelta;
use credwatch::config::DatabaseConfig;
use credwatch::crypto::{CryptoError, Keyring, generate_key_file};
use credwatch::store::{self, DueQuery, Rotation, StoreError};
use credwatch::tokens::TokenSet;

use crate::store::{lease, new_connection, now, postgres, sqlite};

#[tokio::test]
async fn keys_are_listed_before_they_seal_and_forgotten_when_unused_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    listed(&sqlite(dir.path()), dir.path()).await;
}

#[tokio::test]
async fn keys_are_listed_before_they_seal_and_forgotten_when_unused_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    listed(&postgres().await, dir.path()).await;
}

fn key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let id = generate_key_file(&path).unwrap();
    (path, id.as_str().to_owned())
}

fn keyring(current: &Path, previous: &[&Path]) -> Arc<Keyring> {
    let previous: Vec<PathBuf> = previous.iter().map(|p| p.to_path_buf()).collect();
    Arc::new(Keyring::from_files(current, &previous).unwrap())
}

async fn listed(db: &DatabaseConfig, dir: &Path) {
    let (old, old_id) = key(dir, "old.key");
    let (new, new_id) = key(dir, "new.key");
    let (other, _) = key(dir, "other.key");
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };

    let store = store::open(db, keyring(&old, &[])).await.unwrap();
    assert_eq!(store.key_ids().await.unwrap(), vec![old_id.clone()]);
    let id = store.add_connection(new_connection(), now()).await.unwrap();
    store.close().await;

    // Rotating the key: the new one is listed at open, before it seals anything.
    let store = store::open(db, keyring(&new, &[&old])).await.unwrap();
    assert_eq!(
        store.key_ids().await.unwrap(),
        sorted(vec![old_id.clone(), new_id.clone()])
    );
    // The connection's tokens are sealed again with the new key by a refresh.
    let provider = "acme".parse().unwrap();
    let later = now() + TimeDelta::seconds(1);
    let due = DueQuery {
        provider: &provider,
        now: later,
        limit: 10,
        operator: None,
    };
    let claimed = store
        .claim_due(due, &lease("a", later + TimeDelta::minutes(5)))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].connection.id, id);
    let fresh = TokenSet::from_json(br#"{"access_token":"sealed-anew"}"#, later).unwrap();
    let rotation = Rotation {
        expected_generation: claimed[0].tokens.generation,
        tokens: &fresh,
        now: later,
    };
    store.save_rotation(&claimed[0], rotation).await.unwrap();
    assert_eq!(store.keys_in_use().await.unwrap(), vec![new_id.clone()]);
    store.close().await;

    // The old key is gone from the config: no token needs it, so it is forgotten.
    let store = store::open(db, keyring(&new, &[])).await.unwrap();
    assert_eq!(store.key_ids().await.unwrap(), vec![new_id.clone()]);
    assert_eq!(store.tokens(&id).await.unwrap().generation, 2);
    store.close().await;

    // A key nobody configured is refused, naming the one the tokens need.
    let err = store::open(db, keyring(&other, &[]))
        .await
        .err()
        .expect("a wrong key must be refused");
    assert!(
        matches!(&err, StoreError::Crypto(CryptoError::UnknownKey { stored, .. }) if *stored == new_id),
        "{err}"
    );
    // And refusing it listed nothing.
    let store = store::open(db, keyring(&new, &[])).await.unwrap();
    assert_eq!(store.key_ids().await.unwrap(), vec![new_id]);
    store.close().await;
}
