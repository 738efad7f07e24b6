//! Keys Signet generates and reads are cosign's own format: proven with the real cosign CLI
//! in both directions.

// Helpers here are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use signet_config::keys::{decrypt_private_key, generate_ecdsa_p256, public_pem_of_pkcs8_der};
use signet_e2e::TestEnv;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("signet-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn cosign_opens_a_key_signet_generated() {
    let env = TestEnv::get();
    let dir = temp_dir("cosign-opens");
    let pair = generate_ecdsa_p256().unwrap();
    std::fs::write(dir.join("cosign.key"), &pair.private_pem).unwrap();
    let out = Command::new(&env.cosign)
        .args(["public-key", "--key"])
        .arg(dir.join("cosign.key"))
        .env("COSIGN_PASSWORD", pair.password.as_str())
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "cosign refused the key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), pair.public_pem);

    // And with a wrong password cosign refuses it, so the check above is meaningful.
    let dir = temp_dir("cosign-refuses");
    std::fs::write(dir.join("cosign.key"), &pair.private_pem).unwrap();
    let out = Command::new(&env.cosign)
        .args(["public-key", "--key"])
        .arg(dir.join("cosign.key"))
        .env("COSIGN_PASSWORD", "wrong")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
}

#[test]
fn signet_opens_a_key_cosign_generated() {
    let env = TestEnv::get();
    let dir = temp_dir("signet-opens");
    let status = Command::new(&env.cosign)
        .args(["generate-key-pair"])
        .current_dir(&dir)
        .env("COSIGN_PASSWORD", "correct horse")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let private = std::fs::read_to_string(dir.join("cosign.key")).unwrap();
    let public = std::fs::read_to_string(dir.join("cosign.pub")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let der = decrypt_private_key(&private, b"correct horse").unwrap();
    assert_eq!(public_pem_of_pkcs8_der(&der).unwrap(), public);
    assert!(decrypt_private_key(&private, b"wrong").is_err());
}
