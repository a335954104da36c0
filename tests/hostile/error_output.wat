;; Reports its own failure. Expected: hook_error with the message.
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"error\":{\"message\":\"upstream unavailable\"}}")
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    ;; (16 << 32) | 44
    (i64.const 68719476780)))
