//! The copy-domain key (ROD token authentication) at daemon start: created
//! with mode 0600 in the data directory at first start, reused after a
//! restart, and a key file others may read refuses the start.

mod common;

use common::Daemon;
use std::os::unix::fs::PermissionsExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_created_at_first_start_with_mode_0600_and_kept() {
    let d = Daemon::start().await;
    let key = d.dir.path().join("state").join(oxcopyd::copy_domain::DEFAULT_KEY_FILE);
    let meta = std::fs::metadata(&key).expect("key file exists after start");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    let first = std::fs::read(&key).expect("read key");
    let dir_path = d.dir.path().to_path_buf();
    let mut d = d;
    let running = d.running.take().expect("running");
    running.shutdown().await.expect("shutdown");

    // Start again over the same data directory: the same key.
    let cfg = oxcopyd::Config::from_file(&dir_path.join("oxcopyd.toml")).expect("config");
    let again = oxcopyd::start(cfg).await.expect("restart");
    assert_eq!(std::fs::read(&key).expect("read key"), first);
    again.shutdown().await.expect("shutdown");

    // A key readable by others is refused, naming the file.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cfg = oxcopyd::Config::from_file(&dir_path.join("oxcopyd.toml")).expect("config");
    let e = oxcopyd::start(cfg).await.err().expect("insecure key refused");
    assert!(format!("{e:#}").contains("copy-domain.key"), "{e:#}");
}
