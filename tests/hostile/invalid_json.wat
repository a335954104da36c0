;; Returns bytes that are not JSON. Expected: invalid_output.
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "this is not json")
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    ;; (16 << 32) | 16
    (i64.const 68719476752)))
