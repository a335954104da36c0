;; Imports WASI. Expected: refused at load, forbidden_import naming
;; wasi_snapshot_preview1.fd_write.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64) (i64.const 0)))
