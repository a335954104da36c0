;; Exports `tokenhook_init` with the wrong signature: refused at load.
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"commands\":[]}")
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "tokenhook_init") (param i32) (result i32) i32.const 0)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    (i64.const 68719476751))) ;; (16 << 32) | 15
