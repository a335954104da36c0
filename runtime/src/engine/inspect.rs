//! Static checks of a hook module before anything is compiled: what it imports
//! and exports, which contract version it claims, and what memory and table it
//! declares. A module that breaks the contract is refused here, with the
//! offending import or export named, so hostile modules never reach Cranelift.

use serde::Serialize;
use tokenhook_sdk::wire::{
    ABI_MARKER_EXPORT, ABI_MARKER_PREFIX, ABI_VERSION, ALLOC_EXPORT, HOST_MODULE, INIT_EXPORT,
    LOG_IMPORT, MEMORY_EXPORT, RUN_EXPORT,
};
use wasmparser::{ExternalKind, FuncType, Parser, Payload, TypeRef, ValType};

use super::failure::{FailureKind, HookFailure};
use super::limits::Limits;

const WASM_PAGE: u64 = 64 << 10;

/// What a module declares, as `tokenhook hook check` prints it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ModuleInfo {
    /// Lowercase hex SHA-256 of the module bytes as loaded.
    pub sha256: String,
    /// The contract version from the `tokenhook_abi_v<N>` marker, if any.
    pub abi_version: Option<u32>,
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
    /// Declared minimum of the module's memory, in bytes.
    pub memory_min_bytes: u64,
    /// Declared minimum of the module's table, in elements.
    pub table_min_elements: u64,
    pub has_start: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Export {
    pub name: String,
    pub kind: String,
    /// `(params) -> (results)` for functions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Import {
    pub module: String,
    pub name: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

fn invalid(err: impl std::fmt::Display) -> HookFailure {
    HookFailure::new(
        FailureKind::InvalidModule,
        format!("not a valid wasm module: {err}"),
    )
}

fn signature(ty: &FuncType) -> String {
    let list = |tys: &[ValType]| {
        tys.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(ty.params()), list(ty.results()))
}

/// Read a module's imports, exports and declarations. Fails only if the bytes
/// are not a well-formed module (full validation happens when compiling).
pub fn inspect(bytes: &[u8], sha256: String) -> Result<ModuleInfo, HookFailure> {
    let mut info = ModuleInfo {
        sha256,
        ..ModuleInfo::default()
    };
    let mut types: Vec<Option<FuncType>> = Vec::new();
    // Type index of every function, imported ones first (the wasm index space).
    let mut func_types: Vec<u32> = Vec::new();
    let mut raw_exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::Version { encoding, .. } if encoding != wasmparser::Encoding::Module => {
                return Err(HookFailure::new(
                    FailureKind::InvalidModule,
                    "this is a component; hooks are core wasm modules",
                ));
            }
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    types.push(Some(ty.map_err(invalid)?));
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    let (kind, sig) = match import.ty {
                        TypeRef::Func(idx) | TypeRef::FuncExact(idx) => {
                            func_types.push(idx);
                            (
                                "func",
                                types
                                    .get(idx as usize)
                                    .cloned()
                                    .flatten()
                                    .map(|t| signature(&t)),
                            )
                        }
                        TypeRef::Memory(_) => ("memory", None),
                        TypeRef::Table(_) => ("table", None),
                        TypeRef::Global(_) => ("global", None),
                        TypeRef::Tag(_) => ("tag", None),
                    };
                    info.imports.push(Import {
                        module: import.module.to_string(),
                        name: import.name.to_string(),
                        kind: kind.to_string(),
                        signature: sig,
                    });
                }
            }
            Payload::FunctionSection(reader) => {
                for idx in reader {
                    func_types.push(idx.map_err(invalid)?);
                }
            }
            Payload::MemorySection(reader) => {
                for mem in reader {
                    let mem = mem.map_err(invalid)?;
                    info.memory_min_bytes = info
                        .memory_min_bytes
                        .max(mem.initial.saturating_mul(WASM_PAGE));
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(invalid)?;
                    info.table_min_elements = info.table_min_elements.max(table.ty.initial);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    raw_exports.push((export.name.to_string(), export.kind, export.index));
                }
            }
            Payload::StartSection { .. } => info.has_start = true,
            _ => {}
        }
    }
    for (name, kind, index) in raw_exports {
        let (kind, sig) = match kind {
            ExternalKind::Func | ExternalKind::FuncExact => {
                let sig = func_types
                    .get(index as usize)
                    .and_then(|t| types.get(*t as usize).cloned().flatten())
                    .map(|t| signature(&t));
                ("func", sig)
            }
            ExternalKind::Memory => ("memory", None),
            ExternalKind::Table => ("table", None),
            ExternalKind::Global => ("global", None),
            ExternalKind::Tag => ("tag", None),
        };
        if let Some(v) = name
            .strip_prefix(ABI_MARKER_PREFIX)
            .and_then(|v| v.parse().ok())
        {
            info.abi_version = Some(info.abi_version.map_or(v, |old: u32| old.max(v)));
        }
        info.exports.push(Export {
            name,
            kind: kind.to_string(),
            signature: sig,
        });
    }
    Ok(info)
}

