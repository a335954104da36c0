//! Client secrets: stored hashed, verified in constant time, and guarded
//! against floods.
//!
//! Secrets tokenhook generates (`tokenhook secret new`, 256 random bits) are
//! stored as SHA-256: a slow hash adds nothing to a secret that cannot be
//! guessed, and costs tens of milliseconds per token. Operator-chosen secrets
//! are stored as argon2id; a successful verification is remembered, keyed by a
//! digest of the presented secret, so the hot path stays microseconds.
//!
//! Under attack ([`ClientGuard`]): argon2 runs on Tokio's blocking pool behind
//! a bounded number of slots (saturated → `503`), failures are throttled per
//! presented client id (→ `429`), and a failed attempt costs one argon2
//! verification whatever the id (unknown, `sha256:` or argon2id), so neither
//! existence nor hash kind shows in the time of a refusal.
//!
//! Memory: argon2 hashes into block memory kept between runs ([`BlockPool`]),
//! one buffer per hashing slot in use, so a flood of wrong secrets allocates
//! nothing per attempt and the resident set stays flat at about
//! `hash_concurrency × m` (19 MiB per slot at the default cost) above the
//! rest of the process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, PasswordHash, PasswordHasher, Version};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use tokio::sync::Semaphore;

/// Largest argon2 memory cost accepted in a stored hash, in KiB (64 MiB):
/// each hashing slot keeps block memory of the largest `m` it has verified,
/// so the worst case for argon2 is `hash_concurrency` × 64 MiB (the default
/// cost, `m=19456`, is 19 MiB per slot).
pub const MAX_ARGON2_M_KIB: u32 = 64 * 1024;
/// Largest argon2 time cost (passes) accepted in a stored hash.
pub const MAX_ARGON2_T: u32 = 10;
/// Largest argon2 parallelism accepted in a stored hash (lanes; verification
/// runs them on one thread, so lanes only add work).
pub const MAX_ARGON2_P: u32 = 4;

/// A stored client secret hash.
#[derive(Clone, Debug)]
pub enum SecretHash {
    Sha256([u8; 32]),
    Argon2(String),
}

impl SecretHash {
    /// Parse a stored hash. argon2id parameters above [`MAX_ARGON2_M_KIB`],
    /// [`MAX_ARGON2_T`] or [`MAX_ARGON2_P`] are refused: a pasted hash with a
    /// huge cost would turn every attempt on that client into a denial of
    /// service.
    pub fn parse(text: &str) -> Result<SecretHash, String> {
        if let Some(hex) = text.strip_prefix("sha256:") {
            let mut out = [0u8; 32];
            hex::decode_to_slice(hex, &mut out)
                .map_err(|_| "`sha256:` must be followed by 64 hex digits".to_string())?;
            return Ok(SecretHash::Sha256(out));
        }
        if text.starts_with("$argon2id$") {
            let hash =
                PasswordHash::new(text).map_err(|e| format!("not a valid argon2id hash: {e}"))?;
            let params = argon2::Params::try_from(&hash)
                .map_err(|e| format!("argon2id parameters are not usable: {e}"))?;
            for (name, value, max) in [
                ("m", params.m_cost(), MAX_ARGON2_M_KIB),
                ("t", params.t_cost(), MAX_ARGON2_T),
                ("p", params.p_cost(), MAX_ARGON2_P),
            ] {
                if value > max {
                    return Err(format!(
                        "argon2id parameter {name}={value} is above the limit {max} (m in KiB); hash the secret again with `tokenhook secret hash`"
                    ));
                }
            }
            return Ok(SecretHash::Argon2(text.to_string()));
        }
        Err("must be `sha256:<hex>` (tokenhook secret new) or `$argon2id$...` (tokenhook secret hash); plain secrets are not accepted".into())
    }

