;; Returns well-formed JSON with a command the contract does not define.
;; Expected: invalid_output.
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"commands\":[{\"grant_admin\":true}]}")
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    ;; (16 << 32) | 35
    (i64.const 68719476771)))
