;; Claims a 16 MiB output. Expected: output_too_large.
(module
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    ;; (0 << 32) | 16 MiB
    (i64.const 16777216)))