    /// An argon2id hash whose cost differs from [`hash_argon2`]'s (the cost of
    /// the dummy verification for unknown ids): a failed attempt on it takes
    /// a different time than one on an unknown id. False for `sha256:`.
    pub fn cost_differs_from_default(&self) -> bool {
        let SecretHash::Argon2(phc) = self else {
            return false;
        };
        let default = argon2::Params::default();
        PasswordHash::new(phc)
            .ok()
            .and_then(|h| argon2::Params::try_from(&h).ok())
            .is_none_or(|p| {
                (p.m_cost(), p.t_cost(), p.p_cost())
                    != (default.m_cost(), default.t_cost(), default.p_cost())
            })
    }
}

/// A client as authentication and the grant check need it, from the
/// manifest or the store.
#[derive(Clone, Debug)]
pub struct KnownClient {
    pub id: String,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// May introspect tokens and read the revocation feed.
    pub introspect: bool,
    /// May get tokens through a direct Lambda invoke (no secret), even when
    /// `[direct_invoke] enabled` is false. Store clients: always false.
    pub direct_invoke: bool,
    pub hash: SecretHash,
    /// API identifier → granted scopes.
    pub grants: HashMap<String, Vec<String>>,
}

impl KnownClient {
    /// From a store entry; the error names the client.
    pub fn from_store(entry: crate::store::ClientEntry) -> Result<KnownClient, (String, String)> {
        let c = entry.client;
        let hash = SecretHash::parse(&c.secret_hash).map_err(|e| (c.id.clone(), e))?;
        Ok(KnownClient {
            grants: entry
                .grants
                .into_iter()
                .map(|g| (g.api, g.scopes))
                .collect(),
            id: c.id,
            name: c.name,
            metadata: c.metadata,
            introspect: c.introspect,
            direct_invoke: false,
            hash,
        })
    }
}

/// How client authentication defends itself; from `[client_auth]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuardSettings {
    /// argon2 verifications running at once. Each slot in use keeps block
    /// memory of the largest `m` it verified (19 MiB at the default cost): this
    /// times that is what argon2 adds to the resident set under a flood.
    pub hash_concurrency: usize,
    /// Requests that may wait for a hashing slot; one more is answered 503.
    pub hash_queue: usize,
    /// Longest wait for a hashing slot before answering 503.
    pub hash_wait: Duration,
    /// Failed authentications a client id may have in a burst.
    pub failure_burst: u32,
    /// One failure is forgiven per this interval.
    pub failure_refill: Duration,
    /// Client ids whose failures are tracked; past this, untracked ids share one bucket.
    pub max_tracked: usize,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            hash_concurrency: default_hash_concurrency(),
            hash_queue: 8,
            hash_wait: Duration::from_millis(250),
            failure_burst: 10,
            failure_refill: Duration::from_secs(6),
            max_tracked: 10_000,
        }
    }
}

/// Most hashing slots the default gives, whatever the CPU count: bounds the
/// default argon2 memory to 4 × 19 MiB at the default cost (4 × 64 MiB at
/// [`MAX_ARGON2_M_KIB`]). Four slots verify about a hundred wrong secrets a
/// second, far more than the failure throttle lets through per client id;
/// set `hash_concurrency` for more.
pub const DEFAULT_MAX_HASH_CONCURRENCY: usize = 4;

/// Half the CPUs this process may use, at least one, at most
/// [`DEFAULT_MAX_HASH_CONCURRENCY`]: hashing never takes every core from the
/// requests that need none, and its memory stays bounded on large machines.
pub fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .clamp(1, DEFAULT_MAX_HASH_CONCURRENCY)
}

/// Why authentication refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown id or wrong secret (the two are not told apart).
    Failed,
    /// Too many failures for this id lately; retry after this many seconds.
    Throttled { retry_after_secs: u64 },
    /// Every hashing slot is taken and the queue is full or too slow.
    Busy,
}