fn check_export(export: &Export, kind: &str, sig: Option<&str>) -> Result<(), HookFailure> {
    if export.kind != kind || export.signature.as_deref() != sig {
        return Err(HookFailure::new(
            FailureKind::ContractMismatch,
            format!(
                "export `{}` is {} {}, expected {kind} {}",
                export.name,
                export.kind,
                export.signature.as_deref().unwrap_or(""),
                sig.unwrap_or("")
            ),
        ));
    }
    Ok(())
}

/// Check a module against contract v1 and the hook's limits. The first
/// violation is returned, naming the import, export or declaration.
pub fn check_contract(info: &ModuleInfo, limits: &Limits) -> Result<(), HookFailure> {
    for import in &info.imports {
        let allowed = import.module == HOST_MODULE
            && import.name == LOG_IMPORT
            && import.kind == "func"
            && import.signature.as_deref() == Some("(i32, i32, i32) -> ()");
        if !allowed {
            let why = if import.module == HOST_MODULE {
                format!(
                    "the host module `{HOST_MODULE}` provides only `{LOG_IMPORT}: (i32, i32, i32) -> ()`"
                )
            } else {
                format!("hooks may import only from the host module `{HOST_MODULE}`")
            };
            return Err(HookFailure::new(
                FailureKind::ForbiddenImport,
                format!(
                    "forbidden import `{}.{}` ({}): {why}",
                    import.module, import.name, import.kind
                ),
            ));
        }
    }
    match info.abi_version {
        Some(ABI_VERSION) => {}
        Some(other) => {
            return Err(HookFailure::new(
                FailureKind::ContractMismatch,
                format!(
                    "module implements hook contract v{other}; this host supports v{ABI_VERSION}"
                ),
            ));
        }
        None => {
            return Err(HookFailure::new(
                FailureKind::ContractMismatch,
                format!(
                    "module does not export the contract marker `{ABI_MARKER_EXPORT}`; is it a tokenhook hook?"
                ),
            ));
        }
    }
    let required = [
        (ABI_MARKER_EXPORT, "func", Some("() -> ()")),
        (MEMORY_EXPORT, "memory", None),
        (ALLOC_EXPORT, "func", Some("(i32) -> (i32)")),
        (RUN_EXPORT, "func", Some("(i32, i32) -> (i64)")),
    ];
    for (name, kind, sig) in required {
        let Some(export) = info.exports.iter().find(|e| e.name == name) else {
            return Err(HookFailure::new(
                FailureKind::ContractMismatch,
                format!(
                    "missing export `{name}` ({kind}{})",
                    sig.map(|s| format!(" {s}")).unwrap_or_default()
                ),
            ));
        };
        check_export(export, kind, sig)?;
    }
    // Optional: the config prepared once at load.
    if let Some(export) = info.exports.iter().find(|e| e.name == INIT_EXPORT) {
        check_export(export, "func", Some("(i32, i32) -> (i64)"))?;
    }
    if info.memory_min_bytes > limits.memory {
        return Err(HookFailure::new(
            FailureKind::ResourceLimit,
            format!(
                "module declares {} bytes of initial memory, above this hook's memory cap of {} bytes",
                info.memory_min_bytes, limits.memory
            ),
        ));
    }
    if info.table_min_elements > limits.table_elements {
        return Err(HookFailure::new(
            FailureKind::ResourceLimit,
            format!(
                "module declares a table of {} elements, above this hook's cap of {}",
                info.table_min_elements, limits.table_elements
            ),
        ));
    }
    Ok(())
}
