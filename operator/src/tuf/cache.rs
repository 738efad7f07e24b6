//! The TUF client's state between reconciles: the last update (its versions are the rollback
//! protection), asked again after [`TUF_REFRESH`] or an edit of the SignetConfig, and used
//! while the mirror cannot be reached until its metadata expires.

use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Mutex;

use super::{HttpMirror, TufError, Update, update};

/// How long a TUF update is used before the mirror is asked again.
pub const TUF_REFRESH: Duration = Duration::from_secs(300);

/// The last TUF update, kept between reconciles (and its versions: rollback protection).
struct Fetched {
    mirror: String,
    pinned_digest: String,
    /// The SignetConfig's generation it was fetched for: an edit reads the mirror again.
    generation: Option<i64>,
    update: Update,
    at: Instant,
}

/// The operator's TUF client state.
#[derive(Default)]
pub struct TufCache(Mutex<Option<Fetched>>);

impl TufCache {
    /// The repository's targets named in `wanted`: the update kept when it is recent and the
    /// spec unchanged, else a new one. When the mirror cannot be read, the update kept is used
    /// until its metadata expires.
    pub async fn current(
        &self,
        mirror: &str,
        pinned_digest: &str,
        generation: Option<i64>,
        pinned: &[u8],
        wanted: &[&str],
    ) -> Result<Update, TufError> {
        let mut kept = self.0.lock().await;
        let same = kept
            .as_ref()
            .filter(|f| f.mirror == mirror && f.pinned_digest == pinned_digest);
        let now = SystemTime::now();
        if let Some(f) = same
            && f.generation == generation
            && f.at.elapsed() < TUF_REFRESH
            && now < f.update.expires
        {
            return Ok(f.update.clone());
        }
        let previous = same.map(|f| &f.update.state);
        let fetched = match HttpMirror::new(mirror) {
            Ok(m) => update(&m, pinned, previous, wanted, now).await,
            Err(e) => Err(e),
        };
        match fetched {
            Ok(update) => {
                if same.is_none_or(|f| f.update.targets != update.targets) {
                    tracing::info!(%mirror, root_version = update.state.root.version, "read the trusted root from the TUF repository");
                }
                *kept = Some(Fetched {
                    mirror: mirror.to_owned(),
                    pinned_digest: pinned_digest.to_owned(),
                    generation,
                    update: update.clone(),
                    at: Instant::now(),
                });
                Ok(update)
            }
            // A mirror that cannot be reached (not one that answers wrongly) does not stop
            // signing while what it said before is still valid.
            Err(TufError::Fetch(e)) => match same {
                Some(f) if now < f.update.expires => {
                    tracing::warn!(%mirror, error = %e, "TUF repository unreachable; using what it said before until it expires");
                    Ok(f.update.clone())
                }
                _ => Err(TufError::Fetch(e)),
            },
            Err(e) => Err(e),
        }
    }
}