/// Client secret verification for one issuer: remembered argon2 successes,
/// the hashing slots and the failure throttle.
pub struct ClientGuard {
    settings: GuardSettings,
    /// Digests of (client, presented secret, stored hash) that verified.
    verified: Mutex<HashSet<[u8; 32]>>,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    throttle: Mutex<Throttle>,
    /// argon2 verifications run (real or dummy); for tests and metrics.
    hash_runs: AtomicU64,
    /// Where argon2 block memory is kept: [`BLOCKS`], except in tests.
    blocks: &'static BlockPool,
}

/// Bound on remembered successes; the set is cleared when full. Only a
/// correct secret adds an entry, so an attacker cannot grow it.
const MAX_REMEMBERED: usize = 4096;

impl Default for ClientGuard {
    fn default() -> Self {
        ClientGuard::new(GuardSettings::default())
    }
}

/// What the cheap first look decided.
enum Quick {
    Verified,
    /// Run argon2 on this PHC string; `real` false means a dummy run whose
    /// outcome is a failure whatever it says.
    Hash {
        phc: String,
        real: bool,
    },
}

impl ClientGuard {
    pub fn new(settings: GuardSettings) -> Self {
        ClientGuard {
            slots: Arc::new(Semaphore::new(settings.hash_concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            throttle: Mutex::new(Throttle::new(&settings)),
            verified: Mutex::new(HashSet::new()),
            hash_runs: AtomicU64::new(0),
            blocks: &BLOCKS,
            settings,
        }
    }

    pub fn settings(&self) -> &GuardSettings {
        &self.settings
    }

    /// argon2 verifications run so far (real and dummy).
    pub fn hash_runs(&self) -> u64 {
        self.hash_runs.load(Ordering::Relaxed)
    }

    /// Check `presented` for the client id `id` (`client`: what the registry
    /// knows of it, `None` if unknown). The order is what keeps refusals
    /// uniform: a cheap look (a correct `sha256:` secret, a remembered
    /// argon2 success) → the failure throttle → one argon2 verification on
    /// a hashing slot (the client's own hash, or for an unknown id or a
    /// wrong `sha256:` secret a dummy of the default cost).
    pub async fn verify(
        &self,
        id: &str,
        presented: &str,
        client: Option<&KnownClient>,
    ) -> Result<(), Refusal> {
        let (phc, real) = match self.quick(id, presented, client) {
            Quick::Verified => return Ok(()),
            Quick::Hash { phc, real } => (phc, real),
        };
        let key = id_key(id);
        if let Some(wait) = self
            .throttle
            .lock()
            .expect("throttle lock")
            .throttled(&key, Instant::now())
        {
            return Err(Refusal::Throttled {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        let permit = self.slot().await?;
        let secret = presented.to_string();
        let (keep, blocks) = (self.settings.hash_concurrency.max(1), self.blocks);
        self.hash_runs.fetch_add(1, Ordering::Relaxed);
        let ok = tokio::task::spawn_blocking(move || {
            // The buffer goes back before the slot is released (the permit
            // drops last), so there are never more buffers than slots in
            // use; and it goes back even if the request was dropped.
            let _permit = permit;
            let mut memory = blocks.take();
            let ok = argon2_verify(&phc, &secret, &mut memory);
            blocks.give(memory, keep);
            ok
        })
        .await
        .unwrap_or(false)
            && real;
        if ok {
            self.remember(remember_key(id, presented, client.map(|c| &c.hash)));
            Ok(())
        } else {
            self.throttle
                .lock()
                .expect("throttle lock")
                .failed(key, Instant::now());
            Err(Refusal::Failed)
        }
    }

    fn quick(&self, id: &str, presented: &str, client: Option<&KnownClient>) -> Quick {
        let dummy = || Quick::Hash {
            phc: dummy_hash().to_string(),
            real: false,
        };
        match client.map(|c| &c.hash) {
            Some(SecretHash::Sha256(expected)) => {
                let actual = digest(&SHA256, presented.as_bytes());
                if verify_slices_are_equal(actual.as_ref(), expected).is_ok() {
                    Quick::Verified
                } else {
                    dummy()
                }
            }
            Some(hash @ SecretHash::Argon2(phc)) => {
                let key = remember_key(id, presented, Some(hash));
                if self.verified.lock().expect("verifier lock").contains(&key) {
                    Quick::Verified
                } else {
                    Quick::Hash {
                        phc: phc.clone(),
                        real: true,
                    }
                }
            }
            None => {
                // As much cheap work as a known id's first look.
                let _ = remember_key(id, presented, None);
                dummy()
            }
        }
    }

    /// A hashing slot, waiting at most `hash_wait` behind at most
    /// `hash_queue` others.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.settings.hash_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Busy);
        }
        let acquired =
            tokio::time::timeout(self.settings.hash_wait, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refusal::Busy),
        }
    }

    fn remember(&self, key: [u8; 32]) {
        let mut set = self.verified.lock().expect("verifier lock");
        if set.len() >= MAX_REMEMBERED {
            set.clear();
        }
        set.insert(key);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.verified.lock().unwrap().len()
    }
}

/// Whether `secret` hashes to the PHC string `phc`: the hash recomputed with
/// the PHC's own algorithm, version, parameters and salt into `memory`
/// (grown to the parameters' block count if smaller, never shrunk), then
/// compared in constant time. What `PasswordVerifier::verify_password` does,
/// without its allocation of `m` KiB per call.
fn argon2_verify(phc: &str, secret: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let Ok(version) = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    // Output length, too, comes from the PHC string.
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        // Exact: a buffer is kept for good, so no spare capacity.
        memory.reserve_exact(blocks - memory.len());
        memory.resize(blocks, Block::default());
    }
    let mut out = [0u8; 64];
    let out = &mut out[..expected.len()];
    // Blocks are all written before they are read, so what a previous run
    // left in `memory` cannot change the result.
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(secret.as_bytes(), salt, out, &mut memory[..blocks])
        .is_ok()
        && verify_slices_are_equal(out, expected.as_bytes()).is_ok()
}

/// argon2 block memory kept between verifications, shared by every guard of
/// the process (a reload's new issuer reuses the old one's). A verification
/// takes a buffer and gives it back when done, so buffers exist only for
/// slots that have been in use at once, each as large as the largest `m` it
/// verified. Without it, each verification allocated and freed its `m`, and
/// glibc kept the freed block memory in the heap of each blocking-pool thread
/// that ran one: the resident set grew by 19 MiB per thread that ever hashed.
struct BlockPool {
    free: Mutex<Vec<Vec<Block>>>,
    /// Buffers made (new or grown); for tests.
    made: AtomicUsize,
}

static BLOCKS: BlockPool = BlockPool::new();

impl BlockPool {
    const fn new() -> Self {
        BlockPool {
            free: Mutex::new(Vec::new()),
            made: AtomicUsize::new(0),
        }
    }

