;; Declares 1000 pages (62.5 MiB) of initial memory, above the 16 MiB default cap.
;; Expected: refused at load, resource_limit.
(module
  (memory (export "memory") 1000)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64) (i64.const 0)))
