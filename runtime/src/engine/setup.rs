//! Setup: the one wasmtime configuration of every hook engine (pooling
//! allocator, fuel, epoch interruption, stack cap). The epoch ticker is in
//! `clock`.

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::Limits;

/// How often the background thread advances the epoch. Deadlines are exact to
/// about one tick; a shorter tick costs more idle wake-ups.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Bytes of a finished instance's memory (and table) that are zeroed in place
/// for reuse rather than returned to the kernel. Returning pages costs page
/// faults on the next call and, once several threads run hooks, TLB
/// shootdowns across cores; zeroing a small hook's few hundred KiB is cheaper.
/// Memory beyond this is returned as usual.
pub const KEEP_RESIDENT: usize = 512 << 10;

/// Engine-wide settings. Per-hook limits are in [`Limits`].
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Hook instances that may be alive at once, across all requests. Default
    /// 256. Each slot reserves (but does not commit) address space for a memory
    /// of up to [`Limits::CEILING`]; when all are busy a call fails with
    /// `resource_limit` instead of waiting.
    pub max_instances: u32,
    /// Where compiled modules are kept between runs. Default `None`: compile
    /// once per process. Must be a directory only tokenhook can write.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_instances: 256,
            cache_dir: None,
        }
    }
}

pub(crate) fn build_engine(settings: &EngineSettings, stack: u64) -> wasmtime::Result<Engine> {
    Engine::new(&engine_config(settings, stack, None)?)
}

/// The one wasmtime configuration of every hook engine: the issuer's own
/// (`target` `None`: this host, CPU features detected) and the ones that
/// precompile hooks (`tokenhook bundle --target`, and the issuer's check of a
/// bundle's fingerprint). One function, so they cannot drift apart: code made
/// with another configuration is refused by the fingerprint check, then by
/// wasmtime itself.
///
/// An explicit `target` (even this host's triple) means a baseline CPU for
/// that architecture: no CPU feature is detected or assumed, so the code runs
/// on every CPU of the architecture.
pub fn engine_config(
    settings: &EngineSettings,
    stack: u64,
    target: Option<&str>,
) -> wasmtime::Result<Config> {
    let ceiling = Limits::CEILING;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(settings.max_instances)
        .total_memories(settings.max_instances)
        .total_tables(settings.max_instances)
        .total_component_instances(0)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_memory_size(ceiling.memory as usize)
        .table_elements(ceiling.table_elements as usize)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        // Reset only the pages a call wrote (Linux ≥ 6.7), not the whole
        // resident prefix: a hook's initial memory is a few hundred KiB (its
        // stack, data and allocator arena) of which a call writes a few pages.
        // Without it, every call rewrote 256 KiB per example hook, evicting
        // the caches the rest of the request needs. Elsewhere: the memset.
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(stack as usize)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(target) = target {
        config.target(target)?;
    }
    Ok(config)
}