    /// A kept buffer, or an empty one that the verification grows (the first
    /// runs of a process, or more slots in use at once than ever before).
    fn take(&self) -> Vec<Block> {
        let kept = self.free.lock().expect("block pool lock").pop();
        kept.unwrap_or_else(|| {
            self.made.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        })
    }

    /// Keep `memory` for the next verification, unless `keep` buffers are
    /// kept already (a reload lowered `hash_concurrency`): then it is freed.
    fn give(&self, memory: Vec<Block>, keep: usize) {
        let mut free = self.free.lock().expect("block pool lock");
        if free.len() < keep {
            free.push(memory);
        }
    }
}

/// A PHC string of the default cost (`m=19456,t=2,p=1`, what
/// [`hash_argon2`] makes) with a random salt and a random 32-byte output,
/// made once per process: what unknown ids and wrong `sha256:` secrets are
/// verified against, so that their refusal costs what an argon2 one does. No
/// secret is known to hash to it, and its outcome is ignored anyway; being
/// random bytes, not a hash, it costs no argon2 run (nor its memory) to make.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        use argon2::password_hash::{Output, ParamsString, SaltString};
        let mut salt = [0u8; 16];
        let mut output = [0u8; 32];
        aws_lc_rs::rand::fill(&mut salt).expect("system random");
        aws_lc_rs::rand::fill(&mut output).expect("system random");
        let salt = SaltString::encode_b64(&salt).expect("16-byte salt");
        PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&argon2::Params::default()).expect("default params"),
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&output).expect("32-byte output")),
        }
        .to_string()
    })
}

