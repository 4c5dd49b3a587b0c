//! The operator's master key: 32 random bytes, base64url in a file readable only by its owner.
//! It seals the receipt signing keys kept in the database.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

pub struct MasterKey(
    #[allow(dead_code)] // read by receipt-key sealing
    pub(crate)  [u8; 32],
);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// Reads the key, creating it (mode 0600, never overwriting) when the file does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<(MasterKey, bool)> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((
                Self::parse(&text)
                    .with_context(|| format!("master key file {}", path.display()))?,
                false,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options
                    .open(path)
                    .with_context(|| format!("creating master key file {}", path.display()))?;
                writeln!(file, "{}", URL_SAFE_NO_PAD.encode(key))?;
                file.sync_all()?;
                Ok((MasterKey(key), true))
            }
            Err(e) => Err(e).with_context(|| format!("reading master key file {}", path.display())),
        }
    }

    /// Reads an existing key; admin commands never create one, since a new master key cannot
    /// open the keys the server sealed under the old one.
    pub fn load(path: &Path) -> anyhow::Result<MasterKey> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading master key file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("master key file {}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<MasterKey> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .context("not base64url")?;
        let Ok(key) = <[u8; 32]>::try_from(bytes) else {
            bail!("must hold 32 bytes")
        };
        Ok(MasterKey(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_owner_only_mode_then_reread() {
        let path = std::env::temp_dir().join(format!("cs-master-{}", uuid::Uuid::new_v4()));
        let (a, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        let (b, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.0, b.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short").unwrap();
        assert!(MasterKey::load_or_create(&path).is_err());
        std::fs::remove_file(path).unwrap();
    }
}
