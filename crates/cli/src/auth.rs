//! CHAP credentials from the command line, the environment, secret files and
//! URLs. Secrets never come from a plain command-line option (they would show
//! in `ps` and shell history); the only exception is a `user%secret@` URL,
//! where libiscsi users expect it.

use crate::fail;
use oxcopy_initiator::{ChapAlgorithm, ChapConfig, ChapCredentials};
use std::path::{Path, PathBuf};

/// Environment variable holding the initiator's CHAP secret.
pub const ENV_SECRET: &str = "OXCOPY_CHAP_SECRET";
/// Environment variable holding the target's secret for mutual CHAP.
pub const ENV_TARGET_SECRET: &str = "OXCOPY_TARGET_CHAP_SECRET";

/// The CHAP options as given (before any URL is considered).
#[derive(Debug, Clone, Default)]
pub struct ChapOptions {
    pub user: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub target_user: Option<String>,
    pub target_secret_file: Option<PathBuf>,
    /// `OXCOPY_CHAP_SECRET` (read once at start).
    pub env_secret: Option<String>,
    /// `OXCOPY_TARGET_CHAP_SECRET`.
    pub env_target_secret: Option<String>,
}

impl ChapOptions {
    /// Resolve the CHAP configuration for one connection, given the
    /// credentials found in its URL (if any). `Ok(None)` = no CHAP.
    pub fn resolve(&self, url_user: Option<&str>, url_secret: Option<&str>) -> anyhow::Result<Option<ChapConfig>> {
        let user = url_user.map(str::to_string).or_else(|| self.user.clone());
        let file_secret = match &self.secret_file {
            Some(p) => Some(read_secret_file(p)?),
            None => None,
        };
        let secret = url_secret.map(str::to_string).or(file_secret.clone()).or_else(|| self.env_secret.clone());
        let Some(user) = user else {
            if file_secret.is_some() {
                return Err(fail::usage("--chap-secret-file needs --chap-user (or a user name in the URL)"));
            }
            if self.target_user.is_some() {
                return Err(fail::usage("mutual CHAP (--target-chap-user) needs initiator CHAP (--chap-user)"));
            }
            return Ok(None);
        };
        let Some(secret) = secret else {
            return Err(fail::usage(format!(
                "CHAP user {user:?} has no secret: set {ENV_SECRET}, use --chap-secret-file FILE, or put it in the \
                 URL as user%secret@host"
            )));
        };
        let mut cfg = ChapConfig {
            initiator: ChapCredentials { username: user, secret: secret.into_bytes() },
            target: None,
            algorithms: vec![ChapAlgorithm::Sha256, ChapAlgorithm::Md5],
        };
        if let Some(tu) = &self.target_user {
            let ts = match &self.target_secret_file {
                Some(p) => read_secret_file(p)?,
                None => self.env_target_secret.clone().ok_or_else(|| {
                    fail::usage(format!(
                        "--target-chap-user needs the target's secret: set {ENV_TARGET_SECRET} or use \
                         --target-chap-secret-file FILE"
                    ))
                })?,
            };
            if ts.as_bytes() == cfg.initiator.secret.as_slice() {
                return Err(fail::usage("the target's CHAP secret must differ from the initiator's (RFC 7143)"));
            }
            cfg.target = Some(ChapCredentials { username: tu.clone(), secret: ts.into_bytes() });
        } else if self.target_secret_file.is_some() {
            return Err(fail::usage("--target-chap-secret-file needs --target-chap-user"));
        }
        Ok(Some(cfg))
    }
}

/// The first line of a secret file (a trailing newline is not part of it).
pub fn read_secret_file(p: &Path) -> anyhow::Result<String> {
    let raw =
        std::fs::read(p).map_err(|e| fail::usage(format!("cannot read CHAP secret file {}: {e}", p.display())))?;
    let text =
        String::from_utf8(raw).map_err(|_| fail::usage(format!("CHAP secret file {} is not UTF-8", p.display())))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(fail::usage(format!("CHAP secret file {} is empty", p.display())));
    }
    Ok(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_precedence() {
        let none = ChapOptions::default();
        assert!(none.resolve(None, None).unwrap().is_none());
        // Env secret alone (no user) is ignored.
        let env = ChapOptions { env_secret: Some("e".into()), ..Default::default() };
        assert!(env.resolve(None, None).unwrap().is_none());
        // User from the flag, secret from env.
        let o = ChapOptions { user: Some("u".into()), env_secret: Some("env-secret".into()), ..Default::default() };
        let c = o.resolve(None, None).unwrap().unwrap();
        assert_eq!((c.initiator.username.as_str(), c.initiator.secret.as_slice()), ("u", &b"env-secret"[..]));
        // URL beats both.
        let c = o.resolve(Some("url-user"), Some("url-secret")).unwrap().unwrap();
        assert_eq!((c.initiator.username.as_str(), c.initiator.secret.as_slice()), ("url-user", &b"url-secret"[..]));
        // A user with no secret anywhere is a usage error.
        let o = ChapOptions { user: Some("u".into()), ..Default::default() };
        let e = o.resolve(None, None).unwrap_err();
        assert_eq!(fail::exit_code(&e), 2);
        assert!(e.to_string().contains(ENV_SECRET));
    }

    #[test]
    fn secret_files_and_mutual() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "file-secret\n").unwrap();
        let o = ChapOptions {
            user: Some("u".into()),
            secret_file: Some(f.clone()),
            env_secret: Some("env".into()),
            target_user: Some("t".into()),
            env_target_secret: Some("target-secret".into()),
            ..Default::default()
        };
        let c = o.resolve(None, None).unwrap().unwrap();
        assert_eq!(c.initiator.secret, b"file-secret");
        assert_eq!(c.target.as_ref().unwrap().secret, b"target-secret");
        let same = ChapOptions { env_target_secret: Some("file-secret".into()), ..o.clone() };
        assert!(same.resolve(None, None).is_err());
        let orphan = ChapOptions { secret_file: Some(f), ..Default::default() };
        assert!(orphan.resolve(None, None).is_err());
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(read_secret_file(&empty).is_err());
        assert!(read_secret_file(&dir.path().join("missing")).is_err());
    }
}