/// Make the dummy hash now (random bytes, cheap), so the first refusal does
/// not pay for it.
pub async fn prepare() {
    dummy_hash();
}

/// Fixed-size key for a presented client id: ids come from the network and
/// may be kilobytes long.
fn id_key(id: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, id.as_bytes()).as_ref());
    out
}

fn remember_key(client_id: &str, presented: &str, stored: Option<&SecretHash>) -> [u8; 32] {
    let phc = match stored {
        Some(SecretHash::Argon2(phc)) => phc.as_str(),
        _ => "",
    };
    let mut input = Vec::with_capacity(client_id.len() + presented.len() + phc.len() + 2);
    for part in [client_id, presented, phc] {
        input.extend_from_slice(part.as_bytes());
        input.push(0);
    }
    let d = digest(&SHA256, &input);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A token bucket of failures per presented client id (keyed by its
/// SHA-256), bounded: past `max_tracked` ids, new ids share one overflow
/// bucket, so spraying ids cannot grow memory nor escape throttling.
struct Throttle {
    buckets: HashMap<[u8; 32], Bucket>,
    overflow: Bucket,
    burst: f64,
    /// Failures forgiven per second.
    refill: f64,
    max_tracked: usize,
    last_sweep: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Throttle {
    fn new(settings: &GuardSettings) -> Self {
        let burst = f64::from(settings.failure_burst.max(1));
        Throttle {
            buckets: HashMap::new(),
            overflow: Bucket {
                tokens: burst,
                at: Instant::now(),
            },
            burst,
            refill: 1.0 / settings.failure_refill.as_secs_f64().max(0.001),
            max_tracked: settings.max_tracked.max(1),
            last_sweep: None,
        }
    }

    fn level(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.refill).min(self.burst)
    }

    /// `Some(wait)` if `key` has no failure left to spend.
    fn throttled(&self, key: &[u8; 32], now: Instant) -> Option<Duration> {
        let bucket = match self.buckets.get(key) {
            Some(bucket) => bucket,
            None if self.buckets.len() >= self.max_tracked => &self.overflow,
            None => return None,
        };
        let level = self.level(bucket, now);
        (level < 1.0).then(|| Duration::from_secs_f64((1.0 - level) / self.refill))
    }

    fn failed(&mut self, key: [u8; 32], now: Instant) {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_tracked {
            self.sweep(now);
        }
        let burst = self.burst;
        let bucket = match self.buckets.get(&key) {
            Some(bucket) => *bucket,
            None if self.buckets.len() >= self.max_tracked => {
                self.overflow = Bucket {
                    tokens: self.level(&self.overflow, now) - 1.0,
                    at: now,
                };
                return;
            }
            None => Bucket {
                tokens: burst,
                at: now,
            },
        };
        let tokens = self.level(&bucket, now) - 1.0;
        self.buckets.insert(key, Bucket { tokens, at: now });
    }

    /// Forget ids whose bucket has refilled; at most once a second (it walks
    /// every entry).
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let (burst, refill) = (self.burst, self.refill);
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * refill < burst
        });
    }
}

/// argon2id PHC string for an operator-chosen secret.
pub fn hash_argon2(secret: &str) -> Result<String, String> {
    let mut salt_bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt_bytes).map_err(|e| e.to_string())?;
    let salt =
        argon2::password_hash::SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A new random client secret (256 bits, base64url) and its `sha256:` hash.
pub fn new_secret() -> (String, String) {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system random");
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = format!("sha256:{}", hex::encode(digest(&SHA256, secret.as_bytes())));
    (secret, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(hash: SecretHash) -> KnownClient {
        KnownClient {
            id: "c".into(),
            name: None,
            metadata: BTreeMap::new(),
            introspect: false,
            direct_invoke: false,
            hash,
            grants: HashMap::new(),
        }
    }

    fn relaxed() -> GuardSettings {
        GuardSettings {
            hash_concurrency: 2,
            failure_burst: 1000,
            ..GuardSettings::default()
        }
    }

    #[tokio::test]
    async fn sha256_secrets_verify_exactly() {
        let (secret, hash) = new_secret();
        let c = client(SecretHash::parse(&hash).unwrap());
        let g = ClientGuard::new(relaxed());
        assert_eq!(g.verify("c", &secret, Some(&c)).await, Ok(()));
        assert_eq!(
            g.verify("c", &format!("{secret}x"), Some(&c)).await,
            Err(Refusal::Failed)
        );
        assert_eq!(g.verify("c", "", Some(&c)).await, Err(Refusal::Failed));
    }

    #[tokio::test]
    async fn argon2_secrets_verify_and_are_remembered() {
        let c = client(SecretHash::parse(&hash_argon2("demo-secret").unwrap()).unwrap());
        let g = ClientGuard::new(relaxed());
        assert_eq!(g.verify("c", "demo-secret", Some(&c)).await, Ok(()));
        assert_eq!(g.hash_runs(), 1);
        assert_eq!(g.verify("c", "demo-secret", Some(&c)).await, Ok(()));
        assert_eq!(g.hash_runs(), 1, "the second success is remembered");
        assert_eq!(
            g.verify("c", "demo-secreT", Some(&c)).await,
            Err(Refusal::Failed)
        );
        assert_eq!(g.remembered(), 1);
    }

    /// A refusal costs one argon2 verification of the default cost whatever
    /// the id: unknown, `sha256:` with a wrong secret, argon2id with one.
    #[tokio::test]
    async fn every_refusal_costs_one_argon2_run() {
        let (_, sha) = new_secret();
        let sha = client(SecretHash::parse(&sha).unwrap());
        let argon = client(SecretHash::parse(&hash_argon2("s").unwrap()).unwrap());
        assert!(!argon.hash.cost_differs_from_default());
        let g = ClientGuard::new(relaxed());
        for (id, known) in [("nobody", None), ("c", Some(&sha)), ("c", Some(&argon))] {
            let before = g.hash_runs();
            assert_eq!(g.verify(id, "wrong", known).await, Err(Refusal::Failed));
            assert_eq!(g.hash_runs(), before + 1, "{id}");
        }
        // The dummy has the default cost too.
        let dummy = SecretHash::parse(dummy_hash()).unwrap();
        assert!(!dummy.cost_differs_from_default());
    }

    #[tokio::test]
    async fn failures_are_throttled_per_id_for_known_and_unknown_ids_alike() {
        let (secret, sha) = new_secret();
        let sha = client(SecretHash::parse(&sha).unwrap());
        let g = ClientGuard::new(GuardSettings {
            failure_burst: 2,
            failure_refill: Duration::from_secs(60),
            ..relaxed()
        });
        for (id, known) in [("c", Some(&sha)), ("nobody", None)] {
            for _ in 0..2 {
                assert_eq!(g.verify(id, "wrong", known).await, Err(Refusal::Failed));
            }
            let runs = g.hash_runs();
            // About 60 s, less the time the two runs took (a busy machine
            // may take over a second).
            let refusal = g.verify(id, "wrong", known).await;
            assert!(
                matches!(
                    refusal,
                    Err(Refusal::Throttled {
                        retry_after_secs: 50..=60
                    })
                ),
                "{id}: {refusal:?}"
            );
            assert_eq!(g.hash_runs(), runs, "a throttled attempt costs no hash");
        }
        // The right secret still passes: an attacker cannot lock out a
        // client whose secret verifies cheaply.
        assert_eq!(g.verify("c", &secret, Some(&sha)).await, Ok(()));
        // Another id is not affected.
        assert_eq!(g.verify("other", "x", None).await, Err(Refusal::Failed));
    }

    #[test]
    fn the_throttle_tracks_a_bounded_number_of_ids() {
        let settings = GuardSettings {
            failure_burst: 1,
            failure_refill: Duration::from_secs(3600),
            max_tracked: 3,
            ..GuardSettings::default()
        };
        let mut t = Throttle::new(&settings);
        let now = Instant::now();
        for i in 0..100u8 {
            t.failed(id_key(&i.to_string()), now);
        }
        assert_eq!(t.buckets.len(), 3);
        // Untracked ids share the overflow bucket, which is now empty.
        assert!(t.throttled(&id_key("fresh"), now).is_some());
    }

    #[tokio::test]
    async fn a_saturated_guard_answers_busy_instead_of_queueing() {
        let c = client(SecretHash::parse(&hash_argon2("s").unwrap()).unwrap());
        let g = ClientGuard::new(GuardSettings {
            hash_concurrency: 1,
            hash_queue: 0,
            ..relaxed()
        });
        let held = g.slots.clone().try_acquire_owned().unwrap();
        assert_eq!(g.verify("c", "s", Some(&c)).await, Err(Refusal::Busy));
        assert_eq!(
            g.verify("nobody", "s", None).await,
            Err(Refusal::Busy),
            "unknown ids wait for the same slots"
        );
        drop(held);
        assert_eq!(g.verify("c", "s", Some(&c)).await, Ok(()));
    }

    #[tokio::test]
    async fn a_waiter_gives_up_after_hash_wait() {
        let c = client(SecretHash::parse(&hash_argon2("s").unwrap()).unwrap());
        let g = ClientGuard::new(GuardSettings {
            hash_concurrency: 1,
            hash_queue: 1,
            hash_wait: Duration::from_millis(10),
            ..relaxed()
        });
        let _held = g.slots.clone().try_acquire_owned().unwrap();
        assert_eq!(g.verify("c", "s", Some(&c)).await, Err(Refusal::Busy));
        assert_eq!(g.waiting.load(Ordering::Acquire), 0);
    }

    /// argon2 runs on the blocking pool: on a single-threaded runtime, other
    /// tasks keep running while a verification is under way.
    #[tokio::test(flavor = "current_thread")]
    async fn argon2_runs_off_the_async_worker() {
        let c = client(SecretHash::parse(&hash_argon2("s").unwrap()).unwrap());
        let g = Arc::new(ClientGuard::new(relaxed()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let verifier = {
            let (g, tx) = (g.clone(), tx.clone());
            tokio::spawn(async move {
                let r = g.verify("c", "wrong", Some(&c)).await;
                tx.send("verified").unwrap();
                r
            })
        };
        let ticker = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.send("ticked").unwrap();
        });
        ticker.await.unwrap();
        assert_eq!(verifier.await.unwrap(), Err(Refusal::Failed));
        assert_eq!(
            rx.recv().await,
            Some("ticked"),
            "the worker was not blocked"
        );
    }

    /// The verification into kept memory agrees with the argon2 crate's own
    /// `verify_password`, whatever the buffer held before and whatever its
    /// size (grown for a larger `m`, reused as is for a smaller one).
    #[test]
    fn argon2_verification_into_kept_memory_agrees_with_the_crate() {
        use argon2::PasswordVerifier;
        let small = {
            let params = argon2::Params::new(64, 1, 2, Some(24)).unwrap();
            let salt = argon2::password_hash::SaltString::encode_b64(b"0123456789abcdef").unwrap();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"small-secret", &salt)
                .unwrap()
                .to_string()
        };
        let default = hash_argon2("default-secret").unwrap();
        let mut memory = Vec::new();
        for (phc, right) in [
            (&small, "small-secret"),
            (&default, "default-secret"),
            (&small, "small-secret"),
            (&default, "default-secret"),
        ] {
            let hash = PasswordHash::new(phc).unwrap();
            for secret in [right, "wrong", "", &format!("{right}x")] {
                let theirs = Argon2::default()
                    .verify_password(secret.as_bytes(), &hash)
                    .is_ok();
                assert_eq!(theirs, secret == right);
                assert_eq!(
                    argon2_verify(phc, secret, &mut memory),
                    theirs,
                    "{phc} {secret}"
                );
            }
        }
        assert_eq!(memory.len(), 19456, "grown once to the largest m, kept");
        assert!(!argon2_verify(
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ",
            "x",
            &mut memory
        ));
        assert!(!argon2_verify("not a hash", "x", &mut memory));
    }

    /// A flood allocates no argon2 memory per attempt: verifications reuse
    /// one buffer per slot in use, never more than `hash_concurrency`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn argon2_memory_is_kept_per_slot_not_allocated_per_attempt() {
        let pool: &'static BlockPool = Box::leak(Box::new(BlockPool::new()));
        let c = client(SecretHash::parse(&hash_argon2("s").unwrap()).unwrap());
        let mut guard = ClientGuard::new(GuardSettings {
            hash_concurrency: 2,
            hash_queue: 64,
            hash_wait: Duration::from_secs(60),
            ..relaxed()
        });
        guard.blocks = pool;
        let g = Arc::new(guard);
        let attempts: Vec<_> = (0..12)
            .map(|i| {
                let (g, c) = (g.clone(), c.clone());
                tokio::spawn(async move {
                    let id = if i % 3 == 0 { "nobody" } else { "c" };
                    g.verify(id, &format!("wrong-{i}"), Some(&c).filter(|_| id == "c"))
                        .await
                })
            })
            .collect();
        for a in attempts {
            assert_eq!(a.await.unwrap(), Err(Refusal::Failed));
        }
        assert_eq!(g.hash_runs(), 12);
        let made = pool.made.load(Ordering::Relaxed);
        assert!(
            (1..=2).contains(&made),
            "{made} buffers for 12 runs on 2 slots"
        );
        assert_eq!(pool.free.lock().unwrap().len(), made, "all given back");
        // A pool asked to keep fewer (a reload lowered the slots) frees the rest.
        pool.give(Vec::new(), 1);
        assert_eq!(pool.free.lock().unwrap().len(), made);
    }

    #[test]
    fn plain_secrets_are_refused() {
        assert!(SecretHash::parse("demo-secret").is_err());
        assert!(SecretHash::parse("sha256:abc").is_err());
    }

    #[test]
    fn argon2_parameters_are_capped() {
        let salt = "c29tZXNhbHRzb21lc2FsdA";
        let digest = "qFq70XeOmGxcqZBoGJlhXuZ7IEL/NoGBIZ3bfNxx0EI";
        let phc =
            |m: u32, t: u32, p: u32| format!("$argon2id$v=19$m={m},t={t},p={p}${salt}${digest}");
        assert!(SecretHash::parse(&phc(19456, 2, 1)).is_ok());
        assert!(SecretHash::parse(&phc(MAX_ARGON2_M_KIB, MAX_ARGON2_T, MAX_ARGON2_P)).is_ok());
        for (bad, name) in [
            (phc(4 << 20, 2, 1), "m=4194304"),
            (phc(19456, 1000, 1), "t=1000"),
            (phc(19456, 2, 64), "p=64"),
        ] {
            let err = SecretHash::parse(&bad).unwrap_err();
            assert!(err.contains(name), "{err}");
        }
        assert!(
            SecretHash::parse(&phc(65536, 2, 1))
                .unwrap()
                .cost_differs_from_default()
        );
    }
}
